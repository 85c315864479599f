package mirror

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"os"

	sha256 "github.com/minio/sha256-simd"
)

// scanCache remembers, for each source file of the last publish, its
// identity and content hash, so that a publish reads only files whose
// identity changed. It is persisted (scanCacheFile) so that a restarted
// controller publishes as fast:
//
//	scanCacheMagic, uvarint len + source root, uvarint count, then per file:
//	uvarint len + path, varint size, mtime, ctime, uvarint ino, dev, mode,
//	32-byte hash; then the SHA-256 of everything before it.
//
// A missing, foreign or damaged cache is simply empty.
type scanCache struct {
	root  string
	files map[string]*cacheEntry
}

type cacheEntry struct {
	id   fileID
	hash Hash
}

const scanCacheMagic = "NASCAN01"

func loadScanCache(p, root string, log *slog.Logger) *scanCache {
	c := &scanCache{root: root, files: map[string]*cacheEntry{}}
	data, err := os.ReadFile(p)
	if err != nil {
		if !os.IsNotExist(err) {
			log.Warn("scan cache unreadable, starting empty", "err", err)
		}
		return c
	}
	files, cacheRoot, err := decodeScanCache(data)
	switch {
	case err != nil:
		log.Warn("scan cache damaged, starting empty", "path", p, "err", err)
	case cacheRoot != root:
		log.Info("scan cache is of another source, starting empty", "cache", cacheRoot)
	default:
		c.files = files
	}
	return c
}

func (c *scanCache) encode() []byte {
	b := make([]byte, 0, 64+len(c.files)*96)
	b = append(b, scanCacheMagic...)
	b = appendString(b, c.root)
	b = binary.AppendUvarint(b, uint64(len(c.files)))
	for p, e := range c.files {
		b = appendString(b, p)
		b = binary.AppendVarint(b, e.id.Size)
		b = binary.AppendVarint(b, e.id.MtimeNs)
		b = binary.AppendVarint(b, e.id.CtimeNs)
		b = binary.AppendUvarint(b, e.id.Ino)
		b = binary.AppendUvarint(b, e.id.Dev)
		b = binary.AppendUvarint(b, uint64(e.id.Mode))
		b = append(b, e.hash[:]...)
	}
	sum := sha256.Sum256(b)
	return append(b, sum[:]...)
}

func appendString(b []byte, s string) []byte {
	return append(binary.AppendUvarint(b, uint64(len(s))), s...)
}

var errScanCache = errors.New("bad scan cache")

func decodeScanCache(data []byte) (map[string]*cacheEntry, string, error) {
	if len(data) < len(scanCacheMagic)+sha256.Size || string(data[:len(scanCacheMagic)]) != scanCacheMagic {
		return nil, "", fmt.Errorf("%w: bad header", errScanCache)
	}
	body, sum := data[:len(data)-sha256.Size], data[len(data)-sha256.Size:]
	if got := sha256.Sum256(body); !bytes.Equal(got[:], sum) {
		return nil, "", fmt.Errorf("%w: checksum mismatch", errScanCache)
	}
	d := cacheDecoder{b: body[len(scanCacheMagic):]}
	root := d.str()
	n := d.uvarint()
	if d.err != nil || n > uint64(len(d.b)) {
		return nil, "", fmt.Errorf("%w: bad count", errScanCache)
	}
	files := make(map[string]*cacheEntry, n)
	arena := make([]cacheEntry, n)
	for i := range n {
		p := d.str()
		e := &arena[i]
		e.id.Size = d.varint()
		e.id.MtimeNs = d.varint()
		e.id.CtimeNs = d.varint()
		e.id.Ino = d.uvarint()
		e.id.Dev = d.uvarint()
		e.id.Mode = uint32(d.uvarint())
		copy(e.hash[:], d.bytes(32))
		if d.err != nil {
			return nil, "", d.err
		}
		files[p] = e
	}
	if len(d.b) != 0 {
		return nil, "", fmt.Errorf("%w: trailing bytes", errScanCache)
	}
	return files, root, nil
}

// cacheDecoder reads the fields of a scan cache; the first error sticks.
type cacheDecoder struct {
	b   []byte
	err error
}

func (d *cacheDecoder) fail() {
	if d.err == nil {
		d.err = fmt.Errorf("%w: truncated", errScanCache)
	}
	d.b = nil
}

func (d *cacheDecoder) uvarint() uint64 {
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail()
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *cacheDecoder) varint() int64 {
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.fail()
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *cacheDecoder) bytes(n int) []byte {
	if len(d.b) < n {
		d.fail()
		return make([]byte, n)
	}
	v := d.b[:n]
	d.b = d.b[n:]
	return v
}

func (d *cacheDecoder) str() string {
	n := d.uvarint()
	if n > uint64(len(d.b)) {
		d.fail()
		return ""
	}
	return string(d.bytes(int(n)))
}
