package mirror

import (
	"errors"
	"fmt"
	"runtime"
	"sync"

	"github.com/klauspost/compress/zstd"
)

// Codec is how an object's bytes are stored in a pack and sent on the wire.
// Objects are compressed one by one with zstd level 1 where it pays (code,
// text) and kept raw where it does not (images, archives): the content of
// a code tree costs about a third of its size to store, make durable and
// send, and serving an object stays a plain copy of its stored bytes.
type Codec uint8

const (
	CodecRaw  Codec = 0
	CodecZstd Codec = 1
)

func (c Codec) String() string {
	switch c {
	case CodecRaw:
		return "raw"
	case CodecZstd:
		return "zstd"
	}
	return fmt.Sprintf("codec(%d)", uint8(c))
}

// Compression thresholds. An object smaller than compressMin gains less
// than a frame costs; one larger than compressMax is stored raw, so that
// either side holds at most that much of one object in memory at once.
// Objects larger than compressSample are first tried on their head: what
// does not shrink by compressSavings there (an image, an archive) is not
// compressed at all.
const (
	compressMin     = 128
	compressMax     = 8 << 20
	compressSample  = 16 << 10
	compressSavings = 0.125
)

var (
	encOnce sync.Once
	enc     *zstd.Encoder
	decOnce sync.Once
	dec     *zstd.Decoder
)

// encoder is shared: EncodeAll may run concurrently.
func encoder() *zstd.Encoder {
	encOnce.Do(func() {
		var err error
		enc, err = zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest),
			zstd.WithEncoderConcurrency(runtime.GOMAXPROCS(0)), zstd.WithEncoderCRC(false),
			zstd.WithZeroFrames(true), zstd.WithLowerEncoderMem(true))
		if err != nil {
			panic(err) // only for invalid options
		}
	})
	return enc
}

// decoder is shared: DecodeAll may run concurrently. DecodeAll never
// grows dst beyond its capacity, so a frame cannot make a receiver hold
// more than the size it expects.
func decoder() *zstd.Decoder {
	decOnce.Do(func() {
		var err error
		dec, err = zstd.NewReader(nil, zstd.WithDecoderConcurrency(runtime.GOMAXPROCS(0)),
			zstd.WithDecodeAllCapLimit(true), zstd.WithDecoderMaxMemory(compressMax+1))
		if err != nil {
			panic(err) // only for invalid options
		}
	})
	return dec
}

// compressObject appends the zstd frame of src to dst when it saves at
// least compressSavings of src, and reports whether it did; otherwise dst
// is returned unchanged and src is to be stored raw.
func compressObject(dst, src []byte) ([]byte, bool) {
	if len(src) < compressMin || len(src) > compressMax {
		return dst, false
	}
	limit := func(n int) int { return n - int(float64(n)*compressSavings) }
	if len(src) > 2*compressSample {
		probe := encoder().EncodeAll(src[:compressSample], dst[len(dst):])
		if len(probe) > limit(compressSample) {
			return dst, false
		}
	}
	out := encoder().EncodeAll(src, dst)
	if len(out)-len(dst) > limit(len(src)) {
		return dst[:len(dst)], false
	}
	return out, true
}

// errDecode reports stored or received bytes that do not decode to the
// size they claim.
var errDecode = errors.New("bad compressed object")

// decodeObject appends to dst the rawSize bytes that data, stored with
// codec, holds.
func decodeObject(dst, data []byte, codec Codec, rawSize int64) ([]byte, error) {
	switch codec {
	case CodecRaw:
		if int64(len(data)) != rawSize {
			return nil, fmt.Errorf("%w: %d raw bytes, want %d", errDecode, len(data), rawSize)
		}
		return append(dst, data...), nil
	case CodecZstd:
		if rawSize > compressMax {
			return nil, fmt.Errorf("%w: %d bytes compressed, at most %d allowed", errDecode, rawSize, compressMax)
		}
		start := len(dst)
		if int64(cap(dst)-start) < rawSize {
			grown := make([]byte, start, start+int(rawSize))
			copy(grown, dst)
			dst = grown
		}
		out, err := decoder().DecodeAll(data, dst[:start:start+int(rawSize)])
		if err != nil {
			return nil, fmt.Errorf("%w: %v", errDecode, err)
		}
		if int64(len(out)-start) != rawSize {
			return nil, fmt.Errorf("%w: %d bytes decoded, want %d", errDecode, len(out)-start, rawSize)
		}
		return out, nil
	}
	return nil, fmt.Errorf("%w: unknown codec %d", errDecode, codec)
}
