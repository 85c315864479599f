// Package config owns nodeagent's configuration: the Config type and its
// defaults, strict YAML loading (unknown keys are errors naming the dotted
// key and line), validation that reports every problem on its own line, and
// reading the secrets the config points at (gossip key, API token, database
// password) without ever printing their content. The agent reads the config
// and the key file at start; `nodeagent dev` builds its configs in memory
// and generates its own gossip key, bypassing gossip.key_file.
//
// It touches nothing else: no listeners, no cluster state, no files other
// than the config file and the secret files named in it.
package config

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// DefaultPath is where `nodeagent run` looks for its config file unless
// -config says otherwise.
const DefaultPath = "/etc/nodeagent/nodeagent.yaml"

// Defaults named in the design.
const (
	DefaultDataDir      = "/var/lib/nodeagent"
	DefaultGossipBind   = "0.0.0.0:7946"
	DefaultClusterAddr  = "0.0.0.0:7947"
	DefaultAPIAddr      = "127.0.0.1:7948"
	DefaultKeyFile      = "/etc/nodeagent/gossip.key"
	DefaultTokenFile    = "/etc/nodeagent/api.token"
	DefaultDumpSchedule = "22 2 * * *"
	DefaultRunAs        = "www-data"
)

// Roles.
const (
	RoleController = "controller"
	RoleWeb        = "web"
)

// Config is the whole nodeagent configuration file.
type Config struct {
	Node    string `yaml:"node"`     // member name; default: hostname
	Role    string `yaml:"role"`     // controller | web; no default
	DataDir string `yaml:"data_dir"` // absolute

	Log     LogConfig     `yaml:"log"`
	Gossip  GossipConfig  `yaml:"gossip"`
	Cluster ClusterConfig `yaml:"cluster"`
	API     APIConfig     `yaml:"api"`
	Mirror  MirrorConfig  `yaml:"mirror"`

	// Edge is nil when the file has no edge section: no edge listener.
	// A present section (even an empty one) enables the edge with defaults.
	Edge *EdgeConfig `yaml:"edge,omitempty"`

	Maintenance MaintenanceConfig `yaml:"maintenance"`
	Deploy      DeployConfig      `yaml:"deploy"`

	// DB is nil when the file has no db section: no dumps. Only a controller
	// takes dumps; a web node ignores the section.
	DB *DBConfig `yaml:"db,omitempty"`
}

// LogConfig selects the slog handler built by NewLogger.
type LogConfig struct {
	Level  string `yaml:"level"`  // debug | info | warn | error
	Format string `yaml:"format"` // text | json
}

// GossipConfig configures memberlist.
type GossipConfig struct {
	Bind      string   `yaml:"bind"`      // IP:port
	Advertise string   `yaml:"advertise"` // host:port others reach; "" = derived from bind
	Join      []string `yaml:"join"`      // host[:port] of existing members
	// KeyFile holds the base64 AES-256 gossip key (see GossipKey). The `dev`
	// command generates its own key and bypasses this file.
	KeyFile string `yaml:"key_file"`
}

// ClusterConfig configures the agent-to-agent TLS API.
type ClusterConfig struct {
	Listen string `yaml:"listen"` // host:port
}

// APIConfig configures the local plain-HTTP API.
type APIConfig struct {
	Listen    string `yaml:"listen"`     // host:port
	TokenFile string `yaml:"token_file"` // bearer token for admin calls (see APIToken)
}

// MirrorConfig configures publishing (controller) and syncing (web).
type MirrorConfig struct {
	Source      string   `yaml:"source"`       // controller: tree to publish
	Target      string   `yaml:"target"`       // web: symlink the agent owns
	Keep        int      `yaml:"keep"`         // releases/revisions kept
	Exclude     []string `yaml:"exclude"`      // path.Match globs relative to source
	AfterSwitch []string `yaml:"after_switch"` // argv run after each switch
	MaxLag      Duration `yaml:"max_lag"`      // readiness tolerance when behind
	// Pinned are files (relative to source) that tie a code tree to one
	// site, such as config.php with the database settings: a rollback to
	// a revision where one differs is refused unless forced.
	Pinned []string `yaml:"pinned"`
	// PeerUpload bounds what a web node sends to the peers that sync from
	// it.
	PeerUpload PeerUploadConfig `yaml:"peer_upload"`
	// Audit configures the background integrity audit of the served
	// release (web).
	Audit AuditConfig `yaml:"audit"`
}

