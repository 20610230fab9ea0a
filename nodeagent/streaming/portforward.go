package streaming

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	gwebsocket "github.com/gorilla/websocket"
	corev1 "k8s.io/api/core/v1"
	pfconst "k8s.io/apimachinery/pkg/util/portforward"
	"k8s.io/client-go/tools/portforward"
	"k8s.io/streaming/pkg/httpstream"
	"k8s.io/streaming/pkg/httpstream/spdy"
	"k8s.io/streaming/pkg/httpstream/wsstream"
)

// DialFunc opens a connection to port inside the pod.
type DialFunc func(ctx context.Context, port uint16) (net.Conn, error)

// pingPeriod keeps tunneled connections alive through proxies, as
// client-go's dialer does from its side.
const pingPeriod = 10 * time.Second

// ServePortForward serves one port-forward session: SPDY/3.1
// (portforward.k8s.io), SPDY tunneled in a WebSocket, or the WebSocket
// channel protocol (ports from the "port" query parameters). target names
// the pod in error messages.
func ServePortForward(w http.ResponseWriter, r *http.Request, target string, cfg Config, dial DialFunc) {
	cfg = cfg.withDefaults()
	switch {
	case wsstream.IsWebSocketRequestWithTunnelingProtocol(r):
		serveTunneledPortForward(w, r, target, cfg, dial)
	case wsstream.IsWebSocketRequest(r):
		serveWebSocketPortForward(w, r, target, cfg, dial)
	default:
		if _, err := httpstream.Handshake(r, w, []string{pfconst.PortForwardV1Name}); err != nil {
			return
		}
		streams := make(chan httpstream.Stream, 1)
		conn := spdy.NewResponseUpgrader().UpgradeResponse(w, r, portForwardStreamReceived(streams))
		if conn == nil {
			return
		}
		runPortForward(r.Context(), conn, streams, target, cfg, dial)
	}
}

// serveTunneledPortForward terminates kubectl's SPDY-over-WebSocket
// tunnel here: the WebSocket's binary messages carry the SPDY connection.
func serveTunneledPortForward(w http.ResponseWriter, r *http.Request, target string, cfg Config, dial DialFunc) {
	up := gwebsocket.Upgrader{
		Subprotocols: []string{pfconst.WebsocketsSPDYTunnelingPortForwardV1},
		CheckOrigin:  func(*http.Request) bool { return true },
	}
	ws, err := up.Upgrade(w, r, nil)
	if err != nil {
		cfg.Logger.Debug("port-forward: websocket upgrade", "err", err)
		return
	}
	tc := portforward.NewTunnelingConnection("agent", ws)
	streams := make(chan httpstream.Stream, 1)
	conn, err := spdy.NewServerConnectionWithPings(tc, portForwardStreamReceived(streams), pingPeriod)
	if err != nil {
		_ = tc.Close()
		return
	}
	runPortForward(r.Context(), conn, streams, target, cfg, dial)
	_ = tc.Close()
}

func portForwardStreamReceived(streams chan<- httpstream.Stream) httpstream.NewStreamHandler {
	return func(st httpstream.Stream, _ <-chan struct{}) error {
		ps := st.Headers().Get(corev1.PortHeader)
		if ps == "" {
			return fmt.Errorf("%q header is required", corev1.PortHeader)
		}
		port, err := strconv.ParseUint(ps, 10, 16)
		if err != nil {
			return fmt.Errorf("unable to parse %q as a port: %w", ps, err)
		}
		if port < 1 {
			return fmt.Errorf("port %q must be > 0", ps)
		}
		switch t := st.Headers().Get(corev1.StreamType); t {
		case corev1.StreamTypeError, corev1.StreamTypeData:
		case "":
			return fmt.Errorf("%q header is required", corev1.StreamType)
		default:
			return fmt.Errorf("invalid stream type %q", t)
		}
		streams <- st
		return nil
	}
}

// streamPair is one forwarded connection: a data and an error stream with
// the same request ID.
type streamPair struct {
	data, errs httpstream.Stream
	complete   chan struct{}
}

func requestID(st httpstream.Stream) string {
	if id := st.Headers().Get(corev1.PortForwardRequestIDHeader); id != "" {
		return id
	}
	// Clients before 1.4 send no request ID: pair by stream identifier.
	if st.Headers().Get(corev1.StreamType) == corev1.StreamTypeData {
		return strconv.Itoa(int(st.Identifier()) - 2)
	}
	return strconv.Itoa(int(st.Identifier()))
}

