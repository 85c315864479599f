package mirror

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"

	sha256 "github.com/minio/sha256-simd"
	"golang.org/x/sys/unix"
)

// Content captured by publishes lives in pack files, as in git: each
// publish appends the content it has not stored yet to new packs written
// sequentially, one per hashing worker, so that 17k small files cost a few
// large writes instead of 17k file creations.
//
//	objects/pack-<n>.dat   object contents as stored (see Codec), back to back
//	objects/pack-<n>.idx   packIdxMagic, dat size, count, then count
//	                       records (hash, offset, stored size, size,
//	                       codec) sorted by hash, then the SHA-256 of
//	                       everything before it
//
// Packs of format 1 (packIdxMagicV1: records of hash, offset, size; every
// object raw) are still read.
// n is a store-wide counter. A pack is written under a tmpPrefix name, made
// durable, and renamed .dat first, .idx last: an .idx names a complete pack.
const (
	objectsDir      = "objects"
	packIdxMagic    = "NAPKIDX2"
	packIdxMagicV1  = "NAPKIDX1"
	packIdxRecord   = 32 + 8 + 8 + 8 + 1
	packIdxRecordV1 = 32 + 8 + 8
	packIdxFixed    = len(packIdxMagic) + 8 + 8 + sha256.Size
	packFlushBytes  = 1 << 20 // pending bytes a packWriter hands to the kernel at once
)

// packObj locates one object in a pack: size bytes at off, which decode
// with codec to raw bytes.
type packObj struct {
	hash  Hash
	off   int64
	size  int64
	raw   int64
	codec Codec
}

// pack is an open, complete pack. refs counts the store's own reference
// and those of requests streaming from it; the file closes at zero, so a
// pack removed by garbage collection still serves the requests under way.
type pack struct {
	num  uint64
	f    *os.File
	size int64
	objs []packObj // sorted by hash
	refs atomic.Int64
}

func packFileName(num uint64, ext string) string {
	return "pack-" + strconv.FormatUint(num, 10) + "." + ext
}

// parsePackName returns n and the extension of "pack-<n>.<ext>".
func parsePackName(name string) (uint64, string, bool) {
	rest, ok := strings.CutPrefix(name, "pack-")
	if !ok {
		return 0, "", false
	}
	numText, ext, ok := strings.Cut(rest, ".")
	num, err := strconv.ParseUint(numText, 10, 64)
	if !ok || err != nil {
		return 0, "", false
	}
	return num, ext, true
}

func (p *pack) acquire() { p.refs.Add(1) }

func (p *pack) release() {
	if p.refs.Add(-1) == 0 {
		p.f.Close()
	}
}

