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
// controller's (content from its packs) and a web node's peer handler
// (content from its release files). Both decode the request and write the
// stream here, so the wire format lives in one place for both.

// objectBody is one object a handler is about to send.
type objectBody interface {
	// bodySize is the content size announced in the frame header.
	bodySize() int64
	// copyTo writes exactly bodySize bytes of content to w, or fails.
	copyTo(w io.Writer) error
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

// writeObjectStream sends the frames of hashes with their bodies. On an
// error the response is cut short of its Content-Length, so the client sees
// the failure; the error is returned for the handler to log.
func writeObjectStream(w http.ResponseWriter, hashes []Hash, bodies []objectBody) error {
	var total int64
	for _, b := range bodies {
		total += FrameHeaderSize + b.bodySize()
	}
	w.Header().Set("Content-Type", ObjectsContentType)
	w.Header().Set("Content-Length", strconv.FormatInt(total, 10))
	bw := bufio.NewWriterSize(w, objectsWriteBuffer)
	for i, b := range bodies {
		if err := WriteFrameHeader(bw, hashes[i], b.bodySize()); err != nil {
			return err
		}
		if err := b.copyTo(bw); err != nil {
			return fmt.Errorf("object %s: %w", hashes[i], err)
		}
	}
	return bw.Flush()
}
