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

// ipCmd is `ip [-n netns] args...`.
func ipCmd(netns string, args ...string) *exec.Cmd {
	if netns != "" {
		args = append([]string{"-n", netns}, args...)
	}
	return exec.Command("ip", args...)
}

// linkExists says whether the link is in netns (empty: ours).
func linkExists(netns, name string) bool {
	if netns == "" {
		_, err := net.InterfaceByName(name)
		return err == nil
	}
	return ipCmd(netns, "link", "show", "dev", name).Run() == nil
}

// ensureDummy creates the holder link in our own namespace (the userspace
// mode's entry); ensureDummyIn in netns.
func ensureDummy(name string) error { return ensureDummyIn("", name) }

func ensureDummyIn(netns, name string) error {
	if linkExists(netns, name) {
		return nil
	}
	// A dummy link where the kernel has the module; otherwise a bridge
	// without ports, which holds addresses just as well.
	if out, err := ipCmd(netns, "link", "add", name, "type", "dummy").CombinedOutput(); err != nil {
		if out2, err2 := ipCmd(netns, "link", "add", name, "type", "bridge").CombinedOutput(); err2 != nil {
			return fmt.Errorf("proxy: add link %s: dummy: %w: %s; bridge: %w: %s", name, err, out, err2, out2)
		}
	}
	if out, err := ipCmd(netns, "link", "set", name, "up").CombinedOutput(); err != nil {
		return fmt.Errorf("proxy: set %s up: %w: %s", name, err, out)
	}
	return nil
}

func deleteDummy(netns, name string) error {
	if !linkExists(netns, name) {
		return nil
	}
	if out, err := ipCmd(netns, "link", "delete", name).CombinedOutput(); err != nil && !isNotExist(out) {
		return fmt.Errorf("proxy: delete link %s: %w: %s", name, err, out)
	}
	return nil
}

// syncAddresses makes the /32 addresses of link equal want, given have
// (what a previous call left; on the first call the link's addresses are
// read).
func syncAddresses(link string, have, want map[string]bool) error {
	return syncAddressesIn("", link, have, want)
}

// syncAddressesIn is syncAddresses in the named namespace netns.
func syncAddressesIn(netns, link string, have, want map[string]bool) error {
	if len(have) == 0 {
		var err error
		if have, err = linkAddresses(netns, link); err != nil {
			return err
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
	cmd := ipCmd(netns, "-force", "-batch", "-")
	cmd.Stdin = strings.NewReader(strings.Join(cmds, "\n") + "\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("proxy: addresses of %s: %w: %s", link, err, out)
	}
	return nil
}

// linkAddresses reads the IPv4 addresses of link.
func linkAddresses(netns, link string) (map[string]bool, error) {
	out, err := ipCmd(netns, "-o", "-4", "addr", "show", "dev", link).Output()
	if err != nil {
		return nil, fmt.Errorf("proxy: addresses of %s: %w", link, err)
	}
	have := map[string]bool{}
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		for i := 0; i+1 < len(f); i++ {
			if f[i] == "inet" {
				if ip, _, err := net.ParseCIDR(f[i+1]); err == nil {
					have[ip.String()] = true
				}
			}
		}
	}
	return have, nil
}
