package netlab

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// Impair makes every packet node sends on eth0 arrive delay later, and
// loses the fraction loss of them, as `tc qdisc add dev eth0 root netem
// delay D loss P%` would; kernels without netem (like this project's CI
// machines) still have netfilter queues, so iptables hands each packet to
// a queue this process reads, and the verdict comes from here: drop at
// random, or accept once delay has passed (in order). Packets pass
// unharmed if the reader goes away (fail-open, queue bypass).
func (l *Lab) Impair(name string, loss float64, delay time.Duration) error {
	l.mu.Lock()
	_, busy := l.impaired[name]
	l.mu.Unlock()
	if busy {
		return fmt.Errorf("impair %s: already impaired", name)
	}
	imp := &impairment{loss: loss, delay: delay, quit: make(chan struct{}),
		accepts: make(chan pending, 1<<16)}
	if err := l.Do(name, imp.open); err != nil {
		return fmt.Errorf("impair %s: %w", name, err)
	}
	imp.wg.Go(imp.read)
	imp.wg.Go(imp.accept)
	if err := l.iptables(name, imp.rule("-A")...); err != nil {
		imp.stop()
		return fmt.Errorf("impair %s: %w", name, err)
	}
	imp.unrule = func() error { return l.iptables(name, imp.rule("-D")...) }
	l.mu.Lock()
	l.impaired[name] = imp
	l.mu.Unlock()
	return nil
}

// Unimpair ends Impair.
func (l *Lab) Unimpair(name string) error {
	l.mu.Lock()
	imp := l.impaired[name]
	delete(l.impaired, name)
	l.mu.Unlock()
	if imp == nil {
		return nil
	}
	return imp.stop()
}

// The netfilter queue protocol (linux/netfilter/nfnetlink_queue.h).
const (
	nfqQueue          = 0
	nfqMsgPacket      = 0
	nfqMsgVerdict     = 1
	nfqMsgConfig      = 2
	nfqaPacketHdr     = 1
	nfqaVerdictHdr    = 2
	nfqaCfgCmd        = 1
	nfqaCfgParams     = 2
	nfqaCfgQueueMax   = 3
	nfqaCfgMask       = 4
	nfqaCfgFlags      = 5
	nfqCmdBind        = 1
	nfqCopyMeta       = 1
	nfqFailOpen       = 1
	nfDrop, nfAccept  = 0, 1
	nlmsgHeaderLength = 16
)

type impairment struct {
	loss   float64
	delay  time.Duration
	fd     int
	unrule func() error

	accepts chan pending
	quit    chan struct{}
	wg      sync.WaitGroup
	once    sync.Once
	err     error
}

type pending struct {
	id  uint32
	due time.Time
}

func (imp *impairment) rule(op string) []string {
	return []string{op, "OUTPUT", "-o", "eth0", "-j", "NFQUEUE",
		"--queue-num", strconv.Itoa(nfqQueue), "--queue-bypass"}
}

// open makes the queue socket (in the namespace: Do) and binds the queue.
func (imp *impairment) open() error {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_NETFILTER)
	if err != nil {
		return fmt.Errorf("netfilter socket: %w", err)
	}
	imp.fd = fd
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		unix.Close(fd)
		return fmt.Errorf("bind netfilter socket: %w", err)
	}
	_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 8<<20)
	_ = unix.SetsockoptInt(fd, unix.SOL_NETLINK, unix.NETLINK_NO_ENOBUFS, 1)
	tv := unix.NsecToTimeval((200 * time.Millisecond).Nanoseconds())
	_ = unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
	params := binary.BigEndian.AppendUint32(nil, 0xffff)
	params = append(params, nfqCopyMeta)
	for i, attrs := range [][][]byte{
		{nlattr(nfqaCfgCmd, []byte{nfqCmdBind, 0, 0, 0})},
		{nlattr(nfqaCfgParams, params)},
		{nlattr(nfqaCfgQueueMax, be32(1<<15))},
		{nlattr(nfqaCfgMask, be32(nfqFailOpen)), nlattr(nfqaCfgFlags, be32(nfqFailOpen))},
	} {
		if err := imp.request(uint32(i+1), nfqMsgConfig, attrs...); err != nil {
			unix.Close(fd)
			return fmt.Errorf("configure netfilter queue: %w", err)
		}
	}
	return nil
}

// request sends a config message and waits for its acknowledgement.
func (imp *impairment) request(seq uint32, typ uint16, attrs ...[]byte) error {
	msg := nfqMessage(typ, unix.NLM_F_REQUEST|unix.NLM_F_ACK, seq, attrs...)
	if err := unix.Sendto(imp.fd, msg, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return err
	}
	buf := make([]byte, 8192)
	for {
		n, _, err := unix.Recvfrom(imp.fd, buf, 0)
		if err != nil {
			return err
		}
		for _, m := range splitMessages(buf[:n]) {
			if binary.NativeEndian.Uint16(m[4:]) != unix.NLMSG_ERROR || binary.NativeEndian.Uint32(m[8:]) != seq {
				continue
			}
			if code := int32(binary.NativeEndian.Uint32(m[nlmsgHeaderLength:])); code != 0 {
				return unix.Errno(-code)
			}
			return nil
		}
	}
}

