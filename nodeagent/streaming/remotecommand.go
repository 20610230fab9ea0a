// Package streaming serves the kubelet's streaming protocols on the node
// agent's API: remote commands (exec and attach) over WebSocket
// (v5.channel.k8s.io down to the unversioned channel.k8s.io, binary and
// base64) and over SPDY/3.1 (v4 down to v1), and port forwarding
// (portforward.k8s.io) over SPDY/3.1, over SPDY tunneled in a WebSocket
// (kubectl 1.31+'s "SPDY/3.1+portforward.k8s.io") and over the WebSocket
// channel protocol. It owns the wire formats only: what runs is a callback,
// so the package is tested with client-go's own clients and no containers.
package streaming

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	rc "k8s.io/apimachinery/pkg/util/remotecommand"
	"k8s.io/streaming/pkg/httpstream"
	"k8s.io/streaming/pkg/httpstream/spdy"
	"k8s.io/streaming/pkg/httpstream/wsstream"
)

// Defaults as the kubelet's streaming server.
const (
	DefaultIdleTimeout           = 4 * time.Hour
	DefaultStreamCreationTimeout = rc.DefaultStreamCreationTimeout
)

// Config tunes a streaming session.
type Config struct {
	// IdleTimeout closes a session with no traffic (default 4h).
	IdleTimeout time.Duration
	// StreamCreationTimeout bounds how long the client may take to open
	// its streams (default 30s).
	StreamCreationTimeout time.Duration
	Logger                *slog.Logger
}

