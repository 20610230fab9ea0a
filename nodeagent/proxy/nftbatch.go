package proxy

import (
	"errors"
	"fmt"
	"syscall"

	ctrdnetns "github.com/containerd/containerd/v2/pkg/netns"
	cnins "github.com/containernetworking/plugins/pkg/ns"
	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// txn stages one nftables transaction with github.com/google/nftables
// (which builds the messages) and sends it itself: the library's Flush
// asks the kernel for an ACK after every message and reads each with its
// own recvmsg (two system calls and several allocations per rule, a third
// of a 10,000-service sync's CPU). Here only the last message asks for an
// ACK: the kernel processes a netlink batch synchronously inside sendmsg
// and queues the error of every failed message (always sent, ACK or not),
// then the ACK, so reading up to that ACK sees every error. This is what
// nft itself does (no per-message ACK).
type txn struct {
	*nftables.Conn
	netns string
	msgs  []netlink.Message
}

// newTxn returns a transaction for the named network namespace (empty:
// ours). Objects are added to it as to an nftables.Conn; Flush sends
// them as one batch.
func newTxn(netns string) (*txn, error) {
	t := &txn{netns: netns}
	ack := netlink.Message{Header: netlink.Header{Type: netlink.Error}, Data: make([]byte, 4)}
	c, err := nftables.New(nftables.WithTestDial(func(req []netlink.Message) ([]netlink.Message, error) {
		// The library's Flush hands its batch over here (and then
		// reads one ACK per message: each read gets this one).
		t.msgs = append(t.msgs, req...)
		return []netlink.Message{ack}, nil
	}))
	if err != nil {
		return nil, fmt.Errorf("proxy: nftables: %w", err)
	}
	t.Conn = c
	return t, nil
}

// Flush sends what was staged as one transaction: all of it is applied
// or, on any error, none.
func (t *txn) Flush() error {
	if err := t.Conn.Flush(); err != nil { // serializes into t.msgs
		return err
	}
	msgs := t.msgs
	t.msgs = nil
	if len(msgs) <= 2 { // batch begin and end only
		return nil
	}
	return sendBatch(t.netns, msgs)
}

// nlSocket opens a NETLINK_NETFILTER socket in netns (empty: ours).
func nlSocket(netns string) (int, error) {
	return inNetNS(netns, func() (int, error) {
		return unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_NETFILTER)
	})
}

// inNetNS runs open (which opens a socket, or looks something up) in
// netns (empty: ours) and returns its result.
func inNetNS(netns string, open func() (int, error)) (int, error) {
	if netns == "" {
		return open()
	}
	fd := -1
	err := ctrdnetns.LoadNetNS(netnsPath(netns)).Do(func(cnins.NetNS) error {
		var err error
		fd, err = open()
		return err
	})
	if err != nil {
		if fd >= 0 {
			unix.Close(fd)
		}
		return -1, fmt.Errorf("proxy: in network namespace %s: %w", netns, err)
	}
	return fd, nil
}

// sendBatch sends msgs (batch begin, messages, batch end, as the library
// made them) in one sendmsg, without per-message ACKs but for the last
// message, and returns the errors the kernel reported.
func sendBatch(netns string, msgs []netlink.Message) error {
	fd, err := nlSocket(netns)
	if err != nil {
		return fmt.Errorf("proxy: netlink socket: %w", err)
	}
	defer unix.Close(fd)
	if err := errors.Join(
		unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, batchBuffer),
		unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 4<<20),
		// Errors carry only the failed message's header, not all of it.
		unix.SetsockoptInt(fd, unix.SOL_NETLINK, unix.NETLINK_CAP_ACK, 1),
		// A reply is queued before sendmsg returns; this only keeps a
		// kernel that never answers from blocking the proxy forever.
		unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &unix.Timeval{Sec: 60}),
	); err != nil {
		return fmt.Errorf("proxy: netlink socket options: %w", err)
	}
	last := len(msgs) - 2 // the last message before batch end
	size := 0
	for i := range msgs {
		h := &msgs[i].Header
		h.Sequence, h.PID = uint32(i+1), 0
		// Nor echoes: the library asks the kernel to echo every new rule
		// (for its handle, unused here), 160,000 replies for 10,000
		// services, which overflow any receive buffer (ENOBUFS).
		h.Flags &^= netlink.Acknowledge | netlink.Echo
		if i == last {
			h.Flags |= netlink.Acknowledge
		}
		h.Length = uint32(unix.NLMSG_HDRLEN + len(msgs[i].Data))
		size += nlmsgAlign(int(h.Length))
	}
	buf := make([]byte, 0, size)
	for i := range msgs {
		b, err := msgs[i].MarshalBinary()
		if err != nil {
			return fmt.Errorf("proxy: netlink message: %w", err)
		}
		buf = append(buf, b...)
	}
	if err := unix.Sendto(fd, buf, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return fmt.Errorf("proxy: nftables batch (%d messages, %d bytes): %w", len(msgs), len(buf), err)
	}
	return readErrors(fd, msgs[last].Header.Sequence, func(seq uint32, errno syscall.Errno) error {
		i := int(seq) - 1
		what := "batch"
		if i >= 0 && i < len(msgs) {
			what = fmt.Sprintf("message %d (type %#x)", i, uint16(msgs[i].Header.Type))
		}
		return fmt.Errorf("%s: %w", what, errno)
	})
}

// readErrors reads a netlink socket's replies up to the ACK of sequence
// number lastSeq and returns the errors reported before it, each made by
// report (nil: ignored).
func readErrors(fd int, lastSeq uint32, report func(seq uint32, errno syscall.Errno) error) error {
	var errs []error
	rbuf := make([]byte, 64<<10)
	for {
		n, _, err := unix.Recvfrom(fd, rbuf, 0)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return errors.Join(append(errs, fmt.Errorf("proxy: netlink reply: %w", err))...)
		}
		replies, err := syscall.ParseNetlinkMessage(rbuf[:n])
		if err != nil {
			return fmt.Errorf("proxy: netlink reply: %w", err)
		}
		for _, m := range replies {
			if m.Header.Type != unix.NLMSG_ERROR || len(m.Data) < 4 {
				continue
			}
			if code := int32(binaryutil.NativeEndian.Uint32(m.Data[:4])); code != 0 {
				if err := report(m.Header.Seq, syscall.Errno(-code)); err != nil {
					errs = append(errs, err)
				}
			}
			if m.Header.Seq == lastSeq {
				return errors.Join(errs...)
			}
		}
	}
}

func nlmsgAlign(n int) int { return (n + unix.NLMSG_ALIGNTO - 1) &^ (unix.NLMSG_ALIGNTO - 1) }
