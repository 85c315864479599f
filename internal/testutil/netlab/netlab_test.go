package netlab_test

import (
	"net"
	"testing"
	"time"

	"github.com/nodeagent/nodeagent/internal/testutil/netlab"
)

func newLab(t *testing.T, nodes ...string) *netlab.Lab {
	return netlab.NewForTest(t, nodes, "iptables", "tc")
}

// udpEcho serves UDP echo on node's lab address and returns its address.
func udpEcho(t *testing.T, lab *netlab.Lab, node string) string {
	t.Helper()
	var pc net.PacketConn
	err := lab.Do(node, func() error {
		var err error
		pc, err = net.ListenPacket("udp", lab.Addr(node)+":0")
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	go func() {
		buf := make([]byte, 1500)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			pc.WriteTo(buf[:n], from)
		}
	}()
	return pc.LocalAddr().String()
}

// probe sends n datagrams from node to addr, one at a time, and returns
// the round trips of those answered within 400ms.
func probe(t *testing.T, lab *netlab.Lab, node, addr string, n int) []time.Duration {
	t.Helper()
	var conn net.Conn
	if err := lab.Do(node, func() error {
		var err error
		conn, err = net.Dial("udp", addr)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	var rtts []time.Duration
	buf := make([]byte, 64)
	for i := range n {
		start := time.Now()
		if _, err := conn.Write([]byte{byte(i), byte(i >> 8)}); err != nil {
			t.Fatal(err)
		}
		conn.SetReadDeadline(start.Add(400 * time.Millisecond))
		for {
			k, err := conn.Read(buf)
			if err != nil {
				break // lost
			}
			if k == 2 && buf[0] == byte(i) && buf[1] == byte(i>>8) {
				rtts = append(rtts, time.Since(start))
				break
			}
		}
	}
	return rtts
}

func TestCutHealAndBlock(t *testing.T) {
	lab := newLab(t, "a", "b")
	echo := udpEcho(t, lab, "b")
	if got := len(probe(t, lab, "a", echo, 5)); got != 5 {
		t.Fatalf("connected: %d of 5 answered", got)
	}
	if err := lab.Cut("b"); err != nil {
		t.Fatal(err)
	}
	if got := len(probe(t, lab, "a", echo, 2)); got != 0 {
		t.Fatalf("cut: %d of 2 answered", got)
	}
	if err := lab.Heal("b"); err != nil {
		t.Fatal(err)
	}
	if got := len(probe(t, lab, "a", echo, 5)); got != 5 {
		t.Fatalf("healed: %d of 5 answered", got)
	}

	// b drops what comes from a: a's datagrams never arrive, while b's
	// still reach a.
	if err := lab.Block("b", "a"); err != nil {
		t.Fatal(err)
	}
	if got := len(probe(t, lab, "a", echo, 2)); got != 0 {
		t.Fatalf("blocked: %d of 2 answered", got)
	}
	echoA := udpEcho(t, lab, "a")
	var conn net.Conn
	if err := lab.Do("b", func() error {
		var err error
		conn, err = net.Dial("udp", echoA)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	received := make(chan struct{})
	var pc net.PacketConn
	if err := lab.Do("a", func() error {
		var err error
		pc, err = net.ListenPacket("udp", lab.Addr("a")+":0")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	go func() {
		buf := make([]byte, 16)
		if _, _, err := pc.ReadFrom(buf); err == nil {
			close(received)
		}
	}()
	if err := lab.Do("b", func() error {
		c, err := net.Dial("udp", pc.LocalAddr().String())
		if err != nil {
			return err
		}
		defer c.Close()
		_, err = c.Write([]byte("x"))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-received:
	case <-time.After(2 * time.Second):
		t.Fatal("blocked one way: b's datagram did not reach a")
	}
	if err := lab.Unblock("b", "a"); err != nil {
		t.Fatal(err)
	}
	if got := len(probe(t, lab, "a", echo, 5)); got != 5 {
		t.Fatalf("unblocked: %d of 5 answered", got)
	}
}

func TestImpairDelaysAndLoses(t *testing.T) {
	lab := newLab(t, "a", "b")
	echo := udpEcho(t, lab, "b")
	if err := lab.Impair("a", 0.1, 100*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	const n = 100
	rtts := probe(t, lab, "a", echo, n)
	lost := n - len(rtts)
	for _, d := range rtts {
		if d < 100*time.Millisecond {
			t.Fatalf("a round trip of %s through a 100ms delay", d)
		}
	}
	// 10% of 100: 10 expected, sd 3.
	if lost < 2 || lost > 25 {
		t.Errorf("%d of %d lost; want about 10%%", lost, n)
	}
	if err := lab.Unimpair("a"); err != nil {
		t.Fatal(err)
	}
	// With 10% loss, 60 answers in a row would happen once in 500.
	if got := len(probe(t, lab, "a", echo, 60)); got != 60 {
		t.Fatalf("after Unimpair: %d of 60 answered", got)
	}
}
