package proxy

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"syscall"

	"golang.org/x/sys/unix"
)

// The ClusterIPs' local routes are written with rtnetlink on a socket of
// our own: every RTM_NEWROUTE / RTM_DELROUTE of a sync in one sendmsg,
// an ACK asked for the last one only (the kernel handles the messages of
// one send one after another and reports every failing one), rather than
// an `ip -batch` process parsing text.

// routeMsg is one RTM_NEWROUTE (replace) or RTM_DELROUTE message for the
// `local` route of ip (/32, table local) through the link with index
// ifindex, as `ip route replace|del local IP/32 dev LINK table local`
// makes it.
func routeMsg(ip net.IP, ifindex int, del bool, seq uint32) []byte {
	typ, flags := uint16(unix.RTM_NEWROUTE), uint16(unix.NLM_F_REQUEST|unix.NLM_F_CREATE|unix.NLM_F_REPLACE)
	scope := uint8(unix.RT_SCOPE_HOST)
	if del {
		typ, flags, scope = unix.RTM_DELROUTE, unix.NLM_F_REQUEST, unix.RT_SCOPE_NOWHERE
	}
	const attrs = 8 + 8 // RTA_DST, RTA_OIF
	b := make([]byte, unix.NLMSG_HDRLEN+unix.SizeofRtMsg+attrs)
	ne := binary.NativeEndian
	ne.PutUint32(b[0:], uint32(len(b)))
	ne.PutUint16(b[4:], typ)
	ne.PutUint16(b[6:], flags)
	ne.PutUint32(b[8:], seq)
	rt := b[unix.NLMSG_HDRLEN:]
	rt[0] = unix.AF_INET // family
	rt[1] = 32           // dst_len
	rt[4] = unix.RT_TABLE_LOCAL
	rt[5] = unix.RTPROT_BOOT
	rt[6] = scope
	rt[7] = unix.RTN_LOCAL
	a := rt[unix.SizeofRtMsg:]
	ne.PutUint16(a[0:], 8)
	ne.PutUint16(a[2:], unix.RTA_DST)
	copy(a[4:8], ip.To4())
	ne.PutUint16(a[8:], 8)
	ne.PutUint16(a[10:], unix.RTA_OIF)
	ne.PutUint32(a[12:], uint32(ifindex))
	return b
}

// writeRoutes deletes the local routes of del and replaces (adds) those
// of add through link in netns (empty: ours), in one send. Deleting a
// route that is not there is no error.
func writeRoutes(netns, link string, add, del []string) error {
	if len(add)+len(del) == 0 {
		return nil
	}
	ifindex, err := inNetNS(netns, func() (int, error) {
		ifi, err := net.InterfaceByName(link)
		if err != nil {
			return 0, err
		}
		return ifi.Index, nil
	})
	if err != nil {
		return fmt.Errorf("proxy: link %s: %w", link, err)
	}
	ips := make([]string, 0, len(add)+len(del))
	ips = append(append(ips, del...), add...)
	buf := make([]byte, 0, len(ips)*(unix.NLMSG_HDRLEN+unix.SizeofRtMsg+16))
	for i, s := range ips {
		ip := net.ParseIP(s).To4()
		if ip == nil {
			return fmt.Errorf("proxy: ClusterIP %q is not IPv4", s)
		}
		buf = append(buf, routeMsg(ip, ifindex, i < len(del), uint32(i+1))...)
	}
	// Only the last message asks for an ACK: the end of the replies.
	last := buf[len(buf)-(unix.NLMSG_HDRLEN+unix.SizeofRtMsg+16):]
	binary.NativeEndian.PutUint16(last[6:], binary.NativeEndian.Uint16(last[6:])|unix.NLM_F_ACK)

	fd, err := inNetNS(netns, func() (int, error) {
		return unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_ROUTE)
	})
	if err != nil {
		return fmt.Errorf("proxy: rtnetlink socket: %w", err)
	}
	defer unix.Close(fd)
	if err := errors.Join(
		unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, max(len(buf)+(64<<10), 1<<20)),
		unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 4<<20),
		unix.SetsockoptInt(fd, unix.SOL_NETLINK, unix.NETLINK_CAP_ACK, 1),
		unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &unix.Timeval{Sec: 60}),
	); err != nil {
		return fmt.Errorf("proxy: rtnetlink socket options: %w", err)
	}
	if err := unix.Sendto(fd, buf, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return fmt.Errorf("proxy: ClusterIP routes (%d messages): %w", len(ips), err)
	}
	err = readErrors(fd, uint32(len(ips)), func(seq uint32, errno syscall.Errno) error {
		i := int(seq) - 1
		if i < 0 || i >= len(ips) {
			return fmt.Errorf("proxy: ClusterIP routes: %w", errno)
		}
		if i < len(del) {
			if errno == unix.ESRCH {
				return nil // already gone
			}
			return fmt.Errorf("proxy: delete route local %s/32 dev %s: %w", ips[i], link, errno)
		}
		return fmt.Errorf("proxy: route local %s/32 dev %s: %w", ips[i], link, errno)
	})
	return err
}
