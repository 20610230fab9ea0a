package runtime

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"syscall"
	"time"

	"github.com/containerd/containerd/api/services/tasks/v1"
	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/errdefs"
	"github.com/containerd/errdefs/pkg/errgrpc"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/skiffhq/skiff/nodeagent/crilog"
)

// Labels recording a container's stdio mode, so that an adopting agent
// re-attaches it the same way.
const (
	labelStdin     = "io.skiff.stdin"
	labelStdinOnce = "io.skiff.stdin-once"
	labelTTY       = "io.skiff.tty"
)

// ErrNotRunning is returned by Exec and Attach on a container without a
// running task.
var ErrNotRunning = errors.New("container is not running")

// TerminalSize is a tty size.
type TerminalSize struct{ Width, Height uint16 }

// StreamIO are a client's streams for Exec and Attach; nil ones are not
// connected.
type StreamIO struct {
	Stdin          io.Reader
	Stdout, Stderr io.Writer
	TTY            bool
	Resize         <-chan TerminalSize
}

// initialSizeWait bounds how long a tty exec waits for the client's first
// terminal size before it starts without one.
const initialSizeWait = 500 * time.Millisecond

// Exec runs cmd in the running container id, as the container's process
// (user, env, cwd, capabilities), and returns its exit code. Ending ctx
// kills it.
func (r *Runtime) Exec(ctx context.Context, id string, cmd []string, sio StreamIO) (int, error) {
	nctx := r.ctx(context.Background())
	c, err := r.client.LoadContainer(nctx, id)
	if errdefs.IsNotFound(err) {
		return 0, fmt.Errorf("%s: %w", id, ErrContainerNotFound)
	}
	if err != nil {
		return 0, fmt.Errorf("load container %s: %w", id, err)
	}
	task, err := c.Task(nctx, nil)
	if errdefs.IsNotFound(err) {
		return 0, ErrNotRunning
	}
	if err != nil {
		return 0, fmt.Errorf("task of %s: %w", id, err)
	}
	spec, err := c.Spec(nctx)
	if err != nil {
		return 0, fmt.Errorf("spec of %s: %w", id, err)
	}
	if len(cmd) == 0 {
		return 0, errors.New("no command specified")
	}
	ps := *spec.Process
	ps.Args = cmd
	ps.Terminal = sio.TTY
	ps.ConsoleSize = nil
	if sio.TTY && sio.Resize != nil {
		// The terminal starts at the client's size: a resize can only
		// reach the console once the process runs, and a shell reading
		// input typed before it would see a 0x0 terminal (stty size
		// failed so). Clients send the size first; wait briefly for it.
		select {
		case sz, ok := <-sio.Resize:
			if ok && sz.Width > 0 && sz.Height > 0 {
				ps.ConsoleSize = &specs.Box{Width: uint(sz.Width), Height: uint(sz.Height)}
			}
		case <-time.After(initialSizeWait):
		case <-ctx.Done():
		}
	}
	var rnd [8]byte
	_, _ = rand.Read(rnd[:])
	execID := "exec-" + hex.EncodeToString(rnd[:])

	var proc containerd.Process
	var procReady = make(chan struct{})
	stdin := sio.Stdin
	if stdin != nil && !sio.TTY {
		// Tell the shim to close the process's stdin once the client's
		// stdin ends (the shim keeps the FIFO open otherwise).
		stdin = &eofHook{r: stdin, fn: func() {
			<-procReady
			if proc != nil {
				_ = proc.CloseIO(nctx, containerd.WithStdinCloser)
			}
		}}
	}
	stdout, stderr := sio.Stdout, sio.Stderr
	if sio.TTY {
		stderr = nil
	}
	proc, err = task.Exec(nctx, execID, &ps, stdio{stdin: stdin, stdout: stdout, stderr: stderr, tty: sio.TTY}.creator())
	close(procReady)
	if err != nil {
		return 0, fmt.Errorf("exec in %s: %w", id, err)
	}
	defer func() {
		dctx, cancel := context.WithTimeout(nctx, 10*time.Second)
		defer cancel()
		_, _ = proc.Delete(dctx, containerd.WithProcessKill)
	}()
	exitCh, err := proc.Wait(nctx)
	if err != nil {
		return 0, fmt.Errorf("wait exec: %w", err)
	}
	if err := proc.Start(nctx); err != nil {
		return 0, fmt.Errorf("start exec in %s: %w", id, err)
	}
	if sio.TTY && sio.Resize != nil {
		go func() {
			for sz := range sio.Resize {
				_ = proc.Resize(nctx, uint32(sz.Width), uint32(sz.Height))
			}
		}()
	}
	var st containerd.ExitStatus
	select {
	case st = <-exitCh:
	case <-ctx.Done():
		_ = proc.Kill(nctx, syscall.SIGKILL)
		st = <-exitCh
	}
	// Output still in the FIFOs is copied before the result is reported.
	drained := make(chan struct{})
	go func() { proc.IO().Wait(); close(drained) }()
	select {
	case <-drained:
	case <-time.After(2 * time.Second):
		proc.IO().Cancel()
	}
	code, _, err := st.Result()
	if err != nil {
		return 0, fmt.Errorf("exec in %s: %w", id, err)
	}
	return int(code), nil
}

type eofHook struct {
	r    io.Reader
	fn   func()
	once sync.Once
}

