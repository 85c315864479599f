package mirror_test

import (
	"bytes"
	"crypto/sha256"
	"io"
	"slices"
	"strings"
	"testing"

	"github.com/nodeagent/nodeagent/internal/mirror"
)

// writeFramesV2 encodes objects as a controller's v2 stream.
func writeFramesV2(tb testing.TB, objects [][]byte) []byte {
	var b bytes.Buffer
	for _, o := range objects {
		stored, codec := mirror.CompressObject(o)
		mustDo(tb, mirror.WriteFrameHeaderV2(&b, sha256.Sum256(o), int64(len(o)), codec, int64(len(stored))))
		b.Write(stored)
	}
	return b.Bytes()
}

// FuzzObjectStreamV2: whatever a source sends, the reader of the
// compressed stream never hands on more or fewer bytes than a frame
// announces nor accepts a stream of another length, and what a controller
// writes reads back as it was.
func FuzzObjectStreamV2(f *testing.F) {
	code := []byte(strings.Repeat("<?php echo 'compressible';\n", 40))
	f.Add(writeFramesV2(f, [][]byte{code, {}, []byte("body{}")}), uint8(3))
	f.Add(writeFramesV2(f, [][]byte{code})[:60], uint8(1))
	f.Add(append(writeFramesV2(f, [][]byte{code}), 1, 2, 3), uint8(1))
	f.Fuzz(func(t *testing.T, stream []byte, want uint8) {
		frames := 0
		err := mirror.ReadFramesV2(bytes.NewReader(stream), int(want), func(h mirror.Hash, size int64, r io.Reader) error {
			frames++
			n, err := io.Copy(io.Discard, r)
			if err == nil && n > size {
				t.Fatalf("frame of %d bytes gave %d", size, n)
			}
			return err
		})
		if err == nil && frames != int(want) {
			t.Fatalf("accepted %d frames of %d asked", frames, want)
		}

		objects := bytes.Split(stream, []byte{0xff})
		for i := range objects {
			objects[i] = bytes.Repeat(objects[i], 1+i%300) // some that compress
		}
		var got [][]byte
		err = mirror.ReadFramesV2(bytes.NewReader(writeFramesV2(t, objects)), len(objects), func(h mirror.Hash, size int64, r io.Reader) error {
			b, err := io.ReadAll(r)
			if h != sha256.Sum256(b) {
				t.Fatalf("frame %d: hash does not match its content", len(got))
			}
			got = append(got, b)
			return err
		})
		if err != nil || !slices.EqualFunc(got, objects, bytes.Equal) {
			t.Fatalf("round trip: %v, %d of %d objects", err, len(got), len(objects))
		}
	})
}
