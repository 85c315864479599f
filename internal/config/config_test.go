package config_test

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/nodeagent/nodeagent/internal/config"
)

// webYAML is a small valid web config.
const webYAML = `
node: web-1
role: web
gossip:
  join: [10.0.0.4:7946]
mirror:
  target: /var/www/html/moodle
`

func MustParse(tb testing.TB, data string) *config.Config {
	tb.Helper()
	c, err := config.Parse([]byte(data))
	if err != nil {
		tb.Fatalf("Parse: %v", err)
	}
	return c
}

// problems returns the lines of a *config.ValidationError.
func problems(tb testing.TB, err error) []string {
	tb.Helper()
	var ve *config.ValidationError
	if !errors.As(err, &ve) {
		tb.Fatalf("want *config.ValidationError, got %T: %v", err, err)
	}
	if got := strings.Join(ve.Problems, "\n"); got != ve.Error() {
		tb.Fatalf("Error() = %q, want lines joined: %q", ve.Error(), got)
	}
	return ve.Problems
}

func TestLoadDesignExample(t *testing.T) {
	c, err := config.Load("testdata/design.yaml")
	if err != nil {
		t.Fatal(err)
	}
	want := &config.Config{
		Node:    "web-0",
		Role:    "web",
		DataDir: "/var/lib/nodeagent",
		Log:     config.LogConfig{Level: "info", Format: "text"},
		Gossip: config.GossipConfig{
			Bind:    "0.0.0.0:7946",
			Join:    []string{"10.0.0.4:7946"},
			KeyFile: "/etc/nodeagent/gossip.key",
		},
		Cluster: config.ClusterConfig{Listen: "0.0.0.0:7947"},
		API:     config.APIConfig{Listen: "127.0.0.1:7948", TokenFile: "/etc/nodeagent/api.token"},
		Mirror: config.MirrorConfig{
			Source: "/moodle/html/moodle",
			Target: "/var/www/html/moodle",
			Keep:   5,
			MaxLag: config.Duration(time.Minute),
			Pinned: []string{"config.php"},
			PeerUpload: config.PeerUploadConfig{Rate: config.DefaultPeerUploadRate,
				Concurrency: config.DefaultPeerUploadConcurrency},
			Audit: config.AuditConfig{CheckInterval: config.Duration(time.Minute), HashPeriod: config.Duration(24 * time.Hour)},
		},
		Deploy: config.DeployConfig{RunAs: "www-data", MinWeb: 1},
		Edge: &config.EdgeConfig{
			HTTPS:   ":443",
			HTTP:    ":80",
			Backend: "http://127.0.0.1:8080",
			Domains: []string{"moodle.example.com"},
		},
		DB: &config.DBConfig{
			Driver:       "postgres",
			Host:         "db.example.com",
			Port:         5432,
			Name:         "moodle",
			User:         "moodle",
			PasswordFile: "/etc/nodeagent/db.password",
			DumpDir:      "/moodle/backups",
			Schedule:     "22 2 * * *",
			Keep:         7,
		},
	}
	if !reflect.DeepEqual(c, want) {
		t.Errorf("got  %+v\nwant %+v", c, want)
	}
}

func TestMarshalRoundTrip(t *testing.T) {
	for _, name := range []string{"design", "minimal"} {
		t.Run(name, func(t *testing.T) {
			c := MustParse(t, webYAML)
			if name == "design" {
				var err error
				if c, err = config.Load("testdata/design.yaml"); err != nil {
					t.Fatal(err)
				}
			}
			out, err := yaml.Marshal(c)
			if err != nil {
				t.Fatal(err)
			}
			back := MustParse(t, string(out))
			if !reflect.DeepEqual(back, c) {
				t.Errorf("round trip changed the config:\n%s", out)
			}
		})
	}
}

