package mirror

import (
	"errors"
	"fmt"
	"math"
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
// Objects larger than compressSample are first judged by the byte entropy
// of their head: above compressEntropy bits per byte (an image, an
// archive: compressed already) they are not compressed at all. An object
// is stored compressed only if that saves compressSavings of it.
const (
	compressMin     = 128
	compressMax     = 8 << 20
	compressSample  = 4 << 10
	compressEntropy = 7.8
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
	if len(src) > 8*compressSample && entropy(src[:compressSample]) > compressEntropy {
		return dst, false
	}
	out := encoder().EncodeAll(src, dst)
	if len(out)-len(dst) > len(src)-int(float64(len(src))*compressSavings) {
		return dst[:len(dst)], false
	}
	return out, true
}

// entropy returns the Shannon entropy of the bytes of b, in bits per
// byte: 8 for random bytes, about 5 for source code. It costs a pass over
// b, where compressing b to find out costs about twenty.
func entropy(b []byte) float64 {
	var counts [256]int
	for _, c := range b {
		counts[c]++
	}
	n, e := float64(len(b)), 0.0
	for _, k := range counts {
		if k > 0 {
			p := float64(k) / n
			e -= p * math.Log2(p)
		}
	}
	return e
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
