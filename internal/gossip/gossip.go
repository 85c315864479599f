package gossip

import (
	"context"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"math"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"
)

var (
	// ErrNotOpen is returned by calls that need the cluster before Open.
	ErrNotOpen = errors.New("gossip: not open")
	// ErrClosed is returned after Close.
	ErrClosed = errors.New("gossip: closed")
	// ErrTooLarge is returned when metadata or a register does not fit in
	// a gossip message.
	ErrTooLarge = errors.New("gossip: too large")
)

// Gossip is one node's view of the cluster.
type Gossip struct {
	cfg    Config
	timing Timing
	log    *slog.Logger

	ml      atomic.Pointer[memberlist.Memberlist]
	queue   *memberlist.TransmitLimitedQueue // user broadcasts: registers, leave and forget intents
	mlQueue *memberlist.TransmitLimitedQueue // memberlist's own, once pinned
	addr    string

	noFanOut atomic.Bool // tests: Set does not send directly

	mu          sync.Mutex
	opened      bool
	closed      bool
	meta        NodeMeta
	metaBytes   []byte
	metaVersion int64               // version of meta (wireMeta)
	clock       uint64              // Lamport clock: highest clock seen or issued
	regs        map[string]Register // cluster-wide registers
	gen         uint64              // bumped on every register change
	members     map[string]*memberRec
	memberGen   uint64               // bumped on every membership change worth persisting
	leaves      map[string]uint64    // node -> clock of the last leave intent seen
	forgets     map[string]forgetMsg // node -> forget intent (forget.go)
	subs        map[chan struct{}]struct{}
	repairs     map[string]repairTask // stale views to repair, by member
	repaired    map[string]time.Time  // member -> last repair started
	repairCh    chan struct{}
	returned    map[string]string // members back alive since the last exchange -> addr
	exchanged   time.Time         // last state exchange with a member that came back
	heard       directWindow      // direct metadata messages received lately (metasend.go)
	// registerHeard is when a register from another node last changed one
	// here (metasend.go).
	registerHeard time.Time

	updateMu  sync.Mutex // serialises memberlist UpdateNode calls
	persistMu sync.Mutex // serialises state file writes
	persisted persistMark
	persistCh chan struct{}

	cancel    context.CancelFunc
	wg        sync.WaitGroup
	closeOnce sync.Once
	closeErr  error
}

// New returns a Gossip for cfg. It does no I/O; Open starts it.
func New(cfg Config) *Gossip {
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if cfg.JoinBackoff <= 0 {
		cfg.JoinBackoff = defaultJoinBackoff
	}
	g := &Gossip{
		cfg:       cfg,
		timing:    cfg.Timing.withDefaults(),
		log:       logger,
		meta:      cfg.Meta,
		regs:      make(map[string]Register),
		members:   make(map[string]*memberRec),
		leaves:    make(map[string]uint64),
		forgets:   make(map[string]forgetMsg),
		subs:      make(map[chan struct{}]struct{}),
		repairs:   make(map[string]repairTask),
		repaired:  make(map[string]time.Time),
		repairCh:  make(chan struct{}, 1),
		returned:  make(map[string]string),
		persistCh: make(chan struct{}, 1),
	}
	g.queue = &memberlist.TransmitLimitedQueue{
		NumNodes:       g.numNodes,
		RetransmitMult: g.timing.RetransmitMult,
	}
	if !cfg.StockQueues {
		pinQueue(g.queue) // the same queue bug as memberlist's own (queuepin.go)
	}
	return g
}

// Open loads the state file, creates the memberlist (TCP and UDP listeners)
// and starts joining Config.Join in the background.
func (g *Gossip) Open(ctx context.Context) error {
	mlCfg, st, err := g.prepare(ctx)
	if err != nil {
		return err
	}
	if err := g.claimOpen(st); err != nil {
		return err
	}
	ml, err := memberlist.Create(mlCfg)
	if err != nil {
		g.mu.Lock()
		g.opened = false
		g.mu.Unlock()
		addr := net.JoinHostPort(mlCfg.BindAddr, strconv.Itoa(mlCfg.BindPort))
		return fmt.Errorf("gossip: listen on %s: %w", addr, err)
	}
	if g.cfg.StockQueues {
		g.log.Warn("gossip: memberlist's broadcast queues not pinned: broadcasts may be lost")
	} else if g.mlQueue, err = pinMemberlist(ml); err != nil {
		g.log.Warn("gossip: broadcasts may be lost (memberlist queue bug, see queuepin.go)", "err", err)
	}
	if err := g.start(ml); err != nil {
		return err
	}
	g.log.Info("gossip started", "addr", g.Addr(), "registers", len(st.Registers), "known_members", len(st.Members))
	return nil
}

// prepare checks the config and reads the state file.
func (g *Gossip) prepare(ctx context.Context) (*memberlist.Config, stateFile, error) {
	if err := g.cfg.validate(); err != nil {
		return nil, stateFile{}, err
	}
	if _, err := encodeMeta(g.Meta(), math.MaxInt64); err != nil {
		return nil, stateFile{}, err
	}
	bind, err := parseBind(g.cfg.Bind)
	if err != nil {
		return nil, stateFile{}, err
	}
	adv, err := resolveAdvertise(ctx, g.cfg.Advertise)
	if err != nil {
		return nil, stateFile{}, err
	}
	keyring, err := g.memberlistKeyring()
	if err != nil {
		return nil, stateFile{}, err
	}
	st, err := loadState(g.cfg.StateFile)
	if err != nil {
		return nil, stateFile{}, err
	}
	return g.memberlistConfig(bind, adv, keyring), st, nil
}

