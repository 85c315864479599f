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

// Objects are sent compressed to clients that ask for the second object
// stream format with "Accept: " + ObjectsContentTypeV2; the response's
// Content-Type says which format it is, so a new client reads an old
// controller's stream and an old client (which asks for nothing) gets the
// first format, decompressed by the controller. A v2 frame is the 32 bytes
// of the hash, the content size as a big-endian uint64, the Codec byte,
// the stored size as a big-endian uint64, then the stored bytes: the
// content itself for CodecRaw, a zstd frame of it for CodecZstd.
const (
	ObjectsContentTypeV2 = "application/vnd.nodeagent.objects.v2"
	FrameHeaderSizeV2    = 32 + 8 + 1 + 8
)

// maxStoredCompressed bounds the stored size of a compressed object.
const maxStoredCompressed = compressMax + 1<<16

// WriteFrameHeaderV2 writes the header of one v2 object frame.
func WriteFrameHeaderV2(w io.Writer, h Hash, size int64, codec Codec, stored int64) error {
	var b [FrameHeaderSizeV2]byte
	copy(b[:32], h[:])
	binary.BigEndian.PutUint64(b[32:], uint64(size))
	b[40] = byte(codec)
	binary.BigEndian.PutUint64(b[41:], uint64(stored))
	_, err := w.Write(b[:])
	return err
}

// ReadFrameHeaderV2 reads the header of the next v2 object frame. It
// returns io.EOF at a clean end of stream.
func ReadFrameHeaderV2(r io.Reader) (h Hash, size int64, codec Codec, stored int64, err error) {
	var b [FrameHeaderSizeV2]byte
	if _, err := io.ReadFull(r, b[:]); err != nil {
		if err == io.ErrUnexpectedEOF {
			return h, 0, 0, 0, fmt.Errorf("%w: truncated header", ErrFrame)
		}
		return h, 0, 0, 0, err
	}
	copy(h[:], b[:32])
	usize, ustored := binary.BigEndian.Uint64(b[32:]), binary.BigEndian.Uint64(b[41:])
	codec = Codec(b[40])
	switch {
	case usize > 1<<40:
		return h, 0, 0, 0, fmt.Errorf("%w: object %s claims %d bytes", ErrFrame, h, usize)
	case codec == CodecRaw && ustored != usize:
		return h, 0, 0, 0, fmt.Errorf("%w: raw object %s of %d bytes stored in %d", ErrFrame, h, usize, ustored)
	case codec == CodecZstd && (usize > compressMax || ustored > maxStoredCompressed):
		return h, 0, 0, 0, fmt.Errorf("%w: compressed object %s too large (%d, %d stored)", ErrFrame, h, usize, ustored)
	case codec > CodecZstd:
		return h, 0, 0, 0, fmt.Errorf("%w: object %s of unknown codec %d", ErrFrame, h, codec)
	}
	return h, int64(usize), codec, int64(ustored), nil
}
