package config_test

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nodeagent/nodeagent/internal/config"
)

// validWeb returns a valid web config with every optional section set.
func validWeb(tb testing.TB) *config.Config {
	tb.Helper()
	return MustParse(tb, webYAML+`
edge:
  domains: [moodle.example.com, "*.example.org"]
  trusted_proxies: [10.0.0.0/24, "2001:db8::/64"]
maintenance:
  allow: [10.0.0.0/8, "2001:db8::/32"]
db:
  driver: postgres
  host: db.example.com
  name: moodle
  user: moodle
  dump_dir: /moodle/backups
`)
}

func TestValidateValid(t *testing.T) {
	tests := map[string]func(c *config.Config){
		"web":                   func(c *config.Config) {},
		"controller":            func(c *config.Config) { c.Role = "controller"; c.Mirror.Source = "/src"; c.Mirror.Target = "" },
		"listen port 0 twice":   func(c *config.Config) { c.Cluster.Listen = "127.0.0.1:0"; c.API.Listen = "127.0.0.1:0" },
		"join without port":     func(c *config.Config) { c.Gossip.Join = []string{"controller.internal"} },
		"no plain http":         func(c *config.Config) { c.Edge.HTTP = "" },
		"max_lag zero":          func(c *config.Config) { c.Mirror.MaxLag = 0 },
		"cert files":            func(c *config.Config) { c.Edge.CertFile, c.Edge.KeyFile = "/c.crt", "/c.key" },
		"db socket dir":         func(c *config.Config) { c.DB.Host = "/var/run/postgresql" },
		"cron macro":            func(c *config.Config) { c.DB.Schedule = "@daily" },
		"exclude globs":         func(c *config.Config) { c.Mirror.Exclude = []string{"*.log", "cache/*", "config-[ab].php"} },
		"ipv6 listen":           func(c *config.Config) { c.API.Listen = "[::1]:7948" },
		"localhost listen":      func(c *config.Config) { c.API.Listen = "localhost:9999" },
		"edge on other address": func(c *config.Config) { c.Edge.HTTPS = "10.0.0.5:7948" },
		"audit off":             func(c *config.Config) { c.Mirror.Audit = config.AuditConfig{} },
		"audit repairs":         func(c *config.Config) { c.Mirror.Audit.Repair = true },
	}
	for name, mutate := range tests {
		t.Run(name, func(t *testing.T) {
			c := validWeb(t)
			mutate(c)
			if err := c.Validate(); err != nil {
				t.Errorf("Validate: %v", err)
			}
		})
	}
}