// claimOpen marks g open and installs the persisted registers and members.
func (g *Gossip) claimOpen(st stateFile) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	switch {
	case g.closed:
		return ErrClosed
	case g.opened:
		return errors.New("gossip: already open")
	}
	metaBytes, err := encodeMeta(g.meta, g.nextMetaVersionLocked())
	if err != nil {
		return err
	}
	g.opened, g.metaBytes = true, metaBytes
	g.clock = st.Clock
	for k, r := range st.Registers {
		g.regs[k] = r
		g.clock = max(g.clock, r.Clock)
	}
	g.mergeForgetsLocked(st.Forgotten)
	g.restoreLocked(st.Members, time.Now())
	return nil
}

// start records the running memberlist and starts the background loops.
// memberlist is never called while holding mu: its event callbacks take mu
// under memberlist's own lock.
func (g *Gossip) start(ml *memberlist.Memberlist) error {
	addr := ml.LocalNode().Address()
	g.mu.Lock()
	if g.closed { // Close ran while memberlist was starting
		g.mu.Unlock()
		_ = ml.Shutdown()
		return ErrClosed
	}
	defer g.mu.Unlock()
	g.ml.Store(ml)
	g.addr = addr
	ctx, cancel := context.WithCancel(context.Background())
	g.cancel = cancel
	g.wg.Add(3)
	go func() { defer g.wg.Done(); g.runJoin(ctx) }()
	go func() { defer g.wg.Done(); g.runPersist(ctx) }()
	go func() { defer g.wg.Done(); g.runRepair(ctx) }()
	return nil
}

func (g *Gossip) memberlistConfig(bind, adv hostPort, keyring *memberlist.Keyring) *memberlist.Config {
	t := g.timing
	c := memberlist.DefaultLANConfig()
	c.Name = g.cfg.Name
	c.BindAddr, c.BindPort = bind.ip, bind.port
	c.AdvertiseAddr, c.AdvertisePort = adv.ip, adv.port
	if adv.port == 0 {
		c.AdvertisePort = bind.port
	}
	c.Keyring = keyring
	c.GossipVerifyIncoming = true
	c.GossipVerifyOutgoing = true
	c.ProbeInterval = t.ProbeInterval
	c.ProbeTimeout = t.ProbeTimeout
	c.GossipInterval = t.GossipInterval
	c.PushPullInterval = t.PushPullInterval
	c.SuspicionMult = t.SuspicionMult
	c.TCPTimeout = t.TCPTimeout
	c.GossipToTheDeadTime = t.GossipToTheDead
	c.DeadNodeReclaimTime = t.DeadNodeReclaim
	c.RetransmitMult = t.RetransmitMult
	c.GossipNodes = t.GossipNodes
	c.Delegate = delegate{g}
	c.Events = events{g}
	c.Alive = delegate{g}
	c.Logger = log.New(logWriter{g.log.With("subsystem", "memberlist")}, "", 0)
	return c
}

// Close leaves the cluster (bounded by Timing.LeaveTimeout), shuts the
// memberlist down, waits for the background goroutines and writes the state
// file a last time. It is safe to call more than once.
func (g *Gossip) Close() error {
	g.closeOnce.Do(func() { g.closeErr = g.shutdown(true) })
	return g.closeErr
}

func (g *Gossip) shutdown(leave bool) error {
	g.mu.Lock()
	g.closed = true
	cancel := g.cancel
	g.mu.Unlock()
	ml := g.ml.Load()
	if ml == nil {
		return nil
	}
	cancel()
	if leave {
		g.leave(ml)
	}
	var errs []error
	if err := ml.Shutdown(); err != nil {
		errs = append(errs, fmt.Errorf("gossip: shutdown: %w", err))
	}
	g.wg.Wait()
	// Always written at the end: the leave intent moved the clock, and the
	// members' last-seen times are now.
	if err := g.persist(true); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// leave announces the departure: a leave intent (so others record "left",
// not "dead") and memberlist's own leave message.
func (g *Gossip) leave(ml *memberlist.Memberlist) {
	deadline := time.Now().Add(g.timing.LeaveTimeout)
	others := ml.NumMembers() > 1
	done := g.queueLeaveIntent()
	if err := ml.Leave(remaining(deadline)); err != nil {
		g.log.Warn("gossip leave", "err", err)
	}
	if others {
		select {
		case <-done:
		case <-time.After(remaining(deadline)):
		}
	}
}

// remaining is the time left until deadline, at least 1ms: memberlist reads
// a zero timeout as "wait forever".
func remaining(deadline time.Time) time.Duration {
	return max(time.Until(deadline), time.Millisecond)
}

// Addr returns the gossip address others reach this node on (the advertised
// IP and the bound port), or "" before Open.
func (g *Gossip) Addr() string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.addr
}

// LocalName returns this node's name.
func (g *Gossip) LocalName() string { return g.cfg.Name }

// Join contacts the given addresses once, with a full state exchange, and
// returns how many answered; the error is set when none did (e.g. wrong
// key, nobody listening).
func (g *Gossip) Join(addrs ...string) (int, error) {
	ml := g.ml.Load()
	if ml == nil {
		return 0, ErrNotOpen
	}
	if g.isClosed() {
		return 0, ErrClosed
	}
	n, err := ml.Join(addrs)
	if err != nil {
		return n, fmt.Errorf("gossip: join %s: %s", strings.Join(addrs, ","), oneLine(err.Error()))
	}
	return n, nil
}

func (g *Gossip) isClosed() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.closed
}

func (g *Gossip) numNodes() int {
	if ml := g.ml.Load(); ml != nil {
		return ml.NumMembers()
	}
	return 1
}

// oneLine folds a multi-line error (memberlist uses go-multierror) into one
// line for logs.
func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}
