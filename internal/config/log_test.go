package config_test

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/nodeagent/nodeagent/internal/config"
)

func TestNewLogger(t *testing.T) {
	var buf bytes.Buffer
	log := config.NewLogger(config.LogConfig{Level: "warn", Format: "json"}, &buf)
	log.Info("hidden")
	log.Warn("shown", "key", "v")
	var rec map[string]any
	if err := json.Unmarshal(buf.Bytes(), &rec); err != nil {
		t.Fatalf("want one JSON record, got %q: %v", buf.String(), err)
	}
	if rec["msg"] != "shown" || rec["key"] != "v" || rec["level"] != "WARN" {
		t.Errorf("record = %v", rec)
	}

	buf.Reset()
	log = config.NewLogger(config.LogConfig{Level: "debug", Format: "text"}, &buf)
	log.Debug("dbg", "key", "v")
	if got := buf.String(); !strings.Contains(got, "level=DEBUG msg=dbg key=v") {
		t.Errorf("text output = %q", got)
	}
}