func TestValidateBad(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(c *config.Config)
		want   []string // each problem line starts with the first part and contains the rest
	}{
		{"role unset", func(c *config.Config) { c.Role = "" }, []string{"role: must be controller or web"}},
		{"role unknown", func(c *config.Config) { c.Role = "db" }, []string{`role: must be controller or web, got "db"`}},
		{"node empty", func(c *config.Config) { c.Node = "" }, []string{"node: required"}},
		{"node spaces", func(c *config.Config) { c.Node = "web 1" }, []string{"node: must be"}},
		{"data_dir relative", func(c *config.Config) { c.DataDir = "var/lib" }, []string{"data_dir: must be an absolute path"}},
		{"log.level", func(c *config.Config) { c.Log.Level = "verbose" }, []string{`log.level: must be debug or info or warn or error, got "verbose"`}},
		{"log.format", func(c *config.Config) { c.Log.Format = "xml" }, []string{`log.format: must be text or json`}},
		{"gossip.bind no port", func(c *config.Config) { c.Gossip.Bind = "0.0.0.0" }, []string{"gossip.bind: must be host:port"}},
		{"gossip.bind hostname", func(c *config.Config) { c.Gossip.Bind = "web1:7946" }, []string{"gossip.bind: host must be an IP address"}},
		{"gossip.bind port range", func(c *config.Config) { c.Gossip.Bind = "0.0.0.0:70000" }, []string{"gossip.bind: invalid port"}},
		{"gossip.bind empty", func(c *config.Config) { c.Gossip.Bind = "" }, []string{"gossip.bind: required"}},
		{"gossip.advertise port 0", func(c *config.Config) { c.Gossip.Advertise = "10.0.0.5:0" }, []string{"gossip.advertise: needs a non-zero port"}},
		{"gossip.join no host", func(c *config.Config) { c.Gossip.Join = []string{"10.0.0.4:7946", ":7946"} }, []string{"gossip.join[1]: needs a host"}},
		{"gossip.join bad host", func(c *config.Config) { c.Gossip.Join = []string{"bad_host!:7946"} }, []string{"gossip.join[0]: invalid host"}},
		{"gossip.key_file", func(c *config.Config) { c.Gossip.KeyFile = "" }, []string{"gossip.key_file: required"}},
		{"cluster.listen", func(c *config.Config) { c.Cluster.Listen = "7947" }, []string{"cluster.listen: must be host:port"}},
		{"api.listen bad host", func(c *config.Config) { c.API.Listen = "bad host!:7948" }, []string{`api.listen: invalid host "bad host!"`}},
		{"api.listen", func(c *config.Config) { c.API.Listen = "" }, []string{"api.listen: required"}},
		{"api.token_file", func(c *config.Config) { c.API.TokenFile = "" }, []string{"api.token_file: required"}},
		{"mirror.keep", func(c *config.Config) { c.Mirror.Keep = 0 }, []string{"mirror.keep: must be at least 1"}},
		{"mirror.max_lag", func(c *config.Config) { c.Mirror.MaxLag = -1 }, []string{"mirror.max_lag: must not be negative"}},
		{"web without target", func(c *config.Config) { c.Mirror.Target = "" }, []string{"mirror.target: required on a web node"}},
		{"target relative", func(c *config.Config) { c.Mirror.Target = "html" }, []string{"mirror.target: must be an absolute path"}},
		{"target root", func(c *config.Config) { c.Mirror.Target = "/" }, []string{"mirror.target: must not be /"}},
		{"controller without source", func(c *config.Config) { c.Role = "controller" }, []string{"mirror.source: required on a controller"}},
		{"source relative", func(c *config.Config) { c.Role = "controller"; c.Mirror.Source = "src" }, []string{"mirror.source: must be an absolute path"}},
		{"exclude bad glob", func(c *config.Config) { c.Mirror.Exclude = []string{"*.log", "[a-"} }, []string{`mirror.exclude[1]: invalid glob "[a-"`}},
		{"exclude absolute", func(c *config.Config) { c.Mirror.Exclude = []string{"/cache"} }, []string{"mirror.exclude[0]: must be relative"}},
		{"peer_upload.rate", func(c *config.Config) { c.Mirror.PeerUpload.Rate = -1 }, []string{"mirror.peer_upload.rate: must not be negative"}},
		{"peer_upload.concurrency", func(c *config.Config) { c.Mirror.PeerUpload.Concurrency = -1 }, []string{"mirror.peer_upload.concurrency: must be at least 0"}},
		{"after_switch empty argv0", func(c *config.Config) { c.Mirror.AfterSwitch = []string{"", "reload"} }, []string{"mirror.after_switch[0]: command name must not be empty"}},
		{"audit.check_interval", func(c *config.Config) { c.Mirror.Audit.CheckInterval = config.Duration(time.Millisecond) }, []string{"mirror.audit.check_interval: must be 0 (off) or at least 1s"}},
		{"audit.hash_period", func(c *config.Config) { c.Mirror.Audit.HashPeriod = config.Duration(time.Second) }, []string{"mirror.audit.hash_period: must be 0 (off) or at least 1m"}},
		{"edge.max_conns_per_client", func(c *config.Config) { c.Edge.MaxConnsPerClient = -1 }, []string{"edge.max_conns_per_client: must be at least 0"}},
		{"edge.https", func(c *config.Config) { c.Edge.HTTPS = "" }, []string{"edge.https: required"}},
		{"edge.http", func(c *config.Config) { c.Edge.HTTP = "80" }, []string{"edge.http: must be host:port"}},
		{"edge.backend no scheme", func(c *config.Config) { c.Edge.Backend = "127.0.0.1:8080" }, []string{"edge.backend: must be a http:// or https:// URL"}},
		{"edge.backend ftp", func(c *config.Config) { c.Edge.Backend = "ftp://127.0.0.1" }, []string{"edge.backend: must be a http:// or https:// URL"}},
		{"edge.backend empty", func(c *config.Config) { c.Edge.Backend = "" }, []string{"edge.backend: required"}},
		{"edge.domains", func(c *config.Config) { c.Edge.Domains = []string{"ok.example", "not a domain"} }, []string{`edge.domains[1]: invalid domain name "not a domain"`}},
		{"edge cert without key", func(c *config.Config) { c.Edge.CertFile = "/c.crt" }, []string{"edge.key_file: required with edge.cert_file"}},
		{"edge key without cert", func(c *config.Config) { c.Edge.KeyFile = "/c.key" }, []string{"edge.cert_file: required with edge.key_file"}},
		{"edge.acme.ca", func(c *config.Config) { c.Edge.ACME.CA = "http://ca/dir" }, []string{"edge.acme.ca: must be a https:// URL"}},
		{"edge.acme.email", func(c *config.Config) { c.Edge.ACME.Email = "admin" }, []string{"edge.acme.email: invalid email address"}},
		{"maintenance.allow", func(c *config.Config) { c.Maintenance.Allow = []string{"10.0.0.0/8", "10.0.0/8"} }, []string{`maintenance.allow[1]: invalid CIDR "10.0.0/8"`}},
		{"edge.trusted_proxies", func(c *config.Config) { c.Edge.TrustedProxies = []string{"10.0.0.0/24", "lb"} }, []string{`edge.trusted_proxies[1]: invalid CIDR "lb"`}},
		{"edge.trusted_proxies bare IP", func(c *config.Config) { c.Edge.TrustedProxies = []string{"10.0.0.4"} }, []string{`edge.trusted_proxies[0]: invalid CIDR "10.0.0.4"`}},
		{"maintenance.allow bare IP", func(c *config.Config) { c.Maintenance.Allow = []string{"10.0.0.1"} }, []string{`maintenance.allow[0]: invalid CIDR "10.0.0.1"`}},
		{"moodle_dataroot", func(c *config.Config) { c.Maintenance.MoodleDataroot = "moodledata" }, []string{"maintenance.moodle_dataroot: must be an absolute path"}},
		{"maintenance.allow too long", func(c *config.Config) { c.Maintenance.Allow = slices.Repeat([]string{"10.0.0.0/8"}, 33) }, []string{"maintenance.allow: at most 32 ranges, got 33"}},
		{"mirror.pinned", func(c *config.Config) { c.Mirror.Pinned = []string{"config.php", "/etc/passwd", "../x", "a/../b"} }, []string{
			`mirror.pinned[1]: must be a clean path relative to mirror.source, got "/etc/passwd"`,
			`mirror.pinned[2]: must be a clean path relative to mirror.source, got "../x"`,
			`mirror.pinned[3]: must be a clean path relative to mirror.source, got "a/../b"`}},
		{"deploy.run_as", func(c *config.Config) { c.Deploy.RunAs = "" }, []string{"deploy.run_as: required"}},
		{"deploy.run_as spaces", func(c *config.Config) { c.Deploy.RunAs = "www data" }, []string{`deploy.run_as: must be a user name, got "www data"`}},
		{"deploy.after_all", func(c *config.Config) { c.Deploy.AfterAll = []string{"", "x"} }, []string{"deploy.after_all[0]: command name must not be empty"}},
		{"deploy.min_web", func(c *config.Config) { c.Deploy.MinWeb = -1 }, []string{"deploy.min_web: must not be negative, got -1"}},
		{"db.driver", func(c *config.Config) { c.DB.Driver = "sqlite" }, []string{`db.driver: must be postgres or mysql, got "sqlite"`}},
		{"db.host", func(c *config.Config) { c.DB.Host = "" }, []string{"db.host: required"}},
		{"db.port", func(c *config.Config) { c.DB.Port = 70000 }, []string{"db.port: must be 1-65535"}},
		{"db.name db.user", func(c *config.Config) { c.DB.Name, c.DB.User = "", "" }, []string{"db.name: required", "db.user: required"}},
		{"db.dump_dir", func(c *config.Config) { c.DB.DumpDir = "backups" }, []string{"db.dump_dir: must be an absolute path"}},
		{"db.schedule", func(c *config.Config) { c.DB.Schedule = "61 2 * * *" }, []string{`db.schedule: minute field "61": 61 out of range 0-59`}},
		{"db.keep", func(c *config.Config) { c.DB.Keep = 0 }, []string{"db.keep: must be at least 1"}},
		{"many at once", func(c *config.Config) {
			c.Role = ""
			c.Mirror.Keep = -1
			c.Maintenance.Allow = []string{"x"}
		}, []string{"role: ", "mirror.keep: ", "maintenance.allow[0]: "}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := validWeb(t)
			tt.mutate(c)
			got := problems(t, c.Validate())
			if len(got) != len(tt.want) {
				t.Fatalf("got %d problems, want %d:\n%s", len(got), len(tt.want), strings.Join(got, "\n"))
			}
			for i, w := range tt.want {
				key, _, _ := strings.Cut(w, ": ")
				if !strings.HasPrefix(got[i], key+": ") || !strings.HasPrefix(got[i], w) {
					t.Errorf("problem %d = %q, want it to start with %q", i, got[i], w)
				}
			}
		})
	}
}

