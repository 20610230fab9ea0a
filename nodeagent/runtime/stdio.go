package runtime

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"

	"github.com/containerd/containerd/v2/defaults"
	"github.com/containerd/containerd/v2/pkg/cio"
)

// A task's stdio is copied between containerd's FIFOs and our writers by
// our own loops rather than cio.NewCreator's, which hold a 32 KiB buffer
// per stream for the life of the container. A node with a hundred quiet
// containers kept some 6 MiB of heap in those buffers; these loops read a
// quiet stream into a small buffer and borrow a large one only while the
// stream is busy.
const (
	quietBufSize = 2 << 10
	busyBufSize  = 32 << 10
)

var busyBufs = sync.Pool{New: func() any {
	b := make([]byte, busyBufSize)
	return &b
}}

// stdio is what a task's streams are copied to and from: a nil stream has
// no FIFO.
type stdio struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	tty            bool
	// ended, when set, is called once the output copies have ended (the
	// task closed its output FIFOs, or Cancel closed ours), by the last
	// copy's goroutine: a container's copies need no goroutine of their
	// own waiting for them.
	ended func()
}

// creator makes the FIFOs of a new task or exec process (in containerd's
// default FIFO directory, as cio.NewCreator does) and starts the copies.
func (s stdio) creator() cio.Creator {
	return func(id string) (cio.IO, error) {
		fifos, err := cio.NewFIFOSetInDir(defaults.DefaultFIFODir, id, s.tty)
		if err != nil {
			return nil, fmt.Errorf("fifos of %s: %w", id, err)
		}
		return s.start(fifos)
	}
}

// attach starts the copies on the FIFOs of a task that is already running
// (an agent restart adopting its containers).
func (s stdio) attach() cio.Attach {
	return func(fifos *cio.FIFOSet) (cio.IO, error) {
		if fifos == nil {
			return nil, errors.New("cannot attach: the task has no FIFOs")
		}
		return s.start(fifos)
	}
}

func (s stdio) start(fifos *cio.FIFOSet) (cio.IO, error) {
	if s.stdin == nil {
		fifos.Stdin = ""
	}
	if s.stdout == nil {
		fifos.Stdout = ""
	}
	if s.stderr == nil || fifos.Terminal {
		fifos.Stderr = ""
	}
	// The FIFOs are opened non-blocking, so the context only bounds
	// opening them; Cancel below also closes them to end the copies.
	d, err := cio.NewDirectIO(context.Background(), fifos)
	if err != nil {
		return nil, fmt.Errorf("open fifos: %w", err)
	}
	t := &taskIO{DirectIO: d, done: make(chan struct{})}
	if d.Stdin != nil {
		go func() {
			_ = copyStream(d.Stdin, s.stdin)
			_ = d.Stdin.Close()
		}()
	}
	outs := []struct {
		w io.Writer
		r io.ReadCloser
	}{{s.stdout, d.Stdout}, {s.stderr, d.Stderr}}
	for _, c := range outs {
		if c.r != nil {
			t.left.Add(1)
		}
	}
	end := func() {
		if t.left.Add(-1) == 0 {
			close(t.done)
			if s.ended != nil {
				s.ended()
			}
		}
	}
	if t.left.Load() == 0 {
		t.left.Add(1)
		end()
	}
	for _, c := range outs {
		if c.r == nil {
			continue
		}
		go func() {
			_ = copyStream(c.w, c.r)
			_ = c.r.Close()
			end()
		}()
	}
	return t, nil
}

// taskIO is cio.IO over a DirectIO whose streams our loops copy: Wait
// waits for the output copies, Cancel ends them.
type taskIO struct {
	*cio.DirectIO
	left atomic.Int32  // output copies still running
	done chan struct{} // closed when the last one ended
}

func (t *taskIO) Wait() { <-t.done }

// Cancel ends the copies: closing a FIFO ends a read blocked on it, as
// containerd's own copies are ended.
func (t *taskIO) Cancel() {
	t.DirectIO.Cancel()
	for _, c := range []io.Closer{t.Stdin, t.Stdout, t.Stderr} {
		if c != nil {
			_ = c.Close()
		}
	}
}

// copyStream copies r to w until r ends or a write fails, as io.Copy
// does, reading into a quiet-sized buffer until a read fills it, then into
// a pooled busy-sized one until a read uses less than a quarter of that.
func copyStream(w io.Writer, r io.Reader) error {
	quiet := make([]byte, quietBufSize)
	var busy *[]byte
	defer func() {
		if busy != nil {
			busyBufs.Put(busy)
		}
	}()
	for {
		buf := quiet
		if busy != nil {
			buf = *busy
		}
		n, err := r.Read(buf)
		if n > 0 {
			nw, werr := w.Write(buf[:n])
			if werr != nil {
				return werr
			}
			if nw != n {
				return io.ErrShortWrite
			}
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		switch {
		case busy == nil && n == len(quiet):
			busy = busyBufs.Get().(*[]byte)
		case busy != nil && n < busyBufSize/4:
			busyBufs.Put(busy)
			busy = nil
		}
	}
}
