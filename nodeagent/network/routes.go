package network

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"sort"
	"strings"
)

// RouteProto is the routing protocol number (iproute2's "proto") that
// marks the host-gw routes the Manager installs, so it can find and remove
// exactly its own routes. It is not assigned in /etc/iproute2/rt_protos.
const RouteProto = "211"

// ensureBlackholes adds a blackhole route for every non-empty CIDR that
// has none yet. They are never removed: whatever is addressed to the
// cluster's pod or service range and has no more specific route (a pod
// CIDR on this node's bridge or routed to another node) is dropped here
// instead of leaving through the default route.
func ensureBlackholes(cidrs ...string) error {
	for _, c := range cidrs {
		if c == "" {
			continue
		}
		_, n, err := net.ParseCIDR(c)
		if err != nil {
			return fmt.Errorf("network: blackhole %q: %w", c, err)
		}
		out, err := exec.Command("ip", "-4", "route", "show", "exact", n.String(), "type", "blackhole").CombinedOutput()
		if err != nil {
			return fmt.Errorf("network: ip route show: %w: %s", err, out)
		}
		if len(bytes.TrimSpace(out)) > 0 {
			continue
		}
		if out, err := exec.Command("ip", "-4", "route", "add", "blackhole", n.String()).CombinedOutput(); err != nil && !strings.Contains(string(out), "File exists") {
			return fmt.Errorf("network: add blackhole route %s: %w: %s", n, err, out)
		}
	}
	return nil
}

// SyncRoutes makes the host-gw routes equal want: pod CIDR → the address
// of the node that owns it, which must be on a network this node is
// directly attached to (host-gw sends the packet straight to that node).
// Routes with RouteProto inside the cluster CIDR that are no longer
// wanted are removed.
// A route the kernel refuses (no directly reachable gateway, a CIDR that
// is not in the cluster CIDR) is skipped and reported in the joined
// error; the others are still installed.
func (m *Manager) SyncRoutes(want map[string]net.IP) error {
	_, cluster, err := net.ParseCIDR(m.opts.ClusterCIDR)
	if err != nil {
		return fmt.Errorf("network: cluster CIDR: %w", err)
	}
	have, err := ownRoutes()
	if err != nil {
		return err
	}
	var errs []error
	wantNorm := map[string]string{}
	for c, gw := range want {
		_, n, err := net.ParseCIDR(c)
		if err != nil || n.IP.To4() == nil || gw.To4() == nil {
			errs = append(errs, fmt.Errorf("network: route %s via %s: not IPv4", c, gw))
			continue
		}
		ones, _ := n.Mask.Size()
		cOnes, _ := cluster.Mask.Size()
		if !cluster.Contains(n.IP) || ones < cOnes {
			errs = append(errs, fmt.Errorf("network: route %s: not inside the cluster CIDR %s", n, cluster))
			continue
		}
		if n.String() == m.podCIDR() {
			continue // this node's own range is on the bridge
		}
		wantNorm[n.String()] = gw.To4().String()
	}
	keys := make([]string, 0, len(wantNorm))
	for c := range wantNorm {
		keys = append(keys, c)
	}
	sort.Strings(keys)
	for _, c := range keys {
		gw := wantNorm[c]
		if have[c] == gw {
			continue
		}
		if out, err := exec.Command("ip", "-4", "route", "replace", c, "via", gw, "proto", RouteProto).CombinedOutput(); err != nil {
			errs = append(errs, fmt.Errorf("network: route %s via %s: %w: %s", c, gw, err, bytes.TrimSpace(out)))
			continue
		}
		m.log.Info("host-gw route", "podCIDR", c, "via", gw)
	}
	for c := range have {
		if _, ok := wantNorm[c]; ok {
			continue
		}
		if _, n, err := net.ParseCIDR(c); err != nil || !cluster.Contains(n.IP) {
			continue // another cluster's agent in this network namespace
		}
		if out, err := exec.Command("ip", "-4", "route", "del", c, "proto", RouteProto).CombinedOutput(); err != nil && !strings.Contains(string(out), "No such process") {
			errs = append(errs, fmt.Errorf("network: delete route %s: %w: %s", c, err, bytes.TrimSpace(out)))
			continue
		}
		m.log.Info("host-gw route removed", "podCIDR", c)
	}
	return errors.Join(errs...)
}

// Routes returns the host-gw routes installed now: pod CIDR → gateway.
func (m *Manager) Routes() (map[string]string, error) { return ownRoutes() }

func (m *Manager) podCIDR() string {
	_, n, err := net.ParseCIDR(m.opts.PodCIDR)
	if err != nil {
		return ""
	}
	return n.String()
}

// ownRoutes lists the routes with protocol RouteProto as CIDR → gateway.
func ownRoutes() (map[string]string, error) {
	out, err := exec.Command("ip", "-4", "route", "show", "proto", RouteProto).CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("network: ip route show: %w: %s", err, out)
	}
	have := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 3 {
			continue
		}
		gw := ""
		for i := 1; i+1 < len(f); i++ {
			if f[i] == "via" {
				gw = f[i+1]
			}
		}
		have[f[0]] = gw
	}
	return have, nil
}
