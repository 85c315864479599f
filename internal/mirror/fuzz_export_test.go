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
	return readFramesNamed(r, want, false, fn)
}

// ReadFramesV2 reads a v2 object stream as Client.Objects does, like
// ReadFrames.
func ReadFramesV2(r io.Reader, want int, fn func(h Hash, size int64, r io.Reader) error) error {
	return readFramesNamed(r, want, true, fn)
}

func readFramesNamed(r io.Reader, want int, v2 bool, fn func(h Hash, size int64, r io.Reader) error) error {
	data, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	hashes := make([]Hash, want)
	scan := bytes.NewReader(data)
	for i := range hashes {
		h, _, _, sent, err := readFrameHeader(scan, v2)
		if err != nil {
			break
		}
		hashes[i] = h
		if _, err := scan.Seek(sent, io.SeekCurrent); err != nil {
			break
		}
	}
	return readFrames(bytes.NewReader(data), hashes, v2, fn)
}

// CompressObject is how a pack stores an object: compressed when it pays.
func CompressObject(data []byte) ([]byte, Codec) {
	if out, ok := compressObject(nil, data); ok {
		return out, CodecZstd
	}
	return data, CodecRaw
}

// GunzipLimited decompresses a gzipped manifest as Client.Manifest does.
func GunzipLimited(gz []byte, limit int64) ([]byte, error) { return gunzipLimited(gz, limit) }