// read gives each queued packet its fate.
func (imp *impairment) read() {
	defer close(imp.accepts)
	buf := make([]byte, 1<<16)
	for {
		select {
		case <-imp.quit:
			return
		default:
		}
		n, _, err := unix.Recvfrom(imp.fd, buf, 0)
		if err != nil {
			continue // the receive timeout, to look at quit
		}
		now := time.Now()
		for _, m := range splitMessages(buf[:n]) {
			id, ok := packetID(m)
			switch {
			case !ok:
			case rand.Float64() < imp.loss:
				imp.verdict(id, nfDrop)
			default:
				imp.accepts <- pending{id, now.Add(imp.delay)}
			}
		}
	}
}

// accept lets the packets through once they are due, in order.
func (imp *impairment) accept() {
	for p := range imp.accepts {
		if d := time.Until(p.due); d > 0 {
			select {
			case <-time.After(d):
			case <-imp.quit:
			}
		}
		imp.verdict(p.id, nfAccept)
	}
}

func (imp *impairment) verdict(id uint32, verdict uint32) {
	hdr := append(be32(verdict), be32(id)...)
	msg := nfqMessage(nfqMsgVerdict, unix.NLM_F_REQUEST, 0, nlattr(nfqaVerdictHdr, hdr))
	_ = unix.Sendto(imp.fd, msg, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK})
}

// stop removes the rule, lets the held packets go and closes the socket.
func (imp *impairment) stop() error {
	imp.once.Do(func() {
		var errs []error
		if imp.unrule != nil {
			errs = append(errs, imp.unrule())
		}
		close(imp.quit)
		imp.wg.Wait()
		errs = append(errs, unix.Close(imp.fd))
		imp.err = errors.Join(errs...)
	})
	return imp.err
}

// nfqMessage is a netlink message of the queue subsystem for nfqQueue.
func nfqMessage(typ, flags uint16, seq uint32, attrs ...[]byte) []byte {
	body := []byte{unix.AF_UNSPEC, unix.NFNETLINK_V0, 0, 0}
	binary.BigEndian.PutUint16(body[2:], nfqQueue)
	for _, a := range attrs {
		body = append(body, a...)
	}
	msg := make([]byte, nlmsgHeaderLength, nlmsgHeaderLength+len(body))
	binary.NativeEndian.PutUint32(msg[0:], uint32(nlmsgHeaderLength+len(body)))
	binary.NativeEndian.PutUint16(msg[4:], unix.NFNL_SUBSYS_QUEUE<<8|typ)
	binary.NativeEndian.PutUint16(msg[6:], flags)
	binary.NativeEndian.PutUint32(msg[8:], seq)
	return append(msg, body...)
}

// nlattr is a netlink attribute, padded to 4 bytes.
func nlattr(typ uint16, payload []byte) []byte {
	a := make([]byte, 4, 4+len(payload)+3)
	binary.NativeEndian.PutUint16(a[0:], uint16(4+len(payload)))
	binary.NativeEndian.PutUint16(a[2:], typ)
	a = append(a, payload...)
	for len(a)%4 != 0 {
		a = append(a, 0)
	}
	return a
}

func be32(v uint32) []byte { return binary.BigEndian.AppendUint32(nil, v) }

// splitMessages splits a netlink datagram into its messages.
func splitMessages(b []byte) [][]byte {
	var out [][]byte
	for len(b) >= nlmsgHeaderLength {
		n := int(binary.NativeEndian.Uint32(b))
		if n < nlmsgHeaderLength || n > len(b) {
			break
		}
		out = append(out, b[:n])
		b = b[min(len(b), (n+3)&^3):]
	}
	return out
}

// packetID returns the id of a queued packet message.
func packetID(m []byte) (uint32, bool) {
	if binary.NativeEndian.Uint16(m[4:]) != unix.NFNL_SUBSYS_QUEUE<<8|nfqMsgPacket {
		return 0, false
	}
	attrs := m[nlmsgHeaderLength+4:]
	for len(attrs) >= 4 {
		n := int(binary.NativeEndian.Uint16(attrs))
		typ := binary.NativeEndian.Uint16(attrs[2:]) & 0x3fff
		if n < 4 || n > len(attrs) {
			return 0, false
		}
		if typ == nfqaPacketHdr && n >= 8 {
			return binary.BigEndian.Uint32(attrs[4:]), true
		}
		attrs = attrs[min(len(attrs), (n+3)&^3):]
	}
	return 0, false
}