// openPack opens pack num of dir, checking its index and the data size.
func openPack(dir string, num uint64) (*pack, error) {
	idxPath := filepath.Join(dir, packFileName(num, "idx"))
	data, err := os.ReadFile(idxPath)
	if err != nil {
		return nil, err
	}
	datSize, objs, err := decodePackIdx(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", idxPath, err)
	}
	datPath := filepath.Join(dir, packFileName(num, "dat"))
	f, err := os.Open(datPath)
	if err != nil {
		return nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	if fi.Size() != datSize {
		f.Close()
		return nil, fmt.Errorf("%s: %d bytes, index says %d", datPath, fi.Size(), datSize)
	}
	p := &pack{num: num, f: f, size: datSize, objs: objs}
	p.refs.Store(1)
	return p, nil
}

var errPackIdx = errors.New("corrupt pack index")

func encodePackIdx(datSize int64, objs []packObj) []byte {
	b := make([]byte, 0, packIdxFixed+len(objs)*packIdxRecord)
	b = append(b, packIdxMagic...)
	b = binary.BigEndian.AppendUint64(b, uint64(datSize))
	b = binary.BigEndian.AppendUint64(b, uint64(len(objs)))
	for _, o := range objs {
		b = append(b, o.hash[:]...)
		b = binary.BigEndian.AppendUint64(b, uint64(o.off))
		b = binary.BigEndian.AppendUint64(b, uint64(o.size))
		b = binary.BigEndian.AppendUint64(b, uint64(o.raw))
		b = append(b, byte(o.codec))
	}
	sum := sha256.Sum256(b)
	return append(b, sum[:]...)
}

func decodePackIdx(b []byte) (int64, []packObj, error) {
	if len(b) < packIdxFixed {
		return 0, nil, fmt.Errorf("%w: bad header", errPackIdx)
	}
	recLen := packIdxRecord
	switch string(b[:len(packIdxMagic)]) {
	case packIdxMagic:
	case packIdxMagicV1:
		recLen = packIdxRecordV1
	default:
		return 0, nil, fmt.Errorf("%w: bad header", errPackIdx)
	}
	body, sum := b[:len(b)-sha256.Size], b[len(b)-sha256.Size:]
	if got := sha256.Sum256(body); !bytes.Equal(got[:], sum) {
		return 0, nil, fmt.Errorf("%w: checksum mismatch", errPackIdx)
	}
	datSize := int64(binary.BigEndian.Uint64(b[8:]))
	count := binary.BigEndian.Uint64(b[16:])
	recs := body[24:]
	if datSize < 0 || count > uint64(len(recs)) || uint64(len(recs)) != count*uint64(recLen) {
		return 0, nil, fmt.Errorf("%w: %d records in %d bytes", errPackIdx, count, len(recs))
	}
	objs := make([]packObj, count)
	for i := range objs {
		r := recs[i*recLen:]
		o := &objs[i]
		copy(o.hash[:], r[:32])
		o.off = int64(binary.BigEndian.Uint64(r[32:]))
		o.size = int64(binary.BigEndian.Uint64(r[40:]))
		o.raw, o.codec = o.size, CodecRaw
		if recLen == packIdxRecord {
			o.raw = int64(binary.BigEndian.Uint64(r[48:]))
			o.codec = Codec(r[56])
		}
		if o.off < 0 || o.size < 0 || o.off > datSize-o.size || o.raw < 0 ||
			(o.codec == CodecRaw && o.raw != o.size) || o.codec > CodecZstd {
			return 0, nil, fmt.Errorf("%w: object %s outside the pack or of a bad codec", errPackIdx, o.hash)
		}
		if i > 0 && bytes.Compare(objs[i-1].hash[:], o.hash[:]) >= 0 {
			return 0, nil, fmt.Errorf("%w: records out of order", errPackIdx)
		}
	}
	return datSize, objs, nil
}

// packWriter appends objects to a new pack under a temporary name. Callers
// read content straight into its buffer (reserve, commit) and may take back
// what they appended since an offset (rewind), so a file that changed while
// read, or duplicate content, leaves no trace.
type packWriter struct {
	dir     string
	num     uint64
	f       *os.File
	buf     []byte // pending bytes, at offset flushed
	flushed int64
	objs    []packObj
}

func createPackWriter(dir string, num uint64) (*packWriter, error) {
	name := filepath.Join(dir, tmpPrefix+packFileName(num, "dat"))
	f, err := os.OpenFile(name, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, err
	}
	return &packWriter{dir: dir, num: num, f: f, buf: make([]byte, 0, packFlushBytes)}, nil
}

// size is the logical size of the pack so far.
func (w *packWriter) size() int64 { return w.flushed + int64(len(w.buf)) }

// reserve returns n free bytes at the end of the pack, flushing first if
// they do not fit in the buffer. commit makes the first m of them part of
// the pack.
func (w *packWriter) reserve(n int) ([]byte, error) {
	if len(w.buf)+n > cap(w.buf) && len(w.buf) > 0 {
		if err := w.flush(); err != nil {
			return nil, err
		}
	}
	if n > cap(w.buf) {
		w.buf = make([]byte, 0, n)
	}
	return w.buf[len(w.buf) : len(w.buf)+n], nil
}

func (w *packWriter) commit(m int) { w.buf = w.buf[:len(w.buf)+m] }

// rewind drops everything appended at or after offset to.
func (w *packWriter) rewind(to int64) {
	if to >= w.flushed {
		w.buf = w.buf[:to-w.flushed]
		return
	}
	w.buf = w.buf[:0]
	w.flushed = to // later writes overwrite; finish truncates
}

// add records the object written at [off, size()), raw bytes stored with
// codec.
func (w *packWriter) add(h Hash, off, raw int64, codec Codec) {
	w.objs = append(w.objs, packObj{hash: h, off: off, size: w.size() - off, raw: raw, codec: codec})
}

// flush writes the pending bytes and starts their writeback, so that the
// final fsync has little left to wait for.
func (w *packWriter) flush() error {
	if len(w.buf) == 0 {
		return nil
	}
	if _, err := w.f.WriteAt(w.buf, w.flushed); err != nil {
		return err
	}
	_ = unix.SyncFileRange(int(w.f.Fd()), w.flushed, int64(len(w.buf)), unix.SYNC_FILE_RANGE_WRITE)
	w.flushed += int64(len(w.buf))
	w.buf = w.buf[:0]
	return nil
}

// finish makes the pack data and its index durable under temporary names.
func (w *packWriter) finish() error {
	if err := w.flush(); err != nil {
		return err
	}
	if err := w.f.Truncate(w.flushed); err != nil {
		return err
	}
	if err := w.f.Sync(); err != nil {
		return err
	}
	slices.SortFunc(w.objs, func(a, b packObj) int { return bytes.Compare(a.hash[:], b.hash[:]) })
	idx := encodePackIdx(w.flushed, w.objs)
	name := filepath.Join(w.dir, tmpPrefix+packFileName(w.num, "idx"))
	f, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(idx); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// install renames a finished pack into place (the caller syncs the
// directory) and returns it open.
func (w *packWriter) install() (*pack, error) {
	for _, ext := range []string{"dat", "idx"} {
		tmp := filepath.Join(w.dir, tmpPrefix+packFileName(w.num, ext))
		if err := os.Rename(tmp, filepath.Join(w.dir, packFileName(w.num, ext))); err != nil {
			return nil, err
		}
	}
	p := &pack{num: w.num, f: w.f, size: w.flushed, objs: w.objs}
	p.refs.Store(1)
	w.f = nil
	return p, nil
}

// abort closes and removes an unfinished or uninstalled pack.
func (w *packWriter) abort() {
	if w.f != nil {
		w.f.Close()
		w.f = nil
	}
	os.Remove(filepath.Join(w.dir, tmpPrefix+packFileName(w.num, "dat")))
	os.Remove(filepath.Join(w.dir, tmpPrefix+packFileName(w.num, "idx")))
}

// removePackFiles deletes pack num: .idx first, so a crash in between
// leaves an .dat without index, which Open removes.
func removePackFiles(dir string, num uint64) error {
	for _, ext := range []string{"idx", "dat"} {
		if err := os.Remove(filepath.Join(dir, packFileName(num, ext))); err != nil && !os.IsNotExist(err) {
			return err
		}
	}
	return nil
}