func TestDefaults(t *testing.T) {
	c := MustParse(t, "role: controller\nmirror: {source: /moodle/html/moodle}\n")
	host, _ := os.Hostname()
	if c.Node != host {
		t.Errorf("node = %q, want hostname %q", c.Node, host)
	}
	want := config.Default()
	want.Role = "controller"
	want.Mirror.Source = "/moodle/html/moodle"
	if !reflect.DeepEqual(c, want) {
		t.Errorf("got  %+v\nwant %+v", c, want)
	}
	checks := map[string][2]any{
		"data_dir":                       {c.DataDir, "/var/lib/nodeagent"},
		"log.level":                      {c.Log.Level, "info"},
		"log.format":                     {c.Log.Format, "text"},
		"gossip.bind":                    {c.Gossip.Bind, "0.0.0.0:7946"},
		"gossip.key_file":                {c.Gossip.KeyFile, "/etc/nodeagent/gossip.key"},
		"cluster.listen":                 {c.Cluster.Listen, "0.0.0.0:7947"},
		"api.listen":                     {c.API.Listen, "127.0.0.1:7948"},
		"api.token_file":                 {c.API.TokenFile, "/etc/nodeagent/api.token"},
		"mirror.keep":                    {c.Mirror.Keep, 5},
		"mirror.max_lag":                 {c.Mirror.MaxLag.Std(), time.Minute},
		"mirror.peer_upload.rate":        {c.Mirror.PeerUpload.Rate, config.ByteRate(50_000_000)},
		"mirror.peer_upload.concurrency": {c.Mirror.PeerUpload.Concurrency, 4},
		"edge":                           {c.Edge == nil, true},
		"db":                             {c.DB == nil, true},
	}
	for key, gw := range checks {
		if gw[0] != gw[1] {
			t.Errorf("%s = %v, want %v", key, gw[0], gw[1])
		}
	}
	if config.DefaultPath != "/etc/nodeagent/nodeagent.yaml" {
		t.Errorf("DefaultPath = %q", config.DefaultPath)
	}
}

func TestSectionDefaults(t *testing.T) {
	wantEdge := &config.EdgeConfig{HTTPS: ":443", HTTP: ":80", Backend: "http://127.0.0.1:8080"}
	for _, text := range []string{"edge: {}\n", "edge:\n"} {
		if c := MustParse(t, webYAML+text); !reflect.DeepEqual(c.Edge, wantEdge) {
			t.Errorf("%q: edge = %+v, want %+v", text, c.Edge, wantEdge)
		}
	}
	// An explicit empty http turns the plain-HTTP listener off; other
	// defaults stay.
	c := MustParse(t, webYAML+"edge: {http: \"\", backend: \"http://127.0.0.1:81\"}\n")
	if c.Edge.HTTP != "" || c.Edge.HTTPS != ":443" || c.Edge.Backend != "http://127.0.0.1:81" {
		t.Errorf("edge = %+v", c.Edge)
	}

	const db = "db: {driver: %s, host: db, name: moodle, user: moodle, dump_dir: /backups}\n"
	for driver, port := range map[string]int{"postgres": 5432, "mysql": 3306} {
		c := MustParse(t, webYAML+strings.Replace(db, "%s", driver, 1))
		want := &config.DBConfig{Driver: driver, Host: "db", Port: port, Name: "moodle", User: "moodle",
			DumpDir: "/backups", Schedule: "22 2 * * *", Keep: 7}
		if !reflect.DeepEqual(c.DB, want) {
			t.Errorf("%s: db = %+v, want %+v", driver, c.DB, want)
		}
	}
	c = MustParse(t, webYAML+"db: {driver: mysql, port: 3307, host: db, name: m, user: m, dump_dir: /b, keep: 3}\n")
	if c.DB.Port != 3307 || c.DB.Keep != 3 {
		t.Errorf("explicit values overridden: %+v", c.DB)
	}
}

