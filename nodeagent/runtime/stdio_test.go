package runtime

import (
	"bytes"
	"errors"
	"io"
	"testing"
)

// chunkReader returns its chunks one per Read, recording the size of each
// buffer it was given.
type chunkReader struct {
	chunks [][]byte
	sizes  []int
}

func (c *chunkReader) Read(p []byte) (int, error) {
	c.sizes = append(c.sizes, len(p))
	if len(c.chunks) == 0 {
		return 0, io.EOF
	}
	n := copy(p, c.chunks[0])
	c.chunks[0] = c.chunks[0][n:]
	if len(c.chunks[0]) == 0 {
		c.chunks = c.chunks[1:]
	}
	return n, nil
}

func TestCopyStreamBuffers(t *testing.T) {
	fill := func(n int, b byte) []byte { return bytes.Repeat([]byte{b}, n) }
	// A quiet line, a burst that fills the quiet buffer, a burst that keeps
	// the busy one, a short read that gives it back, and a quiet line.
	chunks := [][]byte{fill(100, 'a'), fill(quietBufSize, 'b'), fill(busyBufSize, 'c'), fill(10, 'd'), fill(5, 'e')}
	var want []byte
	for _, c := range chunks {
		want = append(want, c...)
	}
	r := &chunkReader{chunks: chunks}
	var out bytes.Buffer
	if err := copyStream(&out, r); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(out.Bytes(), want) {
		t.Fatalf("copied %d bytes, want %d identical ones", out.Len(), len(want))
	}
	wantSizes := []int{quietBufSize, quietBufSize, busyBufSize, busyBufSize, quietBufSize, quietBufSize}
	if len(r.sizes) != len(wantSizes) {
		t.Fatalf("read buffer sizes %v, want %v", r.sizes, wantSizes)
	}
	for i := range wantSizes {
		if r.sizes[i] != wantSizes[i] {
			t.Fatalf("read buffer sizes %v, want %v", r.sizes, wantSizes)
		}
	}
}

type failWriter struct{ n int }

func (f *failWriter) Write(p []byte) (int, error) {
	if f.n == 0 {
		return 0, errors.New("disk full")
	}
	f.n--
	return len(p), nil
}

type shortWriter struct{}

func (shortWriter) Write(p []byte) (int, error) { return len(p) - 1, nil }

func TestCopyStreamStopsOnWriteFailure(t *testing.T) {
	r := &chunkReader{chunks: [][]byte{[]byte("one"), []byte("two"), []byte("three")}}
	if err := copyStream(&failWriter{n: 1}, r); err == nil || err.Error() != "disk full" {
		t.Fatalf("copy into a failing writer = %v, want its error", err)
	}
	if len(r.sizes) != 2 {
		t.Fatalf("read %d times after the write failed, want to stop at 2", len(r.sizes))
	}
	if err := copyStream(shortWriter{}, &chunkReader{chunks: [][]byte{[]byte("x1")}}); !errors.Is(err, io.ErrShortWrite) {
		t.Fatalf("short write = %v, want io.ErrShortWrite", err)
	}
}