func TestValidatePortClash(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(c *config.Config)
		want   string // "" = no clash
	}{
		{"api on gossip port", func(c *config.Config) { c.API.Listen = "127.0.0.1:7946" },
			"api.listen: port 7946 clashes with gossip.bind (0.0.0.0:7946)"},
		{"cluster on api port, all interfaces", func(c *config.Config) { c.Cluster.Listen = ":7948" },
			"api.listen: port 7948 clashes with cluster.listen (:7948)"},
		{"edge http on https port", func(c *config.Config) { c.Edge.HTTP = "0.0.0.0:443" },
			"edge.http: port 443 clashes with edge.https (:443)"},
		{"edge on cluster port", func(c *config.Config) { c.Edge.HTTPS = "10.0.0.5:7947" },
			"edge.https: port 7947 clashes with cluster.listen (0.0.0.0:7947)"},
		{"localhost and 127.0.0.1", func(c *config.Config) { c.Cluster.Listen = "localhost:7948" },
			"api.listen: port 7948 clashes with cluster.listen (localhost:7948)"},
		{"ipv6 any", func(c *config.Config) { c.Gossip.Bind = "10.0.0.5:9000"; c.Cluster.Listen = "[::]:9000" },
			"cluster.listen: port 9000 clashes with gossip.bind (10.0.0.5:9000)"},
		{"same hostname", func(c *config.Config) { c.Cluster.Listen = "web1.internal:9000"; c.API.Listen = "WEB1.internal:9000" },
			"api.listen: port 9000 clashes with cluster.listen (web1.internal:9000)"},
		{"different loopback IPs", func(c *config.Config) { c.Cluster.Listen = "127.0.0.2:7948" }, ""},
		{"ipv4 and ipv6 loopback", func(c *config.Config) { c.Cluster.Listen = "[::1]:9000"; c.API.Listen = "127.0.0.1:9000" }, ""},
		{"different hostnames", func(c *config.Config) { c.Cluster.Listen = "a.internal:9000"; c.API.Listen = "b.internal:9000" }, ""},
		{"port 0", func(c *config.Config) { c.Cluster.Listen = ":0"; c.API.Listen = ":0"; c.Edge.HTTPS = ":0" }, ""},
		{"edge absent", func(c *config.Config) { c.Edge = nil; c.API.Listen = "127.0.0.1:443" }, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := validWeb(t)
			tt.mutate(c)
			err := c.Validate()
			if tt.want == "" {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if got := problems(t, err); len(got) != 1 || got[0] != tt.want {
				t.Errorf("problems = %q, want %q", got, tt.want)
			}
		})
	}
}
