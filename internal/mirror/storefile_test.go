package mirror_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/nodeagent/nodeagent/internal/mirror"
)

// TestStoreReadFile: a kept revision's file reads back as published, even
// after the source changed; other paths and kinds are errors.
func TestStoreReadFile(t *testing.T) {
	src := t.TempDir()
	// Long enough to be stored compressed, as a real config.php is.
	rest := strings.Repeat("$CFG->setting = 'value';\n", 20)
	configA, configB := "<?php $CFG->dbhost = 'a';\n"+rest, "<?php $CFG->dbhost = 'b';\n"+rest
	stWrite(t, src, map[string]string{"config.php": configA, "lib/x.php": "x"})
	st := stOpen(t, mirror.StoreConfig{Source: src})
	first, _ := stPublish(t, st)
	stWrite(t, src, map[string]string{"config.php": configB})
	second, _ := stPublish(t, st)

	for id, want := range map[string]string{first.ID: configA, second.ID: configB} {
		got, err := st.ReadFile(id, "config.php", 1<<20)
		if err != nil || string(got) != want {
			t.Errorf("revision %s: %q %v, want %q", id[:8], got, err, want)
		}
	}
	e, ok, err := st.Entry(first.ID, "lib")
	if err != nil || !ok || e.Type != mirror.TypeDir {
		t.Errorf("entry lib: %+v %v %v", e, ok, err)
	}
	if _, ok, err := st.Entry(first.ID, "missing.php"); ok || err != nil {
		t.Errorf("missing entry: %v %v", ok, err)
	}
	if _, err := st.ReadFile(first.ID, "missing.php", 1<<20); !errors.Is(err, mirror.ErrNotFound) {
		t.Errorf("missing file: %v", err)
	}
	if _, err := st.ReadFile(first.ID, "lib", 1<<20); err == nil {
		t.Error("a directory read as a file")
	}
	if _, err := st.ReadFile(first.ID, "config.php", 4); err == nil {
		t.Error("a file over the limit was read")
	}
	if _, err := st.ReadFile("0000", "config.php", 1<<20); !errors.Is(err, mirror.ErrNotFound) {
		t.Errorf("unknown revision: %v", err)
	}
}
