package mirror

import "io"

// Hooks for the fuzz targets (fuzz_test.go): the decoders of the wire.

// DecodeManifestJSON is the encoding/json decoder of DecodeManifest.
func DecodeManifestJSON(data []byte) (int, *Manifest, error) { return decodeManifestJSON(data) }

// ReadFrames reads an object stream as Client.Objects does.
func ReadFrames(r io.Reader, want int, fn func(h Hash, size int64, r io.Reader) error) error {
	return readFrames(r, want, false, fn)
}

// ReadFramesV2 reads a v2 object stream as Client.Objects does.
func ReadFramesV2(r io.Reader, want int, fn func(h Hash, size int64, r io.Reader) error) error {
	return readFrames(r, want, true, fn)
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
