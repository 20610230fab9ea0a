package proxy

import (
	"fmt"
	"net"
	"os/exec"
	"sort"
	"strings"
)

// The holder link of the ClusterIPs is managed with iproute2, as the
// network package manages its bridge; its routes (route.go) and nftables
// go through netlink sockets of our own.

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

// The ClusterIPs are made local to the host with one `local` route each
// in the local table (`ip route replace local X/32 dev LINK table
// local`), not with addresses on the link: the kernel keeps a device's
// addresses in a list that every add and delete walks, so 10,000
// ClusterIPs cost seconds to minutes, while routes go into the FIB trie.
// A local route is all a ClusterIP needs: the route lookup at connect()
// finds RTN_LOCAL (beating the service CIDR's blackhole route, which stays
// untouched), the source address of such a flow is the ClusterIP itself,
// and bind() to it works (inet_addr_type looks at the local table), which
// the userspace mode's listeners rely on. Deleting the link removes its
// routes with it.

// syncAddresses makes the ClusterIPs local to this host: afterwards the
// local routes on link are exactly want, given have (what a previous
// call left; on the first call, have is empty and the routes are read,
// and /32 addresses an older version put on the link are removed).
func syncAddresses(link string, have, want map[string]bool) error {
	return syncAddressesIn("", link, have, want)
}

// syncAddressesIn is syncAddresses in the named namespace netns.
func syncAddressesIn(netns, link string, have, want map[string]bool) error {
	var cmds []string // addresses to delete first (`ip -batch`)
	if len(have) == 0 {
		// Addresses an earlier version left: deleting one also deletes
		// the kernel's local route for it, so they go first.
		old, err := linkAddresses(netns, link)
		if err != nil {
			return err
		}
		for _, ip := range sortedKeys(old) {
			cmds = append(cmds, fmt.Sprintf("address del %s/32 dev %s", ip, link))
		}
		if len(old) == 0 {
			if have, err = localRoutes(netns, link); err != nil {
				return err
			}
		}
	}
	var add, del []string
	for ip := range want {
		if !have[ip] {
			add = append(add, ip)
		}
	}
	for ip := range have {
		if !want[ip] {
			del = append(del, ip)
		}
	}
	if len(cmds) > 0 {
		cmd := ipCmd(netns, "-force", "-batch", "-")
		cmd.Stdin = strings.NewReader(strings.Join(cmds, "\n") + "\n")
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("proxy: old ClusterIP addresses on %s: %w: %s", link, err, out)
		}
	}
	sort.Strings(add)
	sort.Strings(del)
	return writeRoutes(netns, link, add, del)
}

// localRoutes reads the IPv4 /32 local routes through link in the local
// table.
func localRoutes(netns, link string) (map[string]bool, error) {
	out, err := ipCmd(netns, "-o", "-4", "route", "show", "table", "local", "type", "local", "dev", link).Output()
	if err != nil {
		return nil, fmt.Errorf("proxy: local routes of %s: %w", link, err)
	}
	have := map[string]bool{}
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) > 0 && f[0] == "local" {
			f = f[1:]
		}
		if len(f) == 0 {
			continue
		}
		dst := strings.TrimSuffix(f[0], "/32")
		if ip := net.ParseIP(dst); ip != nil && ip.To4() != nil {
			have[ip.String()] = true
		}
	}
	return have, nil
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
