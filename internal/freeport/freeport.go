// Package freeport picks ports for tests and benchmarks that must tell a
// server which port to listen on before it binds it.
//
// Picking with port 0 and closing races the server's own port-0
// listeners (its etcd, say), which the kernel may hand the same port.
// Ports here come from below the kernel's ephemeral range, are checked
// free for TCP and UDP, and are handed out once: never twice in one
// process, and not again by any process on the machine for Hold.
package freeport

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Hold is how long a port handed out stays reserved against other
// processes: long enough for the caller to start what binds it.
const Hold = 10 * time.Minute

var (
	mu     sync.Mutex
	handed = map[int]bool{} // ports returned in this process
)

// On returns a port free for TCP and UDP on every one of ips (loopback
// if none are given).
func On(ips ...string) (int, error) {
	if len(ips) == 0 {
		ips = []string{"127.0.0.1"}
	}
	lo, hi := pickRange()
	mu.Lock()
	defer mu.Unlock()
	for range 1000 {
		port := lo + rand.IntN(hi-lo)
		if handed[port] || !freeOn(port, ips) || !reserve(port) {
			continue
		}
		handed[port] = true
		return port, nil
	}
	return 0, fmt.Errorf("no port in [%d, %d) free on every one of %v", lo, hi, ips)
}

// reserve claims port against other processes with a file whose
// modification time is the claim's; a claim older than Hold is taken
// over. Without a usable directory it claims nothing and says yes.
func reserve(port int) bool {
	dir := filepath.Join(os.TempDir(), "skiff-freeport")
	if err := os.MkdirAll(dir, 0o777); err != nil {
		return true
	}
	name := filepath.Join(dir, strconv.Itoa(port))
	f, err := os.OpenFile(name, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o666)
	if err == nil {
		f.Close()
		return true
	}
	if !os.IsExist(err) {
		return true
	}
	st, err := os.Stat(name)
	if err != nil || time.Since(st.ModTime()) < Hold {
		return false
	}
	now := time.Now()
	return os.Chtimes(name, now, now) == nil
}

// pickRange is the 10,000 ports below the ephemeral range
// (net.ipv4.ip_local_port_range), or above it if it starts too low.
func pickRange() (lo, hi int) {
	eph := 32768
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			if v, err := strconv.Atoi(f[0]); err == nil {
				eph = v
			}
			if eph < 11024 {
				if v, err := strconv.Atoi(f[1]); err == nil && v < 55000 {
					return v + 1, v + 10001
				}
			}
		}
	}
	if eph < 11024 {
		return 55000, 65000
	}
	return eph - 10000, eph
}

// freeOn reports whether port can be bound for TCP and UDP on every ip.
func freeOn(port int, ips []string) bool {
	for _, ip := range ips {
		addr := net.JoinHostPort(ip, strconv.Itoa(port))
		l, err := net.Listen("tcp", addr)
		if err != nil {
			return false
		}
		u, err := net.ListenPacket("udp", addr)
		l.Close()
		if err != nil {
			return false
		}
		u.Close()
	}
	return true
}
