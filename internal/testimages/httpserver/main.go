// Command httpserver is the static test server baked into the test image
// that internal/testimages builds: it answers every request with the pod's
// hostname and the requested path, /env with its environment, and
// /burn?d=200ms by spinning on the CPU for that long (load for autoscaling
// tests; at most 10 s), and /ws as a WebSocket echo (every message sent
// back as it came, text or binary). On the same port number over UDP it
// answers every datagram with "hostname=<name>" (UDP service tests).
// On SIGTERM it stops accepting, finishes the requests in flight (at most
// 10 s) and exits, as a server behind a rolling update should.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/gorilla/websocket"
)

func main() {
	addr := flag.String("listen", ":8080", "address to serve on")
	flag.Parse()
	host, _ := os.Hostname()
	mux := http.NewServeMux()
	mux.HandleFunc("/env", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, strings.Join(os.Environ(), "\n"))
	})
	mux.HandleFunc("/burn", func(w http.ResponseWriter, r *http.Request) {
		d, err := time.ParseDuration(r.URL.Query().Get("d"))
		if err != nil || d <= 0 || d > 10*time.Second {
			d = 100 * time.Millisecond
		}
		n := 0
		for end := time.Now().Add(d); time.Now().Before(end); {
			n++
		}
		fmt.Fprintf(w, "hostname=%s burned=%v loops=%d\n", host, d, n)
	})
	up := websocket.Upgrader{CheckOrigin: func(*http.Request) bool { return true }}
	mux.HandleFunc("/ws", func(w http.ResponseWriter, r *http.Request) {
		c, err := up.Upgrade(w, r, nil)
		if err != nil {
			return // the upgrader answered the error
		}
		defer c.Close()
		for {
			kind, msg, err := c.ReadMessage()
			if err != nil {
				return
			}
			if err := c.WriteMessage(kind, msg); err != nil {
				return
			}
		}
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hostname=%s path=%s\n", host, r.URL.Path)
	})
	if pc, err := net.ListenPacket("udp", *addr); err != nil {
		log.Printf("no UDP answers: %v", err)
	} else {
		go func() {
			buf := make([]byte, 2048)
			reply := []byte("hostname=" + host + "\n")
			for {
				_, from, err := pc.ReadFrom(buf)
				if err != nil {
					return
				}
				_, _ = pc.WriteTo(reply, from)
			}
		}()
	}
	log.Printf("listening on %s", *addr)
	srv := &http.Server{Addr: *addr, Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	term := make(chan os.Signal, 1)
	signal.Notify(term, syscall.SIGTERM)
	go func() {
		<-term
		log.Printf("SIGTERM: finishing the requests in flight")
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			log.Printf("shutdown: %v", err)
		}
		os.Exit(0)
	}()
	if err := srv.ListenAndServe(); !errors.Is(err, http.ErrServerClosed) {
		log.Fatal(err)
	}
	select {} // Shutdown exits
}
