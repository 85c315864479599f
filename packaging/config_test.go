// Package packaging_test checks the files of packaging/: the example
// config, the cloud-init custom-data and the systemd unit, and runs the
// nginx and PHP examples in a real nginx and PHP-FPM (nginx_test.go). (The
// .deb itself is built, installed and removed by packaging/test-deb.sh.)
package packaging_test

import (
	"errors"
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/nodeagent/nodeagent/internal/config"
)

// uncomment sets every setting of the example: a line starting with one
// "#" (not "##") loses it.
func uncomment(example string) string {
	var b strings.Builder
	for line := range strings.Lines(example) {
		if strings.HasPrefix(line, "#") && !strings.HasPrefix(line, "##") {
			line = line[1:]
		}
		b.WriteString(line)
	}
	return b.String()
}

// configKeys returns the dotted yaml keys of every field of t, recursively.
func configKeys(t reflect.Type, prefix string) []string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	var keys []string
	for f := range t.Fields() {
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "" || name == "-" {
			continue
		}
		key := prefix + name
		ft := f.Type
		for ft.Kind() == reflect.Pointer {
			ft = ft.Elem()
		}
		if ft.Kind() == reflect.Struct && ft.Name() != "Duration" {
			keys = append(keys, configKeys(ft, key+".")...)
		} else {
			keys = append(keys, key)
		}
	}
	return keys
}

// yamlKeys returns the dotted keys of the leaves of a YAML mapping.
func yamlKeys(n *yaml.Node, prefix string) []string {
	if n.Kind == yaml.DocumentNode {
		return yamlKeys(n.Content[0], prefix)
	}
	var keys []string
	for i := 0; i+1 < len(n.Content); i += 2 {
		key, val := prefix+n.Content[i].Value, n.Content[i+1]
		if val.Kind == yaml.MappingNode {
			keys = append(keys, yamlKeys(val, key+".")...)
		} else {
			keys = append(keys, key)
		}
	}
	return keys
}

func readExample(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("nodeagent.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestExampleConfigAsShipped: the conffile sets nothing; all it lacks to
// start is the role, a decision the package cannot make.
func TestExampleConfigAsShipped(t *testing.T) {
	_, err := config.Parse([]byte(readExample(t)))
	var ve *config.ValidationError
	if !errors.As(err, &ve) || len(ve.Problems) != 1 || !strings.HasPrefix(ve.Problems[0], "role:") {
		t.Fatalf("as shipped: %v, want only role: required", err)
	}
}

// TestExampleConfigCoversEveryKey: with every setting uncommented, the
// example parses and validates, and it names every key of config.Config.
func TestExampleConfigCoversEveryKey(t *testing.T) {
	full := uncomment(readExample(t))
	if _, err := config.Parse([]byte(full)); err != nil {
		t.Fatalf("example with every setting uncommented:\n%v", err)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal([]byte(full), &doc); err != nil {
		t.Fatal(err)
	}
	have := yamlKeys(&doc, "")
	for _, k := range configKeys(reflect.TypeFor[config.Config](), "") {
		if !slices.Contains(have, k) {
			t.Errorf("packaging/nodeagent.yaml does not show %s", k)
		}
	}
}
