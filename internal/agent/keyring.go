package agent

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nodeagent/nodeagent/internal/api"
	"github.com/nodeagent/nodeagent/internal/clustertls"
	"github.com/nodeagent/nodeagent/internal/errs"
	"github.com/nodeagent/nodeagent/internal/gossip"
)

// The gossip keyring and the cluster certificates that follow it: keys
// rotate cluster-wide without downtime, as with Consul's keyring. A
// cluster-wide operation asks every live member over the cluster API
// (mutual TLS) and reports each one's answer.

var _ api.KeyringService = (*Agent)(nil)

// keyringFile is the keyring's file in data_dir.
const keyringFile = "gossip-keyring.json"

// keyringCallTimeout bounds one member's answer.
const keyringCallTimeout = 10 * time.Second

// keyringFanOut bounds the members asked at once.
const keyringFanOut = 16

// agentKeyring is the agent's keyring and the lock that keeps the cluster
// identity in step with it.
type agentKeyring struct {
	mu   sync.Mutex
	ring *gossip.Keyring
}

var fingerprintRE = regexp.MustCompile(`^[0-9a-f]{16}$`)

// openIdentity loads the keyring (reconciled with gossip.key_file's key)
// and starts the cluster identity from it.
func (a *Agent) openIdentity(ctx context.Context, fileKey []byte) error {
	ring, err := gossip.LoadKeyring(filepath.Join(a.cfg.DataDir, keyringFile), fileKey, a.log)
	if err != nil {
		return fmt.Errorf("gossip.key_file: %w", err)
	}
	a.keys.ring = ring
	a.id, err = clustertls.New(clustertls.Config{
		Node: a.cfg.Node, Lifetime: a.opts.ClusterCertLifetime, Logger: a.log,
	}, identityKeys(ring))
	if err != nil {
		return err
	}
	return a.id.Open(ctx)
}

func identityKeys(ring *gossip.Keyring) []clustertls.Key {
	var out []clustertls.Key
	for _, k := range ring.Secrets() {
		out = append(out, clustertls.Key{Name: gossip.Fingerprint(k), Secret: k})
	}
	return out
}

// KeyringApply implements api.KeyringService: this node's part of an
// operation. The cluster identity follows the keyring at once: a key
// installed is trusted for certificates, the key used issues this node's
// certificate, a key removed is no longer trusted.
func (a *Agent) KeyringApply(ctx context.Context, op api.KeyringOp) (api.NodeKeyring, error) {
	a.keys.mu.Lock()
	defer a.keys.mu.Unlock()
	ring := a.keys.ring
	var err error
	switch op.Op {
	case api.KeyringOpList:
	case api.KeyringOpInstall:
		var key []byte
		if key, err = gossip.ParseKey(op.Key); err != nil {
			return api.NodeKeyring{}, errs.Invalid("key: %w", err)
		}
		err = ring.Install(key)
	case api.KeyringOpUse:
		err = ring.Use(op.Fingerprint)
	case api.KeyringOpRemove:
		err = ring.Remove(op.Fingerprint)
	default:
		return api.NodeKeyring{}, errs.Invalid("unknown keyring operation %q", op.Op)
	}
	switch {
	case errors.Is(err, gossip.ErrKeyNotInstalled), errors.Is(err, gossip.ErrPrimaryKey):
		return api.NodeKeyring{}, errs.Conflict("%w", err)
	case err != nil:
		return api.NodeKeyring{}, err
	}
	if op.Op != api.KeyringOpList {
		if err := a.id.SetKeys(identityKeys(ring)); err != nil {
			return api.NodeKeyring{}, fmt.Errorf("cluster certificate: %w", err)
		}
		a.log.Info("gossip keyring changed", "op", op.Op, "keys", len(ring.Keys()), "primary", ring.Keys()[0].Fingerprint)
	}
	return a.nodeKeyring(), nil
}

func (a *Agent) nodeKeyring() api.NodeKeyring {
	leaf := a.id.Leaf()
	return api.NodeKeyring{
		Node: a.cfg.Node, OK: true, Keys: a.keys.ring.Keys(),
		Certificate: &api.ClusterCertificate{NotAfter: leaf.NotAfter, Issuer: leaf.Issuer},
	}
}

// KeyringList implements api.KeyringService.
func (a *Agent) KeyringList(ctx context.Context) (api.KeyringReport, error) {
	return a.keyringAll(ctx, api.KeyringOp{Op: api.KeyringOpList}), nil
}

// KeyringInstall implements api.KeyringService.
func (a *Agent) KeyringInstall(ctx context.Context, key []byte) (api.KeyringReport, error) {
	op := api.KeyringOp{Op: api.KeyringOpInstall, Key: base64.StdEncoding.EncodeToString(key)}
	rep := a.keyringAll(ctx, op)
	rep.Fingerprint = gossip.Fingerprint(key)
	return rep, nil
}

// KeyringUse implements api.KeyringService: refused unless every live
// member has the key, so that nobody encrypts with a key a member cannot
// read.
func (a *Agent) KeyringUse(ctx context.Context, fp string) (api.KeyringReport, error) {
	list, err := a.keyringPrecheck(ctx, api.KeyringOpUse, fp)
	if err != nil {
		return list, err
	}
	var missing []string
	for _, n := range list.Nodes {
		switch {
		case !n.OK:
			missing = append(missing, n.Node+" (no answer: "+n.Error+")")
		case !slices.ContainsFunc(n.Keys, func(k gossip.KeyInfo) bool { return k.Fingerprint == fp }):
			missing = append(missing, n.Node)
		}
	}
	if len(missing) > 0 {
		return list, errs.Conflict("key %s is not installed on every live member: missing on %s; install it first",
			fp, strings.Join(missing, ", "))
	}
	return a.keyringAll(ctx, api.KeyringOp{Op: api.KeyringOpUse, Fingerprint: fp}), nil
}