func (c Config) withDefaults() Config {
	if c.IdleTimeout <= 0 {
		c.IdleTimeout = DefaultIdleTimeout
	}
	if c.StreamCreationTimeout <= 0 {
		c.StreamCreationTimeout = DefaultStreamCreationTimeout
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// Options are a remote command's query parameters (PodExecOptions /
// PodAttachOptions).
type Options struct {
	Stdin, Stdout, Stderr, TTY bool
	// Command is exec's argv (empty for attach).
	Command []string
}

// ParseOptions reads the options from the query as the kubelet does:
// stderr is dropped with a tty, and at least one stream is required.
func ParseOptions(r *http.Request) (Options, error) {
	q := r.URL.Query()
	// The kubelet's names (input=1, output=1, error=1, tty=1) or the API's
	// (stdin=true, stdout=true, stderr=true, tty=true).
	b := func(names ...string) bool {
		for _, k := range names {
			if v, _ := strconv.ParseBool(q.Get(k)); v {
				return true
			}
		}
		return false
	}
	o := Options{Stdin: b(corev1.ExecStdinParam, "stdin"), Stdout: b(corev1.ExecStdoutParam, "stdout"),
		Stderr: b(corev1.ExecStderrParam, "stderr"), TTY: b(corev1.ExecTTYParam), Command: q[corev1.ExecCommandParam]}
	if o.TTY && o.Stderr {
		o.Stderr = false
	}
	if !o.Stdin && !o.Stdout && !o.Stderr {
		return o, errors.New("you must specify at least 1 of stdin, stdout, stderr")
	}
	return o, nil
}

// TerminalSize is a resize event of a tty session.
type TerminalSize struct {
	Width, Height uint16
}

// Streams are what a remote command reads and writes; a stream the client
// did not ask for is nil.
type Streams struct {
	Stdin          io.Reader
	Stdout, Stderr io.Writer
	TTY            bool
	// Resize delivers terminal sizes (tty only); it is closed when the
	// client stops sending them.
	Resize <-chan TerminalSize
}

// ExitError reports that a command exited with a non-zero code.
type ExitError struct{ Code int }

func (e ExitError) Error() string { return fmt.Sprintf("command terminated with exit code %d", e.Code) }

// RunFunc runs the command with the client's streams. An ExitError becomes
// upstream's NonZeroExitCode status (kubectl exits with the code); any
// other error becomes an InternalError status.
type RunFunc func(ctx context.Context, s Streams) error

// Channels of the WebSocket protocol (and SPDY stream types).
const (
	stdinChannel = iota
	stdoutChannel
	stderrChannel
	errorChannel
	resizeChannel
)

var wsProtocols = []string{"", rc.StreamProtocolV1Name, "base64." + rc.StreamProtocolV1Name,
	rc.StreamProtocolV4Name, "v4.base64." + rc.StreamProtocolV1Name, rc.StreamProtocolV5Name}

// spdyProtocols are the remote command protocols offered over SPDY, best
// first.
var spdyProtocols = []string{rc.StreamProtocolV4Name, rc.StreamProtocolV3Name, rc.StreamProtocolV2Name, rc.StreamProtocolV1Name}

// session is an upgraded remote command connection.
type session struct {
	streams     Streams
	writeStatus func(*metav1.Status) error
	closeOut    func()
	close       func()
}

// ServeRemoteCommand upgrades r to a WebSocket or SPDY session with the
// streams opts asks for, runs fn, reports its result on the error stream
// and closes the session.
func ServeRemoteCommand(w http.ResponseWriter, r *http.Request, opts Options, cfg Config, fn RunFunc) {
	cfg = cfg.withDefaults()
	var s *session
	var err error
	if wsstream.IsWebSocketRequest(r) {
		s, err = openWebSocket(w, r, opts, cfg)
	} else {
		s, err = openSPDY(w, r, opts, cfg)
	}
	if err != nil {
		cfg.Logger.Debug("remote command: no session", "err", err)
		return
	}
	defer s.close()
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	runErr := fn(ctx, s.streams)
	s.closeOut()
	var status *metav1.Status
	var exit ExitError
	switch {
	case runErr == nil:
		status = &metav1.Status{Status: metav1.StatusSuccess}
	case errors.As(runErr, &exit):
		status = &metav1.Status{
			Status:  metav1.StatusFailure,
			Reason:  rc.NonZeroExitCodeReason,
			Message: fmt.Sprintf("command terminated with non-zero exit code: %v", exit),
			Details: &metav1.StatusDetails{Causes: []metav1.StatusCause{{Type: rc.ExitCodeCauseType, Message: strconv.Itoa(exit.Code)}}},
		}
	default:
		st := apierrors.NewInternalError(runErr).Status()
		status = &st
	}
	status.Kind, status.APIVersion = "Status", "v1"
	if err := s.writeStatus(status); err != nil {
		cfg.Logger.Debug("remote command: write status", "err", err)
	}
}

func statusWriter(out io.Writer, v4 bool) func(*metav1.Status) error {
	return func(st *metav1.Status) error {
		if v4 {
			b, err := json.Marshal(st)
			if err != nil {
				return err
			}
			_, err = out.Write(b)
			return err
		}
		if st.Status == metav1.StatusSuccess {
			return nil
		}
		_, err := out.Write([]byte(st.Message))
		return err
	}
}

// resizeEvents decodes JSON sizes from rd until it ends. After a message
// that does not decode, the rest of the stream is read and dropped: the
// WebSocket and SPDY readers block on an unread stream, so stopping would
// wedge stdin and the whole session (found by FuzzRemoteCommandFrames).
func resizeEvents(rd io.Reader) <-chan TerminalSize {
	ch := make(chan TerminalSize, 4)
	go func() {
		defer close(ch)
		dec := json.NewDecoder(rd)
		for {
			var sz TerminalSize
			if err := dec.Decode(&sz); err != nil {
				_, _ = io.Copy(io.Discard, rd)
				return
			}
			ch <- sz
		}
	}()
	return ch
}

func openWebSocket(w http.ResponseWriter, r *http.Request, opts Options, cfg Config) (*session, error) {
	channels := make([]wsstream.ChannelType, 5)
	channels[stdinChannel] = wsstream.IgnoreChannel
	if opts.Stdin {
		channels[stdinChannel] = wsstream.ReadChannel
	}
	if opts.Stdout {
		channels[stdoutChannel] = wsstream.WriteChannel
	}
	if opts.Stderr {
		channels[stderrChannel] = wsstream.WriteChannel
	}
	channels[errorChannel] = wsstream.WriteChannel
	channels[resizeChannel] = wsstream.ReadChannel
	protos := map[string]wsstream.ChannelProtocolConfig{}
	for _, p := range wsProtocols {
		protos[p] = wsstream.ChannelProtocolConfig{Binary: !strings.Contains(p, "base64"), Channels: channels}
	}
	conn := wsstream.NewConn(protos)
	conn.SetIdleTimeout(cfg.IdleTimeout)
	proto, rw, err := conn.Open(w, r)
	if err != nil {
		return nil, fmt.Errorf("websocket upgrade: %w", err)
	}
	// An empty message on the lowest writable channel tells the client the
	// session is established.
	switch {
	case opts.Stdout:
		_, _ = rw[stdoutChannel].Write(nil)
	case opts.Stderr:
		_, _ = rw[stderrChannel].Write(nil)
	default:
		_, _ = rw[errorChannel].Write(nil)
	}
	s := &session{
		writeStatus: statusWriter(rw[errorChannel], proto == rc.StreamProtocolV4Name || proto == rc.StreamProtocolV5Name || strings.HasPrefix(proto, "v4.")),
		closeOut:    func() {},
		close:       func() { _ = conn.Close() },
	}
	s.streams.TTY = opts.TTY
	if opts.Stdin {
		s.streams.Stdin = rw[stdinChannel]
	}
	if opts.Stdout {
		s.streams.Stdout = rw[stdoutChannel]
	}
	if opts.Stderr {
		s.streams.Stderr = rw[stderrChannel]
	}
	if opts.TTY {
		s.streams.Resize = resizeEvents(rw[resizeChannel])
	}
	return s, nil
}

type streamAndReply struct {
	httpstream.Stream
	replySent <-chan struct{}
}

func openSPDY(w http.ResponseWriter, r *http.Request, opts Options, cfg Config) (*session, error) {
	proto, err := httpstream.Handshake(r, w, spdyProtocols)
	if err != nil {
		return nil, err
	}
	streamCh := make(chan streamAndReply)
	stop := make(chan struct{})
	conn := spdy.NewResponseUpgrader().UpgradeResponse(w, r, func(st httpstream.Stream, replySent <-chan struct{}) error {
		select {
		case streamCh <- streamAndReply{Stream: st, replySent: replySent}:
			return nil
		case <-stop:
			return errors.New("not accepting streams")
		}
	})
	if conn == nil {
		close(stop)
		return nil, errors.New("spdy upgrade failed")
	}
	conn.SetIdleTimeout(cfg.IdleTimeout)
	expected := 1 // error
	for _, b := range []bool{opts.Stdin, opts.Stdout, opts.Stderr, opts.TTY && proto != rc.StreamProtocolV2Name && proto != rc.StreamProtocolV1Name} {
		if b {
			expected++
		}
	}
	var stdin, stdout, stderr, errStream, resize httpstream.Stream
	timeout := time.NewTimer(cfg.StreamCreationTimeout)
	defer timeout.Stop()
	var replies []<-chan struct{}
	for got := 0; got < expected; got++ {
		select {
		case st := <-streamCh:
			switch t := st.Headers().Get(corev1.StreamType); t {
			case corev1.StreamTypeError:
				errStream = st
			case corev1.StreamTypeStdin:
				stdin = st
			case corev1.StreamTypeStdout:
				stdout = st
			case corev1.StreamTypeStderr:
				stderr = st
			case corev1.StreamTypeResize:
				resize = st
			default:
				close(stop)
				_ = conn.Close()
				return nil, fmt.Errorf("unexpected stream type %q", t)
			}
			replies = append(replies, st.replySent)
		case <-timeout.C:
			close(stop)
			_ = conn.Close()
			return nil, errors.New("timed out waiting for client to create streams")
		}
	}
	close(stop)
	for _, rs := range replies {
		select {
		case <-rs:
		case <-timeout.C:
			_ = conn.Close()
			return nil, errors.New("timed out waiting for stream replies")
		}
	}
	if errStream == nil {
		_ = conn.Close()
		return nil, errors.New("client did not create an error stream")
	}
	s := &session{writeStatus: statusWriter(errStream, proto == rc.StreamProtocolV4Name)}
	s.streams.TTY = opts.TTY
	if stdin != nil {
		s.streams.Stdin = stdin
	}
	if stdout != nil {
		s.streams.Stdout = stdout
	}
	if stderr != nil {
		s.streams.Stderr = stderr
	}
	if resize != nil {
		s.streams.Resize = resizeEvents(resize)
	} else if opts.TTY {
		ch := make(chan TerminalSize)
		close(ch)
		s.streams.Resize = ch
	}
	var once sync.Once
	// Output streams are half-closed before the status is written, so the
	// client has read all output when it sees the result.
	s.closeOut = func() {
		once.Do(func() {
			for _, st := range []httpstream.Stream{stdout, stderr} {
				if st != nil {
					_ = st.Close()
				}
			}
		})
	}
	s.close = func() {
		_ = errStream.Close()
		_ = conn.Close()
	}
	return s, nil
}
