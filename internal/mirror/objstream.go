package mirror

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
)

// The object stream of wire.go is answered by two handlers: the
// controller's (objects as its packs store them, raw or compressed) and a
// web node's peer handler (content from its release files, raw). Both
// decode the request and write the stream here, v1 or v2 as the client
// asks, so the wire format lives in one place for both.

// objectBody is one object a handler is about to send.
type objectBody interface {
	// rawSize is the content size.
	rawSize() int64
	// storedAs is how the object travels in a v2 frame: its codec and the
	// size of its stored bytes.
	storedAs() (Codec, int64)
	// copyStored writes exactly the stored bytes (a v2 frame's body),
	// copyRaw exactly the content (a v1 frame's), or fails.
	copyStored(w io.Writer) error
	copyRaw(w io.Writer) error
}

// readObjectsRequest decodes the body of POST /objects. On a bad request it
// answers with a problem and returns false.
func readObjectsRequest(w http.ResponseWriter, r *http.Request) ([]Hash, bool) {
	var req ObjectsRequest
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxObjectsRequestBytes)).Decode(&req); err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			serveProblem(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("request body exceeds %d bytes", tooBig.Limit), nil)
			return nil, false
		}
		serveProblem(w, http.StatusBadRequest, "decode objects request: "+err.Error(), nil)
		return nil, false
	}
	if len(req.Objects) > MaxObjectsPerRequest {
		serveProblem(w, http.StatusRequestEntityTooLarge,
			fmt.Sprintf("%d objects asked, at most %d per request", len(req.Objects), MaxObjectsPerRequest), nil)
		return nil, false
	}
	return req.Objects, true
}

// serveMissing answers a request naming objects the handler does not have.
func serveMissing(w http.ResponseWriter, missing []string) {
	listed := missing[:min(len(missing), maxMissingListed)]
	serveProblem(w, http.StatusNotFound, fmt.Sprintf("%d unknown objects: %s", len(missing), strings.Join(listed, ", ")), listed)
}

// writeObjectStream sends the frames of hashes with their bodies: v2
// frames (stored bytes, compressed or not) to a client that asks for them,
// else v1 frames (content). On an error the response is cut short of its
// Content-Length, so the client sees the failure; the error is returned
// for the handler to log.
func writeObjectStream(w http.ResponseWriter, r *http.Request, hashes []Hash, bodies []objectBody) error {
	v2 := acceptsObjectsV2(r)
	var total int64
	for _, b := range bodies {
		if _, stored := b.storedAs(); v2 {
			total += FrameHeaderSizeV2 + stored
		} else {
			total += FrameHeaderSize + b.rawSize()
		}
	}
	ct := ObjectsContentType
	if v2 {
		ct = ObjectsContentTypeV2
	}
	w.Header().Set("Content-Type", ct)
	w.Header().Set("Content-Length", strconv.FormatInt(total, 10))
	bw := bufio.NewWriterSize(w, objectsWriteBuffer)
	for i, b := range bodies {
		if err := writeFrame(bw, hashes[i], b, v2); err != nil {
			return fmt.Errorf("object %s: %w", hashes[i], err)
		}
	}
	return bw.Flush()
}

// writeFrame writes one object's frame, v2 or v1.
func writeFrame(w io.Writer, h Hash, b objectBody, v2 bool) error {
	if !v2 {
		if err := WriteFrameHeader(w, h, b.rawSize()); err != nil {
			return err
		}
		return b.copyRaw(w)
	}
	codec, stored := b.storedAs()
	if err := WriteFrameHeaderV2(w, h, b.rawSize(), codec, stored); err != nil {
		return err
	}
	return b.copyStored(w)
}