// KeyringRemove implements api.KeyringService: refused while the key is
// the primary key of a live member.
func (a *Agent) KeyringRemove(ctx context.Context, fp string) (api.KeyringReport, error) {
	list, err := a.keyringPrecheck(ctx, api.KeyringOpRemove, fp)
	if err != nil {
		return list, err
	}
	var primary []string
	for _, n := range list.Nodes {
		if slices.Contains(n.Keys, gossip.KeyInfo{Fingerprint: fp, Primary: true}) {
			primary = append(primary, n.Node)
		}
	}
	if len(primary) > 0 {
		return list, errs.Conflict("key %s is the primary key of %s: use another key first",
			fp, strings.Join(primary, ", "))
	}
	return a.keyringAll(ctx, api.KeyringOp{Op: api.KeyringOpRemove, Fingerprint: fp}), nil
}

// keyringPrecheck checks the fingerprint and lists the cluster's keys: a
// key no live member has is not found.
func (a *Agent) keyringPrecheck(ctx context.Context, op, fp string) (api.KeyringReport, error) {
	if !fingerprintRE.MatchString(fp) {
		return api.KeyringReport{}, errs.Invalid("fingerprint %q: want 16 hex digits (see `nodeagent keyring list`)", fp)
	}
	list := a.keyringAll(ctx, api.KeyringOp{Op: api.KeyringOpList})
	list.Op, list.Fingerprint = op, fp
	if !slices.ContainsFunc(list.Keys, func(k api.KeyUsage) bool { return k.Fingerprint == fp }) {
		return list, errs.NotFound("key %s is not installed on any live member", fp)
	}
	return list, nil
}

// keyringAll applies op on every live member, this node included, and
// reports each one's answer.
func (a *Agent) keyringAll(ctx context.Context, op api.KeyringOp) api.KeyringReport {
	rep := api.KeyringReport{Op: op.Op, Fingerprint: op.Fingerprint}
	var live []gossip.Member
	for _, m := range a.gossip.Members() {
		if m.State == gossip.StateAlive || m.Name == a.cfg.Node {
			live = append(live, m)
		} else {
			rep.Skipped = append(rep.Skipped, fmt.Sprintf("%s (%s)", m.Name, m.State))
		}
	}
	rep.Nodes = make([]api.NodeKeyring, len(live))
	sem := make(chan struct{}, keyringFanOut)
	var wg sync.WaitGroup
	for i, m := range live {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			rep.Nodes[i] = a.askKeyring(ctx, m, op)
		}()
	}
	wg.Wait()
	rep.Members = len(live)
	rep.Keys = keyUsage(rep.Nodes)
	for _, n := range rep.Nodes {
		if !n.OK {
			rep.Failed++
		}
	}
	return rep
}

// keyUsage counts, for every key seen, the members that hold it and the
// members that encrypt with it.
func keyUsage(nodes []api.NodeKeyring) []api.KeyUsage {
	var out []api.KeyUsage
	for _, n := range nodes {
		for _, k := range n.Keys {
			i := slices.IndexFunc(out, func(u api.KeyUsage) bool { return u.Fingerprint == k.Fingerprint })
			if i < 0 {
				out = append(out, api.KeyUsage{Fingerprint: k.Fingerprint})
				i = len(out) - 1
			}
			out[i].Installed++
			if k.Primary {
				out[i].Primary++
			}
		}
	}
	return out
}

// askKeyring applies op on member m: here directly, elsewhere through its
// cluster API. A failure is the member's answer, not an error.
func (a *Agent) askKeyring(ctx context.Context, m gossip.Member, op api.KeyringOp) api.NodeKeyring {
	var nk api.NodeKeyring
	var err error
	if m.Name == a.cfg.Node {
		nk, err = a.KeyringApply(ctx, op)
	} else {
		nk, err = a.peerKeyring(ctx, m, op)
	}
	if err != nil {
		return api.NodeKeyring{Node: m.Name, Error: err.Error()}
	}
	nk.Node, nk.OK = m.Name, true
	return nk
}

// peerKeyring sends op to another member's POST /cluster/v1/keyring.
func (a *Agent) peerKeyring(ctx context.Context, m gossip.Member, op api.KeyringOp) (api.NodeKeyring, error) {
	if m.Meta.API == "" {
		return api.NodeKeyring{}, errors.New("no cluster API address in its gossip metadata yet")
	}
	ctx, cancel := context.WithTimeout(ctx, keyringCallTimeout)
	defer cancel()
	body, err := json.Marshal(op)
	if err != nil {
		return api.NodeKeyring{}, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "https://"+m.Meta.API+"/cluster/v1/keyring", bytes.NewReader(body))
	if err != nil {
		return api.NodeKeyring{}, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := a.peers.Do(req)
	if err != nil {
		return api.NodeKeyring{}, fmt.Errorf("ask %s: %w", m.Meta.API, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return api.NodeKeyring{}, fmt.Errorf("ask %s: %w", m.Meta.API, err)
	}
	if resp.StatusCode != http.StatusOK {
		var p api.Problem
		if json.Unmarshal(data, &p) != nil || p.Detail == "" {
			p.Detail = resp.Status
		}
		return api.NodeKeyring{}, errors.New(p.Detail)
	}
	var nk api.NodeKeyring
	if err := json.Unmarshal(data, &nk); err != nil {
		return api.NodeKeyring{}, fmt.Errorf("ask %s: decode answer: %w", m.Meta.API, err)
	}
	return nk, nil
}