// AuditConfig configures the integrity audit of a web node's served
// release against its manifest.
type AuditConfig struct {
	// CheckInterval: how often every entry is compared with what the
	// agent placed (type, owner, mode, inode, mtime, size; extras), without
	// reading content; 0 = never.
	CheckInterval Duration `yaml:"check_interval"`
	// HashPeriod: every file's SHA-256 is checked once per period, the
	// work spread evenly over it; 0 = never.
	HashPeriod Duration `yaml:"hash_period"`
	// Repair: put back by itself what an audit finds.
	Repair bool `yaml:"repair"`
}

// PeerUploadConfig bounds a web node's serving of content to its peers, so
// that it never starves the web server.
type PeerUploadConfig struct {
	Rate        ByteRate `yaml:"rate"`        // to all peers together; 0 = no bound
	Concurrency int      `yaml:"concurrency"` // requests served at once; 0 = serve no content to peers
}

// Peer upload defaults: 400 Mbit/s, well under a 1 Gbit/s NIC, and a few
// requests at once (about a tenth of a core of TLS and hashing).
const (
	DefaultPeerUploadRate        = 50 * ByteRate(1e6)
	DefaultPeerUploadConcurrency = 4
)

// EdgeConfig configures the TLS-terminating reverse proxy on web nodes.
type EdgeConfig struct {
	HTTPS           string     `yaml:"https"`   // host:port
	HTTP            string     `yaml:"http"`    // host:port; "" = no plain-HTTP listener
	Backend         string     `yaml:"backend"` // http(s) URL of the local web server
	Domains         []string   `yaml:"domains"`
	CertFile        string     `yaml:"cert_file"`
	KeyFile         string     `yaml:"key_file"`
	ACME            ACMEConfig `yaml:"acme"`
	MaintenancePage string     `yaml:"maintenance_page"` // HTML file; "" = built-in page
	// TrustedProxies are CIDRs of peers (e.g. the load balancer) whose
	// X-Forwarded-* headers the edge believes.
	TrustedProxies []string `yaml:"trusted_proxies"`
	// MaxConnsPerClient bounds the connections one client address holds
	// open; 0 = no bound (clients behind one NAT share an address).
	// Trusted proxies are never bounded.
	MaxConnsPerClient int `yaml:"max_conns_per_client"`
}

// ACMEConfig configures certificate issuance through ACME.
type ACMEConfig struct {
	Email  string `yaml:"email"`
	CA     string `yaml:"ca"`      // directory URL; "" = the library default
	CARoot string `yaml:"ca_root"` // PEM file: root for the ACME server's own HTTPS
}

// MaintenanceConfig configures cluster-wide maintenance behaviour.
type MaintenanceConfig struct {
	MoodleDataroot string `yaml:"moodle_dataroot"` // controller: write climaintenance.html here
	// Allow are CIDRs every web node's edge lets through during site
	// maintenance, wherever the key is set: each node announces its list
	// in the cluster state and the edges take them all.
	Allow []string `yaml:"allow"`
}

// DeployConfig configures the controller's procedures (deploy, the
// database move, rollbacks).
type DeployConfig struct {
	// RunAs is the user that runs commands in the code tree (deploy -run,
	// after_all): the web server's, so files they create belong to it.
	RunAs string `yaml:"run_as"`
	// AfterAll is an argv run once on the controller, in the source tree,
	// after every web node serves a new revision (deploy, publish,
	// rollback, database move), e.g. [php, admin/cli/purge_caches.php].
	AfterAll []string `yaml:"after_all"`
	// MinWeb is the fewest web nodes that must serve a new revision before
	// a procedure goes on (besides every web node seen in the last hour).
	MinWeb int `yaml:"min_web"`
}

