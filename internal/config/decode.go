package config

import (
	"fmt"
	"reflect"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// decode applies the YAML document in doc over c field by field, instead of
// yaml.v3's own decoder, so that every problem (unknown key, duplicate key,
// wrong type) names its dotted key and line, and all of them are reported.
func decode(doc *yaml.Node, c *Config) []string {
	n := doc
	if n.Kind == yaml.DocumentNode {
		if len(n.Content) == 0 {
			return nil
		}
		n = n.Content[0]
	}
	if n.Kind == 0 {
		return nil // empty file: all defaults
	}
	var d decoder
	d.value(n, reflect.ValueOf(c).Elem(), "")
	return d.problems
}

type decoder struct {
	problems []string
}

func (d *decoder) problem(path string, n *yaml.Node, format string, args ...any) {
	if path == "" {
		path = "config"
	}
	msg := fmt.Sprintf(format, args...)
	d.problems = append(d.problems, fmt.Sprintf("%s: %s (line %d)", path, msg, n.Line))
}

var (
	durationType = reflect.TypeFor[Duration]()
	rateType     = reflect.TypeFor[ByteRate]()
)

// value decodes n into v. An explicit null leaves a section's defaults in
// place and sets a scalar or list to its zero value.
func (d *decoder) value(n *yaml.Node, v reflect.Value, path string) {
	for n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	null := n.Kind == yaml.ScalarNode && n.Tag == "!!null"
	if v.Type() == durationType {
		d.duration(n, v, path, null)
		return
	}
	if v.Type() == rateType {
		d.rate(n, v, path, null)
		return
	}
	switch v.Kind() {
	case reflect.Pointer:
		if v.IsNil() {
			v.Set(sectionDefaults(v.Type()))
		}
		d.value(n, v.Elem(), path)
	case reflect.Struct:
		if !null {
			d.mapping(n, v, path)
		}
	case reflect.String:
		if null {
			v.SetString("")
		} else if n.Kind != yaml.ScalarNode {
			d.problem(path, n, "must be a string")
		} else {
			v.SetString(n.Value)
		}
	case reflect.Int:
		d.integer(n, v, path, null)
	case reflect.Bool:
		d.boolean(n, v, path, null)
	case reflect.Slice:
		d.list(n, v, path, null)
	default:
		d.problem(path, n, "cannot decode into %s", v.Type())
	}
}

// sectionDefaults returns a new value for an optional section that the
// file names: its presence enables the feature with the defaults.
func sectionDefaults(t reflect.Type) reflect.Value {
	switch t {
	case reflect.TypeFor[*EdgeConfig]():
		return reflect.ValueOf(DefaultEdge())
	case reflect.TypeFor[*DBConfig]():
		return reflect.ValueOf(DefaultDB())
	}
	return reflect.New(t.Elem())
}

func (d *decoder) mapping(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind != yaml.MappingNode {
		d.problem(path, n, "must be a mapping")
		return
	}
	fields := yamlFields(v.Type())
	seen := make(map[string]int)
	for i := 0; i+1 < len(n.Content); i += 2 {
		key, val := n.Content[i], n.Content[i+1]
		name := key.Value
		keyPath := joinPath(path, keyName(name))
		if key.Kind != yaml.ScalarNode {
			d.problem(path, key, "keys must be plain names")
			continue
		}
		if line, dup := seen[name]; dup {
			d.problem(keyPath, key, "duplicate key (first at line %d)", line)
			continue
		}
		seen[name] = key.Line
		idx, ok := fields[name]
		if !ok {
			d.problem(keyPath, key, "unknown key")
			continue
		}
		d.value(val, v.Field(idx), keyPath)
	}
}

// yamlFields maps the yaml names of a struct's fields to their index.
func yamlFields(t reflect.Type) map[string]int {
	m := make(map[string]int, t.NumField())
	for i := range t.NumField() {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("yaml"), ",")
		if name != "" && name != "-" {
			m[name] = i
		}
	}
	return m
}

// keyName is a key as problems name it: quoted unless it is a plain name,
// so that a problem stays one printable line whatever the file holds.
func keyName(name string) string {
	for _, c := range name {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return strconv.Quote(name)
		}
	}
	if name == "" {
		return `""`
	}
	return name
}

func joinPath(parent, key string) string {
	if parent == "" {
		return key
	}
	return parent + "." + key
}

func (d *decoder) integer(n *yaml.Node, v reflect.Value, path string, null bool) {
	if null {
		v.SetInt(0)
		return
	}
	var i int
	if n.Kind != yaml.ScalarNode || n.Tag != "!!int" || n.Decode(&i) != nil {
		d.problem(path, n, "must be an integer, got %s", describe(n))
		return
	}
	v.SetInt(int64(i))
}

func (d *decoder) boolean(n *yaml.Node, v reflect.Value, path string, null bool) {
	if null {
		v.SetBool(false)
		return
	}
	var b bool
	if n.Kind != yaml.ScalarNode || n.Tag != "!!bool" || n.Decode(&b) != nil {
		d.problem(path, n, "must be true or false, got %s", describe(n))
		return
	}
	v.SetBool(b)
}

func (d *decoder) list(n *yaml.Node, v reflect.Value, path string, null bool) {
	if null || n.Kind == yaml.SequenceNode && len(n.Content) == 0 {
		v.SetZero() // [] and null are both nil, so a config round-trips
		return
	}
	if n.Kind != yaml.SequenceNode {
		d.problem(path, n, "must be a list, got %s", describe(n))
		return
	}
	s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
	for i, el := range n.Content {
		d.value(el, s.Index(i), fmt.Sprintf("%s[%d]", path, i))
	}
	v.Set(s)
}

func (d *decoder) duration(n *yaml.Node, v reflect.Value, path string, null bool) {
	if null {
		v.SetInt(0)
		return
	}
	var dur Duration
	if n.Kind != yaml.ScalarNode || dur.UnmarshalText([]byte(n.Value)) != nil {
		d.problem(path, n, "invalid duration %s (use e.g. 30s, 5m, 1h30m)", describe(n))
		return
	}
	v.Set(reflect.ValueOf(dur))
}

func (d *decoder) rate(n *yaml.Node, v reflect.Value, path string, null bool) {
	if null {
		v.SetInt(0)
		return
	}
	var r ByteRate
	if n.Kind != yaml.ScalarNode || r.UnmarshalText([]byte(n.Value)) != nil {
		d.problem(path, n, "invalid rate %s (%s)", describe(n), rateSyntax)
		return
	}
	v.Set(reflect.ValueOf(r))
}

// describe names a node for an error message.
func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	}
	return fmt.Sprintf("%q", n.Value)
}
