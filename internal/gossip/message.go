package gossip

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"strconv"
	"sync"

	"github.com/hashicorp/memberlist"
)

// maxMessageSize bounds a user message so it fits in one encrypted UDP
// gossip packet (memberlist's UDPBufferSize is 1400 bytes).
const maxMessageSize = 1024

// Message types: the first byte of every user message.
const (
	msgRegister byte = 'r'
	msgLeave    byte = 'l'
)

type registerMsg struct {
	Key string `json:"k"`
	Register
}

// leaveMsg is a node's intent to leave. Version is its metadata version
// when it left: a receiver that holds a newer version of the node has seen
// it come back since, and ignores the intent.
type leaveMsg struct {
	Node    string `json:"n"`
	Clock   uint64 `json:"c"`
	Version int64  `json:"v,omitempty"`
}

func encodeRegisterMsg(key string, r Register) ([]byte, error) {
	b, err := encodeMsg(msgRegister, registerMsg{Key: key, Register: r})
	if err != nil {
		return nil, fmt.Errorf("gossip: register %s: %w", key, err)
	}
	return b, nil
}

func encodeMsg(typ byte, v any) ([]byte, error) {
	body, err := marshalJSON(v)
	if err != nil {
		return nil, err
	}
	b := append([]byte{typ}, body...)
	if len(b) > maxMessageSize {
		return nil, fmt.Errorf("%w: message is %d bytes, max %d", ErrTooLarge, len(b), maxMessageSize)
	}
	return b, nil
}

// handleMsg applies a user message and re-broadcasts it when it was news:
// memberlist only retransmits from the originator. msg is owned by the call.
func (g *Gossip) handleMsg(msg []byte) {
	if len(msg) == 0 {
		return
	}
	switch msg[0] {
	case msgRegister:
		var m registerMsg
		if err := json.Unmarshal(msg[1:], &m); err != nil || validKey(m.Key) != nil || !m.valid() {
			g.log.Warn("gossip: dropped bad register message", "err", err)
			return
		}
		if g.applyRegister(m.Key, m.Register) {
			g.queue.QueueBroadcast(newBroadcast(registerName(m.Key), msg, nil))
		}
	case msgLeave:
		var m leaveMsg
		if err := json.Unmarshal(msg[1:], &m); err != nil || m.Node == "" {
			g.log.Warn("gossip: dropped bad leave message", "err", err)
			return
		}
		if g.leaveIntent(m) {
			g.queue.QueueBroadcast(newBroadcast(leaveName(m.Node), msg, nil))
		}
	case msgForget:
		g.handleForget(msg)
	case msgMeta:
		var m metaMsg
		if err := json.Unmarshal(msg[1:], &m); err != nil || m.Node == "" {
			g.log.Warn("gossip: dropped bad metadata message", "err", err)
			return
		}
		g.directMeta(m)
	default:
		g.log.Warn("gossip: dropped message of unknown type", "type", msg[0])
	}
}

// queueLeaveIntent broadcasts this node's departure; the returned channel
// closes once the broadcast has been sent its full number of times.
func (g *Gossip) queueLeaveIntent() <-chan struct{} {
	g.mu.Lock()
	g.clock++
	g.gen++ // the state file keeps the clock the intent used
	m := leaveMsg{Node: g.cfg.Name, Clock: g.clock, Version: g.metaVersion}
	g.mu.Unlock()
	done := make(chan struct{})
	msg, err := encodeMsg(msgLeave, m)
	if err != nil { // a node name too long for a packet
		g.log.Warn("gossip: leave intent", "err", err)
		close(done)
		return done
	}
	g.queue.QueueBroadcast(newBroadcast(leaveName(m.Node), msg, done))
	return done
}

// fanOut sends msg at once to every live member, each over its own
// encrypted memberlist stream, in the background. Gossip alone is too slow
// for a register change while many nodes change their metadata (after every
// toggle or publish): memberlist gives user broadcasts only the room its own
// messages leave in a packet, and its packet handler serves every queued
// alive message before a user message. A stream is handled on its own
// goroutine as it arrives. The gossip queue still carries msg to any member
// a stream missed, and push/pull repairs the rest.
func (g *Gossip) fanOut(msg []byte) {
	ml := g.ml.Load()
	if ml == nil || g.noFanOut.Load() {
		return
	}
	g.mu.Lock()
	if g.closed {
		g.mu.Unlock()
		return
	}
	g.wg.Add(1)
	g.mu.Unlock()
	go func() {
		defer g.wg.Done()
		sem := make(chan struct{}, fanOutStreams)
		var wg sync.WaitGroup
		for _, n := range g.peers() {
			sem <- struct{}{}
			wg.Add(1)
			go func() {
				defer func() { <-sem; wg.Done() }()
				if err := ml.SendReliable(n, msg); err != nil {
					g.log.Debug("gossip: direct send", "node", n.Name, "err", oneLine(err.Error()))
				}
			}()
		}
		wg.Wait()
	}()
}

// peers returns the live members other than this node, as memberlist
// nodes to send to. (The nodes memberlist's own Members returns are
// updated in place under its lock: reading them later races.)
func (g *Gossip) peers() []*memberlist.Node {
	var out []*memberlist.Node
	for _, m := range g.Members() {
		if m.Name == g.cfg.Name || m.State != StateAlive {
			continue
		}
		host, port, err := net.SplitHostPort(m.Addr)
		ip := net.ParseIP(host)
		p, perr := strconv.ParseUint(port, 10, 16)
		if err != nil || ip == nil || perr != nil {
			continue
		}
		out = append(out, &memberlist.Node{Name: m.Name, Addr: ip, Port: uint16(p)})
	}
	return out
}

// fanOutStreams bounds the streams one fanOut has open at a time.
const fanOutStreams = 16

func registerName(key string) string { return "r/" + key }
func leaveName(node string) string   { return "l/" + node }

// broadcast is a named memberlist broadcast: a newer one with the same name
// replaces it in the queue.
type broadcast struct {
	name string
	msg  []byte
	done chan struct{}
}

var _ memberlist.NamedBroadcast = (*broadcast)(nil)

func newBroadcast(name string, msg []byte, done chan struct{}) *broadcast {
	return &broadcast{name: name, msg: msg, done: done}
}

func (b *broadcast) Invalidates(memberlist.Broadcast) bool { return false }
func (b *broadcast) Name() string                          { return b.name }
func (b *broadcast) Message() []byte                       { return b.msg }

func (b *broadcast) Finished() {
	if b.done != nil {
		close(b.done)
	}
}

// marshalJSON is json.Marshal without HTML escaping. Register values are
// carried as raw JSON, and json.Marshal would rewrite a received "&", "<"
// or ">" in them as \u0026...: a relayed message, a push/pull state or a
// state file would then hold other bytes than the writer's value.
func marshalJSON(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(b.Bytes(), []byte{'\n'}), nil
}
