package mirror

import (
	"context"
	"encoding/binary"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// A web node tells its peers what it holds of a revision through
//
//	GET /have/{id}?epoch=E&from=N&wait=D
//
// answered with a haveWire document: complete when the node serves id (it
// holds all of its content); otherwise, for the build of id in progress,
// its epoch and the objects stored since position from of that build (the
// first 8 bytes of each hash, big-endian, packed). An asker keeps the epoch
// and the next position, and asks again; a new epoch means a new build,
// whose list starts again at 0. With nothing new, the answer waits up to
// wait (at most haveMaxWait) for news. 404 when the node holds nothing of
// id.
type haveWire struct {
	Complete bool   `json:"complete,omitempty"`
	Epoch    uint64 `json:"epoch,omitempty"`
	From     int    `json:"from"`
	Objects  []byte `json:"objects,omitempty"` // base64 in JSON
}

func (p *PeerServer) serveHave(w http.ResponseWriter, r *http.Request) {
	if p.cfg.Concurrency <= 0 {
		serveProblem(w, http.StatusNotFound, "this node serves no content to peers", nil)
		return
	}
	id := r.PathValue("id")
	q := r.URL.Query()
	epoch, _ := strconv.ParseUint(q.Get("epoch"), 10, 64)
	from, _ := strconv.Atoi(q.Get("from"))
	wait, _ := time.ParseDuration(q.Get("wait"))
	deadline := time.NewTimer(min(max(wait, 0), haveMaxWait))
	defer deadline.Stop()
	woke := false
	for {
		ans, grew, ok := p.rels.have(id, epoch, from)
		if !ok {
			serveProblem(w, http.StatusNotFound, fmt.Sprintf("revision %s is not held here", id), nil)
			return
		}
		if grew == nil && woke {
			// Let the rest of a burst of stored objects go out in this
			// answer rather than in one answer each.
			select {
			case <-time.After(haveCoalesce):
			case <-r.Context().Done():
				return
			}
			ans, _, _ = p.rels.have(id, epoch, from)
		}
		if grew == nil {
			serveJSON(w, r, encodeHave(ans))
			return
		}
		select {
		case <-grew:
			woke = true
		case <-deadline.C:
			serveJSON(w, r, encodeHave(ans))
			return
		case <-r.Context().Done():
			return
		}
	}
}

func encodeHave(ans haveAnswer) haveWire {
	hw := haveWire{Complete: ans.Complete, Epoch: ans.Epoch, From: ans.From}
	if len(ans.Objects) > 0 {
		hw.Objects = make([]byte, 0, 8*len(ans.Objects))
		for _, p := range ans.Objects {
			hw.Objects = binary.BigEndian.AppendUint64(hw.Objects, p)
		}
	}
	return hw
}

// maxHaveBytes bounds a have answer: the prefixes of a very large tree.
const maxHaveBytes = 64 << 20

// have asks the node what it holds of revision id since position from of
// build epoch, waiting up to wait for news.
func (c *Client) have(ctx context.Context, id string, epoch uint64, from int, wait time.Duration) (haveAnswer, error) {
	p := fmt.Sprintf("/have/%s?epoch=%d&from=%d&wait=%s", url.PathEscape(id), epoch, from, wait)
	var hw haveWire
	if err := c.getJSON(ctx, p, maxHaveBytes, &hw); err != nil {
		return haveAnswer{}, fmt.Errorf("have %s: %w", id, err)
	}
	if len(hw.Objects)%8 != 0 || hw.From < 0 {
		return haveAnswer{}, fmt.Errorf("have %s: %w: %d bytes of prefixes from %d", id, ErrFrame, len(hw.Objects), hw.From)
	}
	ans := haveAnswer{Complete: hw.Complete, Epoch: hw.Epoch, From: hw.From, Objects: make([]uint64, len(hw.Objects)/8)}
	for i := range ans.Objects {
		ans.Objects[i] = binary.BigEndian.Uint64(hw.Objects[8*i:])
	}
	return ans, nil
}
