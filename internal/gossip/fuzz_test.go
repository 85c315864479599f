package gossip_test

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nodeagent/nodeagent/internal/gossip"
)

// Fuzz targets of what a node takes from others: user messages (register
// writes such as the maintenance and certificate registers, leave intents)
// and push/pull state. Whatever a node accepts it must be able to persist
// and load again at its next start, pass on to a peer unchanged, and
// outbid with its own next write. Seeds are in testdata/fuzz/<target>.

func fuzzNode(tb testing.TB, name string) *gossip.Gossip {
	return gossip.New(gossip.Config{Name: name, Key: make([]byte, gossip.KeySize)})
}

// compact returns registers with their values in compact JSON, as a state
// file or a push/pull payload carries them.
func compact(tb testing.TB, regs map[string]gossip.Register) map[string]gossip.Register {
	out := make(map[string]gossip.Register, len(regs))
	for k, r := range regs {
		var b bytes.Buffer
		if err := json.Compact(&b, r.Value); err != nil {
			tb.Fatalf("register %q holds invalid JSON: %v", k, err)
		}
		r.Value = b.Bytes()
		out[k] = r
	}
	return out
}

// checkAccepted checks the properties of whatever g now holds, with path
// as its state file (one per fuzz worker: a worker runs inputs one by one).
func checkAccepted(t *testing.T, g *gossip.Gossip, path string) {
	regs := compact(t, g.Registers())
	data, err := g.StateFileBytes()
	if err != nil {
		t.Fatalf("encode state: %v", err)
	}
	var st struct{ Clock uint64 }
	if err := json.Unmarshal(data, &st); err != nil || st.Clock >= gossip.MaxClock {
		t.Fatalf("clock %d: the node's own next write could not win (%v)", st.Clock, err)
	}
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	loaded, err := gossip.LoadStateFile(path)
	if err != nil {
		t.Fatalf("the node could not start again with what it accepted: %v", err)
	}
	if !maps.EqualFunc(compact(t, loaded), regs, sameRegister) {
		t.Fatalf("state file changed the registers:\n%v\nwant\n%v", loaded, regs)
	}
	peer := fuzzNode(t, "peer")
	peer.MergeState(g.LocalState())
	if got := compact(t, peer.Registers()); !maps.EqualFunc(got, regs, sameRegister) {
		t.Fatalf("push/pull changed the registers:\n%v\nwant\n%v", got, regs)
	}
}

// FuzzMessage: a user message as another member could send it.
func FuzzMessage(f *testing.F) {
	f.Add([]byte(`r{"k":"maintenance","clock":7,"node":"web-1","value":{"enabled":true,"message":"upgrade","allow":["10.0.0.0/8"],"until":"2030-01-01T00:00:00Z"}}`))
	f.Add([]byte(`r{"k":"certificate","clock":3,"node":"web-2","value":{"names":["moodle.example.com"],"fingerprint":"ab","not_after":"2030-01-01T00:00:00Z","renewal":true}}`))
	f.Add([]byte(`l{"n":"web-3","c":9}`))
	f.Add([]byte(`f{"n":"web-3","c":10,"v":1764914400000,"t":"` + time.Now().UTC().Format(time.RFC3339) + `","b":"controller"}`))
	path := filepath.Join(f.TempDir(), "state.json")
	f.Fuzz(func(t *testing.T, msg []byte) {
		g := fuzzNode(t, "fuzz")
		g.HandleMsg(msg)
		checkAccepted(t, g, path)
	})
}

// FuzzPushPull: a push/pull state as another member could send it.
func FuzzPushPull(f *testing.F) {
	f.Add([]byte(`{"clock":9,"registers":{"maintenance":{"clock":8,"node":"web-1","value":{"enabled":false}},"target":{"clock":9,"node":"controller","value":{"seq":4,"id":"ab"}}},"left":{"web-9":5}}`))
	f.Add([]byte(`{"registers":{"k":{"clock":1,"node":"","value":1}}}`))
	f.Add([]byte(`{"clock":11,"registers":{},"forgotten":[{"n":"web-3","c":10,"v":1764914400000,"t":"` +
		time.Now().UTC().Format(time.RFC3339) + `","b":"controller"}]}`))
	path := filepath.Join(f.TempDir(), "state.json")
	f.Fuzz(func(t *testing.T, buf []byte) {
		g := fuzzNode(t, "fuzz")
		g.MergeState(buf)
		checkAccepted(t, g, path)
	})
}

// FuzzKeyringFile: a keyring file, however damaged, is either refused with
// an error that quotes none of its content, or read as distinct 32-byte
// keys that, written again, read back the same.
func FuzzKeyringFile(f *testing.F) {
	k1 := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{1}, gossip.KeySize))
	k2 := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{2}, gossip.KeySize))
	f.Add([]byte(`{"keys":["` + k1 + `","` + k2 + `"],"key_file":"0123456789abcdef"}`))
	f.Add([]byte(`{"keys":["` + k1 + `","` + k1 + `"]}`))
	f.Add([]byte(`{"keys":["` + k1[:20] + `"]}`))
	f.Add([]byte(`{"keys":[]}` + "\n" + k1))
	f.Fuzz(func(t *testing.T, data []byte) {
		keys, recorded, err := gossip.DecodeKeyring(data)
		if err != nil {
			msg := err.Error()
			for _, field := range strings.FieldsFunc(string(data), func(r rune) bool { return strings.ContainsRune("\"[]{},: \n\t", r) }) {
				if len(field) >= 8 && strings.Contains(msg, field) {
					t.Fatalf("error %q quotes the file (%q)", msg, field)
				}
			}
			return
		}
		var file struct {
			Keys    []string `json:"keys"`
			KeyFile string   `json:"key_file"`
		}
		file.KeyFile = recorded
		for i, k := range keys {
			if len(k) != gossip.KeySize || slices.ContainsFunc(keys[:i], func(o []byte) bool { return bytes.Equal(o, k) }) {
				t.Fatalf("key %d: %d bytes or repeated", i, len(k))
			}
			file.Keys = append(file.Keys, base64.StdEncoding.EncodeToString(k))
		}
		again, err := json.Marshal(file)
		if err != nil {
			t.Fatal(err)
		}
		keys2, recorded2, err := gossip.DecodeKeyring(again)
		if err != nil || recorded2 != recorded || !slices.EqualFunc(keys2, keys, bytes.Equal) {
			t.Fatalf("written again, the keyring reads differently: %v", err)
		}
	})
}
