package config

import (
	"fmt"
	"math"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// ByteRate is a rate in bytes per second, written with a unit in YAML and
// JSON: "50MB/s", "400Mbit/s", "20MiB/s" ("/s" may be left out); "0" is no
// bound. Decimal units are powers of 1000, binary ones (KiB, MiB, GiB) of
// 1024; bit units are bits.
type ByteRate int64

// rateUnits are the units a ByteRate accepts, in bytes per second, longest
// names first so that "Mbit" is not read as "M" + "bit".
var rateUnits = []struct {
	name  string
	bytes float64
}{
	{"Gbit", 1e9 / 8}, {"Mbit", 1e6 / 8}, {"kbit", 1e3 / 8}, {"Kbit", 1e3 / 8}, {"bit", 1.0 / 8},
	{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10},
	{"GB", 1e9}, {"MB", 1e6}, {"kB", 1e3}, {"KB", 1e3}, {"B", 1},
}

// errRate explains the syntax.
const rateSyntax = `use e.g. 50MB/s, 400Mbit/s, 20MiB/s, or 0 for no bound`

// ParseByteRate reads a rate like "50MB/s".
func ParseByteRate(s string) (ByteRate, error) {
	text := strings.TrimSpace(s)
	if text == "0" {
		return 0, nil
	}
	text = strings.TrimSuffix(text, "/s")
	for _, u := range rateUnits {
		num, ok := strings.CutSuffix(text, u.name)
		if !ok {
			continue
		}
		v, err := strconv.ParseFloat(strings.TrimSpace(num), 64)
		if err != nil || v < 0 || math.IsInf(v, 0) || math.IsNaN(v) || v*u.bytes > math.MaxInt64/2 {
			break
		}
		return ByteRate(math.Round(v * u.bytes)), nil
	}
	return 0, fmt.Errorf("invalid rate %q (%s)", s, rateSyntax)
}

// String writes the rate in the largest decimal byte unit that keeps it
// exact.
func (r ByteRate) String() string {
	if r == 0 {
		return "0"
	}
	for _, u := range []struct {
		name string
		n    ByteRate
	}{{"GB", 1e9}, {"MB", 1e6}, {"kB", 1e3}} {
		if r%u.n == 0 {
			return strconv.FormatInt(int64(r/u.n), 10) + u.name + "/s"
		}
	}
	return strconv.FormatInt(int64(r), 10) + "B/s"
}

// MarshalText implements encoding.TextMarshaler.
func (r ByteRate) MarshalText() ([]byte, error) { return []byte(r.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (r *ByteRate) UnmarshalText(b []byte) error {
	v, err := ParseByteRate(string(b))
	if err != nil {
		return err
	}
	*r = v
	return nil
}

// MarshalYAML implements yaml.Marshaler.
func (r ByteRate) MarshalYAML() (any, error) { return r.String(), nil }

// UnmarshalYAML implements yaml.Unmarshaler, for callers decoding a Config
// with yaml.v3 directly rather than through Parse.
func (r *ByteRate) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("line %d: rate must be a string like 50MB/s", n.Line)
	}
	if err := r.UnmarshalText([]byte(n.Value)); err != nil {
		return fmt.Errorf("line %d: %w", n.Line, err)
	}
	return nil
}
