package mirror

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"time"
)

// Revision describes one published tree. ID is the hex SHA-256 of the
// canonical manifest; Seq counts publishes from 1.
type Revision struct {
	Seq     uint64    `json:"seq"`
	ID      string    `json:"id"`
	Created time.Time `json:"created"`
	Message string    `json:"message,omitempty"`
	Files   int       `json:"files"`
	Bytes   int64     `json:"bytes"`
	// Changed is the number of files whose content is new in this revision.
	Changed int `json:"changed"`
}

// The controller serves revisions to web nodes on the cluster API under
// these paths (relative to the mirror handler's mount point):
//
//	GET  /revisions                  JSON []Revision, oldest first
//	GET  /manifests/{id}             canonical manifest bytes
//	GET  /manifests/{id}?base={id2}  JSON Delta from id2 to id; 404 if id2 unknown
//	POST /objects                    body ObjectsRequest; response: object stream
//
// An object stream is, for each requested hash in request order, a frame:
// the 32 raw bytes of the hash, the content size as a big-endian uint64, then
// the content. The receiver verifies every hash; the stream ends at EOF.
const (
	ObjectsContentType = "application/vnd.nodeagent.objects"
	// MaxObjectsPerRequest bounds one request; clients batch below it.
	MaxObjectsPerRequest = 20000
)

// ObjectsRequest asks for the content of some hashes.
type ObjectsRequest struct {
	Objects []Hash `json:"objects"`
}

// FrameHeaderSize is the size of an object frame header.
const FrameHeaderSize = 32 + 8

// WriteFrameHeader writes the header of one object frame.
func WriteFrameHeader(w io.Writer, h Hash, size int64) error {
	var b [FrameHeaderSize]byte
	copy(b[:32], h[:])
	binary.BigEndian.PutUint64(b[32:], uint64(size))
	_, err := w.Write(b[:])
	return err
}

// ErrFrame reports a malformed object stream.
var ErrFrame = errors.New("bad object stream")

// ReadFrameHeader reads the header of the next object frame. It returns
// io.EOF at a clean end of stream.
func ReadFrameHeader(r io.Reader) (Hash, int64, error) {
	var b [FrameHeaderSize]byte
	var h Hash
	if _, err := io.ReadFull(r, b[:]); err != nil {
		if err == io.ErrUnexpectedEOF {
			return h, 0, fmt.Errorf("%w: truncated header", ErrFrame)
		}
		return h, 0, err
	}
	copy(h[:], b[:32])
	size := binary.BigEndian.Uint64(b[32:])
	if size > 1<<40 {
		return h, 0, fmt.Errorf("%w: object %s claims %d bytes", ErrFrame, h, size)
	}
	return h, int64(size), nil
}
