package backend

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
	"golang.org/x/time/rate"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/httpstream"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/remotecommand"
	utilexec "k8s.io/client-go/util/exec"
)

// Exec terminal (issue #9): GET /api/exec?namespace=&pod=&container=
// &command=/bin/sh[&command=arg...][&tty=0][&cluster=<member>] upgrades to
// a websocket (Origin checked, session cookie) and relays it to the API
// server's pods/exec, which the backend opens with the user's own
// credentials through client-go's websocket executor (subprotocol
// v5.channel.k8s.io), so RBAC's `create pods/exec` applies to the user.
//
// Browser socket, binary frames whose first byte is the channel (the
// channel numbers of v5.channel.k8s.io):
//
//	browser → backend: 0 stdin bytes; 4 resize {"Width":cols,"Height":rows}
//	backend → browser: 1 stdout; 2 stderr (tty=0 only); 3 the end, once:
//	                   {"status":"Success"|"Failure","reason","message","exitCode"}
//	                   6 notice: a text explaining a refused browser frame
//	                   (the session goes on)
//
// After channel 3 the backend closes the socket. Closing the socket (tab
// or terminal closed) cancels the exec stream: the API server's stream
// ends and the shell in the container reads end of file.
const (
	chanStdin  = 0
	chanStdout = 1
	chanStderr = 2
	chanStatus = 3
	chanResize = 4
	chanNotice = 6
)

// execStatus is the end of an exec session, sent on channel 3.
type execStatus struct {
	Status   string `json:"status"`
	Reason   string `json:"reason,omitempty"`
	Message  string `json:"message,omitempty"`
	ExitCode int    `json:"exitCode"`
}

// execSessions counts the exec relays open (tests check none is left).
var execSessions atomic.Int64

// A terminal's browser frames are read at most execFrameRate a second
// after a burst of execFrameBurst: a flood is slowed (the socket is not
// read, so TCP pushes back on the browser), never dropped. Typing and
// pasting stay far below it.
const (
	execFrameRate  = 1000
	execFrameBurst = 1000
)

// execThrottled counts the browser frames that waited for the limit.
var execThrottled atomic.Int64

var podsGVR = schema.GroupVersionResource{Version: "v1", Resource: "pods"}

// execSocket writes frames to the browser under one lock.
type execSocket struct {
	mu   sync.Mutex
	conn *websocket.Conn
}

func (e *execSocket) frame(ch byte, data []byte) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	_ = e.conn.SetWriteDeadline(time.Now().Add(15 * time.Second))
	buf := make([]byte, 0, len(data)+1)
	buf = append(buf, ch)
	buf = append(buf, data...)
	return e.conn.WriteMessage(websocket.BinaryMessage, buf)
}

func (e *execSocket) notice(msg string) { _ = e.frame(chanNotice, []byte(msg)) }

// chanWriter is stdout or stderr towards the browser.
type chanWriter struct {
	s  *execSocket
	ch byte
}

func (w chanWriter) Write(p []byte) (int, error) {
	if err := w.s.frame(w.ch, p); err != nil {
		return 0, fmt.Errorf("write to browser: %w", err)
	}
	return len(p), nil
}

// sizeQueue hands the browser's resizes to the executor.
type sizeQueue struct {
	ctx context.Context
	ch  chan remotecommand.TerminalSize
}

func (q *sizeQueue) Next() *remotecommand.TerminalSize {
	select {
	case s := <-q.ch:
		return &s
	case <-q.ctx.Done():
		return nil
	}
}

// push keeps only the newest size when the executor is behind.
func (q *sizeQueue) push(s remotecommand.TerminalSize) {
	for {
		select {
		case q.ch <- s:
			return
		default:
		}
		select {
		case <-q.ch:
		default:
		}
	}
}

// execParams reads and checks the exec request's query.
func execParams(r *http.Request) (ns, pod, container string, command []string, tty bool, err error) {
	q := r.URL.Query()
	ns, pod, container = q.Get("namespace"), q.Get("pod"), q.Get("container")
	command = q["command"]
	if len(command) == 0 {
		command = []string{"/bin/sh"}
	}
	tty = q.Get("tty") != "0"
	switch {
	case ns == "" || pod == "":
		err = errors.New("namespace and pod are required")
	case len(command) > 64 || len(strings.Join(command, " ")) > 4096:
		err = errors.New("command too long (at most 64 arguments, 4 KiB)")
	case command[0] == "":
		err = errors.New("command must not be empty")
	}
	return
}

// reasonSessionRevoked is the status reason of a terminal that ended
// with its session.
const reasonSessionRevoked = "SessionRevoked"

// exec serves the terminal's websocket (protocol above).
func (s *Server) exec(w http.ResponseWriter, r *http.Request) {
	sess := sessionFrom(r.Context())
	up := upgrader
	up.EnableCompression = false
	up.CheckOrigin = func(r *http.Request) bool { return s.originAllowed(r, true) }
	conn, err := up.Upgrade(w, r, nil)
	if err != nil {
		return // the upgrader answered with an error status
	}
	execSessions.Add(1)
	defer execSessions.Add(-1)
	defer conn.Close()
	conn.SetReadLimit(64 << 10)
	sock := &execSocket{conn: conn}
	// The terminal ends with the session (logout, revocation, expiry).
	ctx, cancel := sess.stream(r.Context())
	defer cancel()

	st := s.runExec(ctx, cancel, sess, r, sock)
	b, _ := json.Marshal(st)
	_ = sock.frame(chanStatus, b)
	closeMsg := websocket.FormatCloseMessage(websocket.CloseNormalClosure, "")
	if st.Reason == reasonSessionRevoked {
		closeMsg = websocket.FormatCloseMessage(websocket4401, "session revoked")
	}
	sock.mu.Lock()
	_ = conn.WriteControl(websocket.CloseMessage, closeMsg, time.Now().Add(time.Second))
	sock.mu.Unlock()
	s.log.Info("dashboard exec ended", "user", sess.user, "namespace", r.URL.Query().Get("namespace"), "pod", r.URL.Query().Get("pod"),
		"status", st.Status, "exitCode", st.ExitCode)
}

