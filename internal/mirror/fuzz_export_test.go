package mirror

import (
	"bytes"
	"io"
)

// Hooks for the fuzz targets (fuzz_test.go): the decoders of the wire.

// DecodeManifestJSON is the encoding/json decoder of DecodeManifest.
func DecodeManifestJSON(data []byte) (int, *Manifest, error) { return decodeManifestJSON(data) }

// ReadFrames reads an object stream of want objects as Client.Objects
// does, asking for the objects the stream's first want frames name (so
// that any order of hashes is the asked one).
func ReadFrames(r io.Reader, want int, fn func(h Hash, size int64, r io.Reader) error) error {
	data, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	hashes := make([]Hash, want)
	scan := bytes.NewReader(data)
	for i := range hashes {
		h, size, err := ReadFrameHeader(scan)
		if err != nil {
			break
		}
		hashes[i] = h
		if _, err := scan.Seek(size, io.SeekCurrent); err != nil {
			break
		}
	}
	return readFrames(bytes.NewReader(data), hashes, fn)
}

// GunzipLimited decompresses a gzipped manifest as Client.Manifest does.
func GunzipLimited(gz []byte, limit int64) ([]byte, error) { return gunzipLimited(gz, limit) }