func runPortForward(ctx context.Context, conn httpstream.Connection, streams <-chan httpstream.Stream, target string, cfg Config, dial DialFunc) {
	defer conn.Close()
	conn.SetIdleTimeout(cfg.IdleTimeout)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var mu sync.Mutex
	pairs := map[string]*streamPair{}
	for {
		select {
		case <-conn.CloseChan():
			return
		case <-ctx.Done():
			return
		case st := <-streams:
			id := requestID(st)
			mu.Lock()
			p, ok := pairs[id]
			if !ok {
				p = &streamPair{complete: make(chan struct{})}
				pairs[id] = p
				go func() {
					t := time.NewTimer(cfg.StreamCreationTimeout)
					defer t.Stop()
					select {
					case <-p.complete:
					case <-t.C:
						mu.Lock()
						if p.errs != nil {
							_, _ = fmt.Fprintf(p.errs, "timed out waiting for streams of request %s", id)
						}
						mu.Unlock()
						conn.RemoveStreams(nonNil(p.data, p.errs)...)
					case <-ctx.Done():
					}
					mu.Lock()
					delete(pairs, id)
					mu.Unlock()
				}()
			}
			var dup bool
			if st.Headers().Get(corev1.StreamType) == corev1.StreamTypeData {
				dup, p.data = p.data != nil, st
			} else {
				dup, p.errs = p.errs != nil, st
			}
			done := !dup && p.data != nil && p.errs != nil
			mu.Unlock()
			if dup {
				_ = st.Reset()
				continue
			}
			if done {
				close(p.complete)
				go forwardPair(ctx, conn, p, target, cfg, dial)
			}
		}
	}
}

func nonNil(ss ...httpstream.Stream) []httpstream.Stream {
	var out []httpstream.Stream
	for _, s := range ss {
		if s != nil {
			out = append(out, s)
		}
	}
	return out
}

func forwardPair(ctx context.Context, conn httpstream.Connection, p *streamPair, target string, cfg Config, dial DialFunc) {
	defer conn.RemoveStreams(p.data, p.errs)
	defer p.errs.Close()
	defer p.data.Close()
	port, _ := strconv.ParseUint(p.data.Headers().Get(corev1.PortHeader), 10, 16)
	if err := forward(ctx, uint16(port), p.data, dial); err != nil {
		msg := fmt.Sprintf("error forwarding port %d to pod %s: %v", port, target, err)
		cfg.Logger.Debug("port-forward", "err", msg)
		_, _ = io.WriteString(p.errs, msg)
	}
}

// forward copies between the client's stream and a connection to the
// pod's port until the pod side ends, or the client side ends and the pod
// side finishes answering.
func forward(ctx context.Context, port uint16, st io.ReadWriteCloser, dial DialFunc) error {
	c, err := dial(ctx, port)
	if err != nil {
		return err
	}
	defer c.Close()
	fromPod := make(chan error, 1)
	go func() {
		_, err := io.Copy(st, c)
		fromPod <- err
	}()
	toPod := make(chan error, 1)
	go func() {
		_, err := io.Copy(c, st)
		if cw, ok := c.(interface{ CloseWrite() error }); ok {
			_ = cw.CloseWrite()
		}
		toPod <- err
	}()
	select {
	case err := <-fromPod:
		if err != nil && !errors.Is(err, net.ErrClosed) {
			return fmt.Errorf("copy from pod: %w", err)
		}
		return nil
	case <-ctx.Done():
		return nil
	}
}

// serveWebSocketPortForward is the kubelet's WebSocket port-forward: two
// channels (data, error) per requested port, each opened by the port
// number in little endian.
func serveWebSocketPortForward(w http.ResponseWriter, r *http.Request, target string, cfg Config, dial DialFunc) {
	var ports []uint16
	for _, ps := range r.URL.Query()[corev1.PortHeader] {
		p, err := strconv.ParseUint(ps, 10, 16)
		if err != nil || p == 0 {
			http.Error(w, fmt.Sprintf("invalid port %q", ps), http.StatusBadRequest)
			return
		}
		ports = append(ports, uint16(p))
	}
	if len(ports) == 0 {
		http.Error(w, "query parameter \"port\" is required", http.StatusBadRequest)
		return
	}
	channels := make([]wsstream.ChannelType, 0, 2*len(ports))
	for range ports {
		channels = append(channels, wsstream.ReadWriteChannel, wsstream.WriteChannel)
	}
	conn := wsstream.NewConn(map[string]wsstream.ChannelProtocolConfig{
		"": {Binary: true, Channels: channels},
		"v4." + wsstream.ChannelWebSocketProtocol:       {Binary: true, Channels: channels},
		"v4." + wsstream.Base64ChannelWebSocketProtocol: {Binary: false, Channels: channels},
	})
	conn.SetIdleTimeout(cfg.IdleTimeout)
	_, rw, err := conn.Open(w, r)
	if err != nil {
		cfg.Logger.Debug("port-forward: websocket upgrade", "err", err)
		return
	}
	defer conn.Close()
	var wg sync.WaitGroup
	for i, p := range ports {
		pb := binary.LittleEndian.AppendUint16(nil, p)
		data, errs := rw[2*i], rw[2*i+1]
		if _, err := data.Write(pb); err != nil {
			return
		}
		if _, err := errs.Write(pb); err != nil {
			return
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := forward(r.Context(), p, data, dial); err != nil {
				_, _ = io.WriteString(errs, fmt.Sprintf("error forwarding port %d to pod %s: %v", p, target, err))
			}
		}()
	}
	wg.Wait()
}