// runExec runs one exec session and returns how it ended.
func (s *Server) runExec(ctx context.Context, cancel context.CancelFunc, sess *session, r *http.Request, sock *execSocket) execStatus {
	fail := func(reason, format string, args ...any) execStatus {
		return execStatus{Status: "Failure", Reason: reason, Message: fmt.Sprintf(format, args...), ExitCode: -1}
	}
	ns, pod, container, command, tty, err := execParams(r)
	if err != nil {
		return fail("BadRequest", "exec: %v", err)
	}
	t, err := s.resolveTarget(ctx, sess, r.URL.Query().Get("cluster"))
	if err != nil {
		reason := "InternalError"
		var se *statusError
		if errors.As(err, &se) {
			reason = strings.ReplaceAll(http.StatusText(se.code), " ", "")
		}
		return fail(reason, "%v", err)
	}
	// A clear message before the API server's refusal (which it also
	// gives: the user's own credentials open the stream below).
	ok, err := canI(ctx, t.client, "create", podsGVR, ns, "exec")
	if err != nil {
		return fail("InternalError", "access review: %v", err)
	}
	if !ok {
		return fail("Forbidden", "%s cannot create pods/exec in namespace %s", sess.user, ns)
	}
	req := t.client.CoreV1().RESTClient().Post().Resource("pods").Namespace(ns).Name(pod).SubResource("exec").
		VersionedParams(&corev1.PodExecOptions{Container: container, Command: command, Stdin: true, Stdout: true, Stderr: !tty, TTY: tty},
			scheme.ParameterCodec)
	ex, err := remotecommand.NewWebSocketExecutor(t.rest, "GET", req.URL().String())
	if err != nil {
		return fail("InternalError", "exec: %v", err)
	}
	s.log.Info("dashboard exec", "user", sess.user, "cluster", t.cluster, "namespace", ns, "pod", pod, "container", container, "command", command)

	stdinR, stdinW := io.Pipe()
	sizes := &sizeQueue{ctx: ctx, ch: make(chan remotecommand.TerminalSize, 1)}
	readerDone := make(chan struct{})
	go func() {
		defer close(readerDone)
		// The browser went away (or sent a close): the exec ends.
		defer cancel()
		defer stdinW.Close()
		lim := rate.NewLimiter(execFrameRate, execFrameBurst)
		for {
			mt, data, err := sock.conn.ReadMessage()
			if err != nil {
				return
			}
			if !lim.Allow() {
				execThrottled.Add(1)
				if err := lim.Wait(ctx); err != nil {
					return
				}
			}
			if mt != websocket.BinaryMessage || len(data) == 0 {
				sock.notice("refused: frames are binary, the first byte the channel (0 stdin, 4 resize)")
				continue
			}
			switch data[0] {
			case chanStdin:
				if _, err := stdinW.Write(data[1:]); err != nil {
					return
				}
			case chanResize:
				var sz struct{ Width, Height uint16 }
				if err := json.Unmarshal(data[1:], &sz); err != nil || sz.Width == 0 || sz.Height == 0 {
					sock.notice(fmt.Sprintf("refused resize: want {\"Width\":cols,\"Height\":rows} above 0 (%q)", truncate(string(data[1:]), 80)))
					continue
				}
				sizes.push(remotecommand.TerminalSize{Width: sz.Width, Height: sz.Height})
			default:
				sock.notice(fmt.Sprintf("refused: unknown channel %d (0 stdin, 4 resize)", data[0]))
			}
		}
	}()
	opts := remotecommand.StreamOptions{Stdin: stdinR, Stdout: chanWriter{sock, chanStdout}, Tty: tty}
	if tty {
		opts.TerminalSizeQueue = sizes
	} else {
		opts.Stderr = chanWriter{sock, chanStderr}
	}
	err = ex.StreamWithContext(ctx, opts)
	// The executor may return on ctx before its stdin copy ends.
	_ = stdinR.CloseWithError(io.EOF)
	if e := sessionEndOf(ctx); e != nil {
		return execStatus{Status: "Failure", Reason: reasonSessionRevoked, Message: e.Error(), ExitCode: -1}
	}
	if ctx.Err() != nil {
		// The browser left: nobody reads the status.
		return execStatus{Status: "Failure", Reason: "Closed", Message: "terminal closed", ExitCode: -1}
	}
	// The command ended: stop reading the browser so the relay returns.
	_ = sock.conn.SetReadDeadline(time.Now())
	return execResult(err)
}

// execResult turns the executor's answer into the status for the browser.
func execResult(err error) execStatus {
	if err == nil {
		return execStatus{Status: "Success"}
	}
	var ce utilexec.CodeExitError
	if errors.As(err, &ce) {
		return execStatus{Status: "Failure", Reason: "NonZeroExitCode", Message: err.Error(), ExitCode: ce.Code}
	}
	var ue *httpstream.UpgradeFailureError
	if errors.As(err, &ue) && ue.Cause != nil {
		err = ue.Cause
	}
	var st apierrors.APIStatus
	if errors.As(err, &st) {
		return execStatus{Status: "Failure", Reason: string(st.Status().Reason), Message: st.Status().Message, ExitCode: -1}
	}
	return execStatus{Status: "Failure", Reason: "InternalError", Message: "exec: " + err.Error(), ExitCode: -1}
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}
