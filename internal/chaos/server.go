package chaos

import (
	"bytes"
	"context"
	"fmt"
	"github.com/skiffhq/skiff/internal/freeport"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// Proc is a process the harness starts, kills and starts again with the
// same arguments; its output is kept for failure reports.
type Proc struct {
	Name string
	Bin  string
	Args []string
	// Env is added to the harness's environment (SKIFF_FAILPOINTS).
	Env []string

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
	log  logBuffer
}

// logBuffer keeps a process's output; the process writes it while the
// harness reads it.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) count(substr string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return bytes.Count(b.buf.Bytes(), []byte(substr))
}

func (b *logBuffer) tail(n int) string {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := b.buf.Bytes()
	if len(out) > n {
		out = out[len(out)-n:]
	}
	return string(out)
}

// start runs the process; exited is closed when it ends.
func (p *Proc) start() (exited <-chan struct{}, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	cmd := exec.Command(p.Bin, p.Args...)
	if len(p.Env) > 0 {
		cmd.Env = append(os.Environ(), p.Env...)
	}
	cmd.Stdout, cmd.Stderr = &p.log, &p.log
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", p.Name, err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	p.cmd, p.done = cmd, done
	return done, nil
}

// Exited is closed when the process last started ends (nil before a
// start).
func (p *Proc) Exited() <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.done
}

// Kill sends SIGKILL and waits for the process to be gone.
func (p *Proc) Kill() {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGKILL)
	<-done
}

// Stop sends SIGTERM, waiting up to 20 s before SIGKILL.
func (p *Proc) Stop() {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		p.Kill()
	}
}

// SaveLog writes the process's whole output (every start since the
// first) to path.
func (p *Proc) SaveLog(path string) error {
	p.log.mu.Lock()
	defer p.log.mu.Unlock()
	return os.WriteFile(path, p.log.buf.Bytes(), 0o644)
}

// LogCount counts substr in the process's whole output (every start).
func (p *Proc) LogCount(substr string) int { return p.log.count(substr) }

// LogTail returns the last n bytes of the process's output.
func (p *Proc) LogTail(n int) string { return p.log.tail(n) }

// Server is a `skiff server` process on a data directory, started again
// on the same directory and port after each kill.
type Server struct {
	Proc
	DataDir string
	Extra   []string // extra flags
	// Address is where the API server listens (default 127.0.0.1), and
	// Port its port (default a free one).
	Address string
	Port    int

	port int
}

// Kubeconfig is the admin kubeconfig the server writes.
func (s *Server) Kubeconfig() string { return filepath.Join(s.DataDir, "admin.kubeconfig") }

// Start runs the server and waits until /readyz answers ok.
func (s *Server) Start(ctx context.Context) error {
	if s.port == 0 {
		p := s.Port
		if p == 0 {
			var err error
			if p, err = freePort(); err != nil {
				return err
			}
		}
		if s.Address == "" {
			s.Address = "127.0.0.1"
		}
		s.port = p
		s.Name = "skiff server"
		s.Args = append([]string{"server", "--data-dir", s.DataDir, "--bind-address", s.Address,
			"--https-listen-port", strconv.Itoa(s.port), "--etcd-client-port", "0", "--etcd-peer-port", "0",
			"--disable-agent", "--ingress-http-port", "0", "--ingress-https-port", "0"}, s.Extra...)
	}
	exited, err := s.start()
	if err != nil {
		return err
	}
	return s.WaitReady(ctx, exited)
}

// restartAfterFailpoints starts the server again after a failpoint ended
// it; the load goes on meanwhile, so the new process may reach a failpoint
// before it is ready, and is then started again (up to 50 times). It
// returns how many more processes died at a failpoint on the way.
func (s *Server) restartAfterFailpoints(ctx context.Context) (died int, err error) {
	for range 50 {
		before := s.log.count("failpoint: ")
		if err = s.Start(ctx); err == nil || ctx.Err() != nil {
			return died, err
		}
		if s.log.count("failpoint: ") == before {
			return died, err // it died of something else
		}
		died++
	}
	return died, err
}

// WaitReady polls /readyz until it answers ok, the process exits or ctx
// ends.
func (s *Server) WaitReady(ctx context.Context, exited <-chan struct{}) error {
	for {
		if _, err := os.Stat(s.Kubeconfig()); err == nil {
			if cs, err := s.Client(2 * time.Second); err == nil {
				rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
				b, err := cs.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(rctx)
				cancel()
				if err == nil && string(bytes.TrimSpace(b)) == "ok" {
					return nil
				}
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("server not ready: %w", ctx.Err())
		case <-exited:
			return fmt.Errorf("server exited before it was ready; log tail:\n%s", s.LogTail(3000))
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Client returns a clientset for the admin kubeconfig with the given
// request timeout and no client-side rate limit.
func (s *Server) Client(timeout time.Duration) (kubernetes.Interface, error) {
	cfg, err := s.RESTConfig(timeout)
	if err != nil {
		return nil, err
	}
	return kubernetes.NewForConfig(cfg)
}

// RESTConfig is the admin kubeconfig's client configuration.
func (s *Server) RESTConfig(timeout time.Duration) (*rest.Config, error) {
	cfg, err := clientcmd.BuildConfigFromFlags("", s.Kubeconfig())
	if err != nil {
		return nil, fmt.Errorf("load kubeconfig: %w", err)
	}
	cfg.Timeout = timeout
	cfg.QPS, cfg.Burst = -1, 0
	return cfg, nil
}

func freePort() (int, error) { return freeport.On() }