func (e *eofHook) Read(p []byte) (int, error) {
	n, err := e.r.Read(p)
	if err != nil {
		e.once.Do(e.fn)
	}
	return n, err
}

// Attach connects sio to the main process of the running container id
// until the container exits or ctx ends. Stdin reaches the process only
// when the container was created with Stdin; with StdinOnce, the end of
// the first attached stdin closes the process's stdin.
func (r *Runtime) Attach(ctx context.Context, id string, sio StreamIO) error {
	r.mu.Lock()
	var h *containerIO
	if a := r.attached[id]; a != nil {
		h = a.sio
	}
	r.mu.Unlock()
	if h == nil {
		return ErrNotRunning
	}
	out, errOut := sio.Stdout, sio.Stderr
	if h.tty {
		errOut = nil
	}
	unsub := h.subscribe(out, errOut)
	defer unsub()
	if sio.Stdin != nil && h.stdinW != nil {
		go func() {
			_, _ = io.Copy(h.stdinW, sio.Stdin)
			if h.stdinOnce {
				h.closeStdin()
			}
		}()
	}
	if sio.Resize != nil && h.tty {
		go func() {
			for sz := range sio.Resize {
				_ = h.resize(uint32(sz.Width), uint32(sz.Height))
			}
		}()
	}
	select {
	case <-ctx.Done():
	case <-h.done:
	}
	return nil
}

// containerIO is a running container's stdio: output goes to its CRI log
// and to every attached client; stdin (when the container has it) is a
// pipe that attached clients write into.
type containerIO struct {
	stdout, stderr *fanout
	stdinR         *io.PipeReader
	stdinW         *io.PipeWriter
	tty, stdinOnce bool
	done           chan struct{}
	closeOnce      sync.Once
	stdinOnceDo    sync.Once
	// The task is reached by its container ID through rt: a
	// containerd.Task value would keep the container's metadata (its OCI
	// spec) for the container's life.
	rt *Runtime
	id string
}

func newContainerIO(rt *Runtime, id string, lw *crilog.Writer, labels map[string]string, log *slog.Logger) *containerIO {
	h := &containerIO{
		stdout: &fanout{log: lw.Stream(crilog.Stdout), subs: map[*io.Writer]struct{}{}, logger: log},
		stderr: &fanout{log: lw.Stream(crilog.Stderr), subs: map[*io.Writer]struct{}{}, logger: log},
		tty:    labels[labelTTY] == "true", stdinOnce: labels[labelStdinOnce] == "true",
		done: make(chan struct{}), rt: rt, id: id,
	}
	if labels[labelStdin] == "true" {
		h.stdinR, h.stdinW = io.Pipe()
	}
	return h
}

// stdio is what the container's task streams are copied to and from.
func (h *containerIO) stdio() stdio {
	s := stdio{stdout: h.stdout, tty: h.tty}
	if h.stdinR != nil {
		s.stdin = h.stdinR
	}
	if !h.tty {
		s.stderr = h.stderr
	}
	return s
}

func (h *containerIO) closeStdin() {
	h.stdinOnceDo.Do(func() {
		if h.stdinW != nil {
			_ = h.stdinW.Close()
		}
		_, _ = h.rt.client.TaskService().CloseIO(h.rt.runCtx, &tasks.CloseIORequest{ContainerID: h.id, Stdin: true})
	})
}

func (h *containerIO) resize(w, hgt uint32) error {
	_, err := h.rt.client.TaskService().ResizePty(h.rt.runCtx, &tasks.ResizePtyRequest{ContainerID: h.id, Width: w, Height: hgt})
	return errgrpc.ToNative(err)
}

func (h *containerIO) subscribe(out, errOut io.Writer) func() {
	var o, e *io.Writer
	if out != nil {
		o = &out
		h.stdout.add(o)
	}
	if errOut != nil {
		e = &errOut
		h.stderr.add(e)
	}
	return func() {
		h.stdout.remove(o)
		h.stderr.remove(e)
	}
}

// close ends attach sessions once the task exited.
func (h *containerIO) close() {
	h.closeOnce.Do(func() {
		close(h.done)
		if h.stdinR != nil {
			_ = h.stdinR.Close()
		}
	})
}

// fanout writes to the log and to every subscriber; a subscriber that
// fails is dropped. It never fails itself: the copy from the container's
// FIFO ends at the first error, and a FIFO nobody reads stalls the
// container. A log error (a failed rotation, a full disk) is logged.
type fanout struct {
	mu      sync.Mutex
	log     io.Writer
	subs    map[*io.Writer]struct{}
	logger  *slog.Logger
	lastErr time.Time
}

func (f *fanout) Write(p []byte) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, err := f.log.Write(p); err != nil && time.Since(f.lastErr) > time.Minute {
		f.lastErr = time.Now()
		f.logger.Error("write container log", "err", err)
	}
	for s := range f.subs {
		if _, werr := (*s).Write(p); werr != nil {
			delete(f.subs, s)
		}
	}
	return len(p), nil
}

func (f *fanout) add(w *io.Writer) {
	f.mu.Lock()
	f.subs[w] = struct{}{}
	f.mu.Unlock()
}

func (f *fanout) remove(w *io.Writer) {
	if w == nil {
		return
	}
	f.mu.Lock()
	delete(f.subs, w)
	f.mu.Unlock()
}