// DBConfig configures nightly database dumps on the controller.
type DBConfig struct {
	Driver       string `yaml:"driver"` // postgres | mysql
	Host         string `yaml:"host"`
	Port         int    `yaml:"port"` // 0 in the file = the driver's default
	Name         string `yaml:"name"`
	User         string `yaml:"user"`
	PasswordFile string `yaml:"password_file"` // "" = no password (e.g. peer auth)
	DumpDir      string `yaml:"dump_dir"`
	Schedule     string `yaml:"schedule"` // 5-field cron, local time (see ParseSchedule)
	Keep         int    `yaml:"keep"`
}

// Default returns a Config holding every default of the design. Role has
// no default. Node is the hostname ("" if it cannot be read, which Validate
// reports). Edge and DB are nil; see DefaultEdge and DefaultDB.
func Default() *Config {
	host, _ := os.Hostname()
	return &Config{
		Node:    host,
		DataDir: DefaultDataDir,
		Log:     LogConfig{Level: "info", Format: "text"},
		Gossip:  GossipConfig{Bind: DefaultGossipBind, KeyFile: DefaultKeyFile},
		Cluster: ClusterConfig{Listen: DefaultClusterAddr},
		API:     APIConfig{Listen: DefaultAPIAddr, TokenFile: DefaultTokenFile},
		Mirror: MirrorConfig{Keep: 5, MaxLag: Duration(60 * time.Second), Pinned: []string{"config.php"},
			PeerUpload: PeerUploadConfig{Rate: DefaultPeerUploadRate, Concurrency: DefaultPeerUploadConcurrency},
			Audit:      AuditConfig{CheckInterval: Duration(time.Minute), HashPeriod: Duration(24 * time.Hour)}},
		Deploy: DeployConfig{RunAs: DefaultRunAs, MinWeb: 1},
	}
}

// DefaultEdge returns the edge defaults applied when the file has an edge
// section.
func DefaultEdge() *EdgeConfig {
	return &EdgeConfig{HTTPS: ":443", HTTP: ":80", Backend: "http://127.0.0.1:8080"}
}

// DefaultDB returns the db defaults applied when the file has a db section.
// Port stays 0 until the driver is known (see DefaultDBPort).
func DefaultDB() *DBConfig {
	return &DBConfig{Schedule: DefaultDumpSchedule, Keep: 7}
}

// DefaultDBPort returns the usual port of a driver, or 0 if it is unknown.
func DefaultDBPort(driver string) int {
	switch driver {
	case "postgres":
		return 5432
	case "mysql":
		return 3306
	}
	return 0
}

// Parse applies the file in data over Default(), rejecting unknown keys,
// then validates the result. Every problem is reported, each on one line
// that starts with its dotted key; the error is then a *ValidationError.
// A YAML syntax error is returned as is.
func Parse(data []byte) (*Config, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, err // "yaml: line N: ..."
	}
	c := Default()
	if problems := decode(&doc, c); len(problems) > 0 {
		return nil, &ValidationError{Problems: problems}
	}
	c.applyDerivedDefaults()
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return c, nil
}

// Load reads the config file at path and Parses it. Every error starts with
// the path; a *ValidationError carries it in Path so each line does too.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	c, err := Parse(data)
	if err != nil {
		var ve *ValidationError
		if errors.As(err, &ve) {
			ve.Path = path
			return nil, ve
		}
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

// applyDerivedDefaults fills defaults that depend on other values.
func (c *Config) applyDerivedDefaults() {
	if c.DB != nil && c.DB.Port == 0 {
		c.DB.Port = DefaultDBPort(c.DB.Driver)
	}
}

// ValidationError lists every problem found in a config, one line each,
// each line starting with the dotted key it is about.
type ValidationError struct {
	Path     string // config file, when known; prefixed to every line
	Problems []string
}

func (e *ValidationError) Error() string {
	if e.Path == "" {
		return strings.Join(e.Problems, "\n")
	}
	lines := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		lines[i] = e.Path + ": " + p
	}
	return strings.Join(lines, "\n")
}
