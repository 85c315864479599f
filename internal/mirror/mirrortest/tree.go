// Package mirrortest builds source trees for the tests and benchmarks of
// package mirror. Only tests and the benchmarks under bench/ import it.
package mirrortest

import (
	"bufio"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// GenerateTree writes under dir the tree described by the TSV file at
// tsvPath (one "size<TAB>relative path" per line), filling each file with
// deterministic pseudo-random bytes seeded by its path. With scale > 1 the
// tree is written scale times under the top-level prefixes a/, b/, c/, …,
// each copy with its own content.
func GenerateTree(dir, tsvPath string, scale int) error {
	return GenerateTreeFunc(dir, tsvPath, scale, func(buf []byte, rel string, size int) []byte {
		return Content(buf, rel, size)
	})
}

// GenerateTreeFunc is GenerateTree with the content of each file appended
// to buf by content, for the file at rel (prefix included) of size bytes.
func GenerateTreeFunc(dir, tsvPath string, scale int, content func(buf []byte, rel string, size int) []byte) error {
	if scale < 1 || scale > 26 {
		return fmt.Errorf("generate tree: scale %d out of 1..26", scale)
	}
	specs, err := readSpecs(tsvPath)
	if err != nil {
		return err
	}
	var buf []byte
	for c := 0; c < scale; c++ {
		prefix := ""
		if scale > 1 {
			prefix = string(rune('a'+c)) + "/"
		}
		for _, s := range specs {
			rel := prefix + s.path
			buf = content(buf[:0], rel, s.size)
			if err := WriteFile(dir, rel, buf); err != nil {
				return err
			}
		}
	}
	return nil
}

type spec struct {
	size int
	path string
}

func readSpecs(tsvPath string) ([]spec, error) {
	f, err := os.Open(tsvPath)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var specs []spec
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		sizeText, p, ok := strings.Cut(sc.Text(), "\t")
		size, err := strconv.Atoi(sizeText)
		if !ok || err != nil || size < 0 || p == "" || filepath.IsAbs(p) || slices.Contains(strings.Split(p, "/"), "..") {
			return nil, fmt.Errorf("%s:%d: want size<TAB>relative path", tsvPath, n)
		}
		specs = append(specs, spec{size: size, path: p})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read %s: %w", tsvPath, err)
	}
	return specs, nil
}

// Content appends to buf size deterministic pseudo-random bytes seeded by
// seed and returns it.
func Content(buf []byte, seed string, size int) []byte {
	h := fnv.New64a()
	h.Write([]byte(seed))
	var key [32]byte
	s := h.Sum64()
	for i := range key {
		key[i] = byte(s >> (8 * (i % 8)))
		if i%8 == 7 {
			s = s*6364136223846793005 + 1442695040888963407
		}
	}
	start := len(buf)
	buf = append(buf, make([]byte, size)...)
	rng := rand.NewChaCha8(key)
	_, _ = rng.Read(buf[start:])
	return buf
}

// WriteFile writes data to dir/rel with mode 0644, creating parent
// directories (0755) as needed.
func WriteFile(dir, rel string, data []byte) error {
	p := filepath.Join(dir, filepath.FromSlash(rel))
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	return os.WriteFile(p, data, 0o644)
}
