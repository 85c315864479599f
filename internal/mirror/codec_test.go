package mirror_test

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/nodeagent/nodeagent/internal/mirror"
	"github.com/nodeagent/nodeagent/internal/mirror/mirrortest"
)

// Compressible content is stored and sent compressed, incompressible
// content raw; both read back byte for byte through either wire format.
func TestStoreCompressesWhereItPays(t *testing.T) {
	src, dir := t.TempDir(), t.TempDir()
	code := strings.Repeat("<?php\n// A comment of a Moodle library.\nfunction f($a) { return $a + 1; }\n", 3000)
	noise := string(mirrortest.Content(nil, "image", 200<<10)) // like a PNG: does not compress
	files := map[string]string{
		"lib/big.php": code, "pix/i.png": noise, "tiny.php": "<?php\n",
		"half.bin": code[:100<<10] + noise[:100<<10], // the head decides
	}
	stWrite(t, src, files)
	st := stOpen(t, mirror.StoreConfig{Dir: dir, Source: src})
	rev, _ := stPublish(t, st)
	packed, _ := packBytes(t, dir)
	total := int64(len(code) + len(noise) + len("<?php\n") + 200<<10)
	// The code shrinks to a small fraction; the noise stays as it is.
	if packed > int64(len(noise))+int64(len(noise[:100<<10]))+int64(len(code))/5+(100<<10)/5+4096 || packed < int64(len(noise)) {
		t.Errorf("packs hold %d bytes for %d of content (%d of it incompressible)", packed, total, len(noise)+100<<10)
	}
	base := stServe(t, st)
	stCheckServes(t, base, rev.ID, files) // first format: decompressed by the store

	// Second format, through the client: fewer bytes on the wire.
	var wire countingTransport
	c := mirror.NewClient(base, &http.Client{Transport: &wire})
	m := stManifest(t, base, rev.ID)
	var hashes []mirror.Hash
	want := map[mirror.Hash]string{}
	for _, e := range m.Entries {
		if e.Type == mirror.TypeFile {
			hashes = append(hashes, e.SHA256)
			want[e.SHA256] = files[e.Path]
		}
	}
	wire.n = 0
	got := map[mirror.Hash]string{}
	err := c.Objects(context.Background(), hashes, func(h mirror.Hash, size int64, r io.Reader) error {
		data, err := io.ReadAll(r)
		if int64(len(data)) != size {
			t.Errorf("object %s: %d bytes, frame says %d", h, len(data), size)
		}
		got[h] = string(data)
		return err
	})
	mustDo(t, err)
	for h, w := range want {
		if got[h] != w {
			t.Errorf("object %s differs (%d bytes, want %d)", h, len(got[h]), len(w))
		}
	}
	if wire.n > packed+int64(len(hashes))*mirror.FrameHeaderSizeV2+4096 {
		t.Errorf("%d bytes on the wire for %d stored", wire.n, packed)
	}
}

// countingTransport counts the response bytes it reads.
type countingTransport struct{ n int64 }

func (c *countingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err == nil {
		resp.Body = &countingBody{ReadCloser: resp.Body, n: &c.n}
	}
	return resp, err
}

type countingBody struct {
	io.ReadCloser
	n *int64
}

func (b *countingBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	*b.n += int64(n)
	return n, err
}

// A compressed frame whose bytes do not decode is handed on as an object
// of wrong content, never as a broken stream the caller cannot tell from a
// cut connection; the frames after it arrive.
func TestClientBadCompressedFrame(t *testing.T) {
	good := []byte("after the bad one")
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", mirror.ObjectsContentTypeV2)
		var b bytes.Buffer
		junk := []byte("not a zstd frame at all")
		mirror.WriteFrameHeaderV2(&b, mirror.Hash{1}, 1000, mirror.CodecZstd, int64(len(junk)))
		b.Write(junk)
		mirror.WriteFrameHeaderV2(&b, mirror.Hash{2}, int64(len(good)), mirror.CodecRaw, int64(len(good)))
		b.Write(good)
		w.Write(b.Bytes())
	}))
	defer srv.Close()
	var got []string
	err := mirror.NewClient(srv.URL, nil).Objects(context.Background(), []mirror.Hash{{1}, {2}},
		func(h mirror.Hash, size int64, r io.Reader) error {
			data, _ := io.ReadAll(r)
			got = append(got, string(data))
			return nil
		})
	mustDo(t, err)
	if len(got) != 2 || len(got[0]) == 1000 || got[1] != string(good) {
		t.Errorf("got %q", got)
	}
}
