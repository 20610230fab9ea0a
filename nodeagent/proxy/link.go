package proxy

import (
	"fmt"
	"net"
	"os/exec"
	"sort"
	"strings"
)

// The holder link of the ClusterIPs is managed with iproute2 (`ip -batch`), as the
// network package manages its bridge; nftables itself goes through
// netlink.

func ensureDummy(name string) error {
	if _, err := net.InterfaceByName(name); err == nil {
		return nil
	}
	// A dummy link where the kernel has the module; otherwise a bridge
	// without ports, which holds addresses just as well.
	if out, err := exec.Command("ip", "link", "add", name, "type", "dummy").CombinedOutput(); err != nil {
		if out2, err2 := exec.Command("ip", "link", "add", name, "type", "bridge").CombinedOutput(); err2 != nil {
			return fmt.Errorf("proxy: add link %s: dummy: %w: %s; bridge: %w: %s", name, err, out, err2, out2)
		}
	}
	if out, err := exec.Command("ip", "link", "set", name, "up").CombinedOutput(); err != nil {
		return fmt.Errorf("proxy: set %s up: %w: %s", name, err, out)
	}
	return nil
}

func deleteDummy(name string) error {
	if _, err := net.InterfaceByName(name); err != nil {
		return nil
	}
	if out, err := exec.Command("ip", "link", "delete", name).CombinedOutput(); err != nil && !isNotExist(out) {
		return fmt.Errorf("proxy: delete link %s: %w: %s", name, err, out)
	}
	return nil
}

// syncAddresses makes the /32 addresses of link equal want, given have
// (what a previous call left; on the first call the link's addresses are
// read).
func syncAddresses(link string, have, want map[string]bool) error {
	if len(have) == 0 {
		have = map[string]bool{}
		ifc, err := net.InterfaceByName(link)
		if err != nil {
			return fmt.Errorf("proxy: link %s: %w", link, err)
		}
		addrs, err := ifc.Addrs()
		if err != nil {
			return fmt.Errorf("proxy: addresses of %s: %w", link, err)
		}
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok && n.IP.To4() != nil {
				have[n.IP.String()] = true
			}
		}
	}
	var cmds []string
	for ip := range want {
		if !have[ip] {
			cmds = append(cmds, fmt.Sprintf("address replace %s/32 dev %s", ip, link))
		}
	}
	for ip := range have {
		if !want[ip] {
			cmds = append(cmds, fmt.Sprintf("address del %s/32 dev %s", ip, link))
		}
	}
	if len(cmds) == 0 {
		return nil
	}
	sort.Strings(cmds)
	cmd := exec.Command("ip", "-force", "-batch", "-")
	cmd.Stdin = strings.NewReader(strings.Join(cmds, "\n") + "\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("proxy: addresses of %s: %w: %s", link, err, out)
	}
	return nil
}