func TestParseDecodeErrors(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want []string // exact problem lines
	}{
		{"unknown nested key", "role: web\nmirror:\n  target: /t\n  kep: 12\n",
			[]string{"mirror.kep: unknown key (line 4)"}},
		{"unknown top-level key", "nodee: x\nrole: web\n",
			[]string{"nodee: unknown key (line 1)"}},
		{"unknown deep key", "edge:\n  acme:\n    emial: a@b.c\n",
			[]string{"edge.acme.emial: unknown key (line 3)"}},
		{"all unknown keys", "log: {lvl: debug}\ndb: {drvier: mysql}\n",
			[]string{"log.lvl: unknown key (line 1)", "db.drvier: unknown key (line 2)"}},
		{"duplicate key", "role: web\nrole: controller\n",
			[]string{"role: duplicate key (first at line 1) (line 2)"}},
		{"int", "mirror: {keep: five}\n",
			[]string{`mirror.keep: must be an integer, got "five" (line 1)`}},
		{"quoted int", "db:\n  port: \"5432\"\n",
			[]string{`db.port: must be an integer, got "5432" (line 2)`}},
		{"duration without unit", "mirror:\n  max_lag: 60\n",
			[]string{`mirror.max_lag: invalid duration "60" (use e.g. 30s, 5m, 1h30m) (line 2)`}},
		{"rate without unit", "mirror:\n  peer_upload: {rate: 50}\n",
			[]string{`mirror.peer_upload.rate: invalid rate "50" (use e.g. 50MB/s, 400Mbit/s, 20MiB/s, or 0 for no bound) (line 2)`}},
		{"bool", "mirror:\n  audit: {repair: yes please}\n",
			[]string{`mirror.audit.repair: must be true or false, got "yes please" (line 2)`}},
		{"list", "gossip:\n  join: 10.0.0.4:7946\n",
			[]string{`gossip.join: must be a list, got "10.0.0.4:7946" (line 2)`}},
		{"list element", "maintenance:\n  allow: [10.0.0.0/8, [x]]\n",
			[]string{"maintenance.allow[1]: must be a string (line 2)"}},
		{"section", "log: info\n",
			[]string{"log: must be a mapping (line 1)"}},
		{"top level", "- a\n",
			[]string{"config: must be a mapping (line 1)"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := config.Parse([]byte(tt.yaml))
			if got := problems(t, err); !slices.Equal(got, tt.want) {
				t.Errorf("problems:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
		})
	}
}

func TestParseEmptyAndNull(t *testing.T) {
	_, err := config.Parse(nil)
	if got := problems(t, err); len(got) != 1 || got[0] != "role: must be controller or web (not set)" {
		t.Errorf("empty file: %q", got)
	}
	// A null section keeps its defaults; a null value is the zero value.
	c := MustParse(t, "role: web\nlog:\nmirror: {target: /t, exclude: ~}\ngossip: {advertise: }\n")
	if c.Log.Level != "info" || c.Log.Format != "text" || c.Mirror.Exclude != nil || c.Gossip.Advertise != "" {
		t.Errorf("got %+v", c)
	}
	_, err = config.Parse([]byte("role: web\nmirror: {target: /t, keep: ~}\n"))
	if got := problems(t, err); len(got) != 1 || !strings.HasPrefix(got[0], "mirror.keep: must be at least 1") {
		t.Errorf("null keep: %q", got)
	}
}

func TestParseSyntaxError(t *testing.T) {
	_, err := config.Parse([]byte("role: [web\n"))
	var ve *config.ValidationError
	if err == nil || errors.As(err, &ve) {
		t.Fatalf("want a YAML syntax error, got %v", err)
	}
}

func TestParseAliases(t *testing.T) {
	c := MustParse(t, "role: web\nmirror: {target: &t /srv/moodle}\nmaintenance: {moodle_dataroot: *t}\n")
	if c.Maintenance.MoodleDataroot != "/srv/moodle" {
		t.Errorf("moodle_dataroot = %q", c.Maintenance.MoodleDataroot)
	}
}

func TestLoadErrorsStartWithPath(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "missing.yaml")
	_, err := config.Load(missing)
	if err == nil || !strings.HasPrefix(err.Error(), missing+": ") || !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}

	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("role: db\nmirror: {keep: 0}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = config.Load(bad)
	var ve *config.ValidationError
	if !errors.As(err, &ve) || len(ve.Problems) != 2 {
		t.Fatalf("want 2 problems, got %v", err)
	}
	for _, line := range strings.Split(err.Error(), "\n") {
		if !strings.HasPrefix(line, bad+": ") {
			t.Errorf("line %q does not start with the path", line)
		}
	}

	syntax := filepath.Join(dir, "syntax.yaml")
	if err := os.WriteFile(syntax, []byte("role: [web\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := config.Load(syntax); err == nil || !strings.HasPrefix(err.Error(), syntax+": ") {
		t.Errorf("syntax error: %v", err)
	}
}

func TestDurationText(t *testing.T) {
	var d config.Duration
	if err := d.UnmarshalText([]byte("1m30s")); err != nil || d.Std() != 90*time.Second {
		t.Fatalf("UnmarshalText = %v, %v", d, err)
	}
	if b, _ := d.MarshalText(); string(b) != "1m30s" {
		t.Errorf("MarshalText = %q", b)
	}
	if err := d.UnmarshalText([]byte("soon")); err == nil {
		t.Error("UnmarshalText accepted \"soon\"")
	}
	// yaml.v3 used directly also understands Duration.
	var s struct {
		Lag config.Duration `yaml:"lag"`
	}
	if err := yaml.Unmarshal([]byte("lag: 2h\n"), &s); err != nil || s.Lag.Std() != 2*time.Hour {
		t.Errorf("yaml.Unmarshal = %v, %v", s.Lag, err)
	}
	if err := yaml.Unmarshal([]byte("lag: 5\n"), &s); err == nil {
		t.Error("yaml.Unmarshal accepted a duration without unit")
	}
}

func TestByteRate(t *testing.T) {
	good := map[string]config.ByteRate{
		"50MB/s": 50_000_000, "50MB": 50_000_000, "400Mbit/s": 50_000_000, "1Gbit/s": 125_000_000,
		"20MiB/s": 20 << 20, "512KiB/s": 512 << 10, "1.5GB/s": 1_500_000_000, "800kbit/s": 100_000,
		"100 kB/s": 100_000, "7B/s": 7, "0": 0, "0MB/s": 0,
	}
	for text, want := range good {
		got, err := config.ParseByteRate(text)
		if err != nil || got != want {
			t.Errorf("ParseByteRate(%q) = %d, %v; want %d", text, got, err, want)
		}
		back, err := config.ParseByteRate(got.String())
		if err != nil || back != got {
			t.Errorf("%q: String() %q reads back as %d, %v", text, got.String(), back, err)
		}
	}
	for _, text := range []string{"", "50", "fast", "-1MB/s", "5 MB/h", "1e30GB/s", "NaNMB/s", "MB/s"} {
		if got, err := config.ParseByteRate(text); err == nil {
			t.Errorf("ParseByteRate(%q) = %d; want an error", text, got)
		}
	}
	c := MustParse(t, webYAML+"  peer_upload: {rate: 400Mbit/s, concurrency: 2}\n")
	if pu := c.Mirror.PeerUpload; pu.Rate != 50_000_000 || pu.Concurrency != 2 {
		t.Errorf("peer_upload = %+v", pu)
	}
	var s struct {
		Rate config.ByteRate `yaml:"rate"`
	}
	if err := yaml.Unmarshal([]byte("rate: 2MiB/s\n"), &s); err != nil || s.Rate != 2<<20 {
		t.Errorf("yaml.Unmarshal = %v, %v", s.Rate, err)
	}
}
