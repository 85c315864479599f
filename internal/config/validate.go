package config

import (
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"time"
	"unicode"
)

// Validate checks the whole config without touching the disk and returns
// a *ValidationError listing every problem, one line each, each starting
// with the dotted key, or nil. Secret files are checked when read (see
// GossipKey, APIToken).
func (c *Config) Validate() error {
	v := &validator{}
	v.top(c)
	v.gossip(&c.Gossip)
	v.listen("cluster.listen", c.Cluster.Listen)
	v.listen("api.listen", c.API.Listen)
	v.required("api.token_file", c.API.TokenFile)
	v.mirror(c.Role, &c.Mirror)
	if c.Edge != nil {
		v.edge(c.Edge)
	}
	v.maintenance(&c.Maintenance)
	v.deploy(&c.Deploy)
	if c.DB != nil {
		v.db(c.DB)
	}
	v.portClashes(c)
	if len(v.problems) > 0 {
		return &ValidationError{Problems: v.problems}
	}
	return nil
}

type validator struct {
	problems []string
}

func (v *validator) addf(key, format string, args ...any) {
	v.problems = append(v.problems, key+": "+fmt.Sprintf(format, args...))
}

func (v *validator) required(key, value string) bool {
	if value == "" {
		v.addf(key, "required")
		return false
	}
	return true
}

func (v *validator) absPath(key, value string) {
	if value != "" && !filepath.IsAbs(value) {
		v.addf(key, "must be an absolute path, got %q", value)
	}
}

func (v *validator) oneOf(key, value string, allowed ...string) {
	for _, a := range allowed {
		if value == a {
			return
		}
	}
	v.addf(key, "must be %s, got %q", strings.Join(allowed, " or "), value)
}

func (v *validator) atLeast(key string, n, min int) {
	if n < min {
		v.addf(key, "must be at least %d, got %d", min, n)
	}
}

func (v *validator) top(c *Config) {
	switch {
	case c.Node == "":
		v.addf("node", "required (the hostname could not be read)")
	case len(c.Node) > 128 || strings.IndexFunc(c.Node, unicode.IsSpace) >= 0 || !isPrint(c.Node):
		v.addf("node", "must be at most 128 printable characters without spaces, got %q", c.Node)
	}
	if c.Role == "" {
		v.addf("role", "must be controller or web (not set)")
	} else {
		v.oneOf("role", c.Role, RoleController, RoleWeb)
	}
	if v.required("data_dir", c.DataDir) {
		v.absPath("data_dir", c.DataDir)
	}
	v.oneOf("log.level", c.Log.Level, "debug", "info", "warn", "error")
	v.oneOf("log.format", c.Log.Format, "text", "json")
}

func isPrint(s string) bool {
	return strings.IndexFunc(s, func(r rune) bool { return !unicode.IsPrint(r) }) < 0
}

func (v *validator) gossip(g *GossipConfig) {
	if host, _, ok := v.hostPort("gossip.bind", g.Bind, true); ok {
		if _, err := netip.ParseAddr(host); err != nil {
			v.addf("gossip.bind", "host must be an IP address (e.g. 0.0.0.0:7946), got %q", g.Bind)
		}
	}
	if g.Advertise != "" {
		if host, port, ok := v.hostPort("gossip.advertise", g.Advertise, false); ok {
			v.reachable("gossip.advertise", g.Advertise, host, port)
		}
	}
	for i, addr := range g.Join {
		key := fmt.Sprintf("gossip.join[%d]", i)
		if _, _, err := net.SplitHostPort(addr); err != nil {
			addr = net.JoinHostPort(addr, "7946") // host alone: the default port
		}
		if host, port, ok := v.hostPort(key, addr, false); ok {
			v.reachable(key, addr, host, port)
		}
	}
	v.required("gossip.key_file", g.KeyFile)
}

// reachable checks an address other nodes dial: a host and a non-zero port.
func (v *validator) reachable(key, addr, host string, port int) {
	switch {
	case host == "":
		v.addf(key, "needs a host, got %q", addr)
	case port == 0:
		v.addf(key, "needs a non-zero port, got %q", addr)
	case !validHost(host):
		v.addf(key, "invalid host %q", host)
	}
}

// listen checks a listen address: host:port with an empty host (all
// interfaces), an IP or a hostname, and port 0-65535 (0: any free port).
func (v *validator) listen(key, addr string) {
	if host, _, ok := v.hostPort(key, addr, true); ok && host != "" && !validHost(host) {
		v.addf(key, "invalid host %q", host)
	}
}

func (v *validator) hostPort(key, addr string, required bool) (host string, port int, ok bool) {
	if addr == "" {
		if required {
			v.addf(key, "required (host:port)")
		}
		return "", 0, false
	}
	host, portText, err := net.SplitHostPort(addr)
	if err != nil {
		v.addf(key, "must be host:port, got %q", addr)
		return "", 0, false
	}
	port, err = strconv.Atoi(portText)
	if err != nil || port < 0 || port > 65535 {
		v.addf(key, "invalid port %q (want 0-65535)", portText)
		return "", 0, false
	}
	return host, port, true
}

func (v *validator) mirror(role string, m *MirrorConfig) {
	v.atLeast("mirror.keep", m.Keep, 1)
	if m.MaxLag < 0 {
		v.addf("mirror.max_lag", "must not be negative, got %s", m.MaxLag)
	}
	switch {
	case role == RoleController && m.Source == "":
		v.addf("mirror.source", "required on a controller")
	case role == RoleWeb && m.Target == "":
		v.addf("mirror.target", "required on a web node")
	}
	v.absPath("mirror.source", m.Source)
	v.absPath("mirror.target", m.Target)
	if m.Target != "" && filepath.Clean(m.Target) == "/" {
		v.addf("mirror.target", "must not be /")
	}
	for i, glob := range m.Exclude {
		key := fmt.Sprintf("mirror.exclude[%d]", i)
		if _, err := path.Match(glob, ""); err != nil || glob == "" {
			v.addf(key, "invalid glob %q", glob)
		} else if strings.HasPrefix(glob, "/") {
			v.addf(key, "must be relative to mirror.source, got %q", glob)
		}
	}
	if len(m.AfterSwitch) > 0 && m.AfterSwitch[0] == "" {
		v.addf("mirror.after_switch[0]", "command name must not be empty")
	}
	if a := m.Audit.CheckInterval; a != 0 && a.Std() < time.Second {
		v.addf("mirror.audit.check_interval", "must be 0 (off) or at least 1s, got %s", a)
	}
	if h := m.Audit.HashPeriod; h != 0 && h.Std() < time.Minute {
		v.addf("mirror.audit.hash_period", "must be 0 (off) or at least 1m, got %s", h)
	}
	for i, p := range m.Pinned {
		key := fmt.Sprintf("mirror.pinned[%d]", i)
		if p == "" || strings.HasPrefix(p, "/") || path.Clean(p) != p || p == "." || strings.HasPrefix(p, "../") || p == ".." {
			v.addf(key, "must be a clean path relative to mirror.source, got %q", p)
		}
	}
	if m.PeerUpload.Rate < 0 {
		v.addf("mirror.peer_upload.rate", "must not be negative")
	}
	v.atLeast("mirror.peer_upload.concurrency", m.PeerUpload.Concurrency, 0)
}

func (v *validator) deploy(d *DeployConfig) {
	if d.RunAs == "" {
		v.addf("deploy.run_as", "required: a user name (root only when meant)")
	} else if strings.IndexFunc(d.RunAs, unicode.IsSpace) >= 0 || strings.Contains(d.RunAs, ":") {
		v.addf("deploy.run_as", "must be a user name, got %q", d.RunAs)
	}
	if len(d.AfterAll) > 0 && d.AfterAll[0] == "" {
		v.addf("deploy.after_all[0]", "command name must not be empty")
	}
	if d.MinWeb < 0 {
		v.addf("deploy.min_web", "must not be negative, got %d", d.MinWeb)
	}
}

func (v *validator) edge(e *EdgeConfig) {
	v.listen("edge.https", e.HTTPS)
	if e.HTTP != "" {
		v.listen("edge.http", e.HTTP)
	}
	if v.required("edge.backend", e.Backend) {
		v.url("edge.backend", e.Backend, "http", "https")
	}
	for i, d := range e.Domains {
		name := strings.TrimPrefix(d, "*.")
		if !validHost(name) {
			v.addf(fmt.Sprintf("edge.domains[%d]", i), "invalid domain name %q", d)
		}
	}
	switch {
	case e.CertFile != "" && e.KeyFile == "":
		v.addf("edge.key_file", "required with edge.cert_file")
	case e.CertFile == "" && e.KeyFile != "":
		v.addf("edge.cert_file", "required with edge.key_file")
	}
	if e.ACME.CA != "" {
		v.url("edge.acme.ca", e.ACME.CA, "https")
	}
	if e.ACME.Email != "" && !strings.Contains(e.ACME.Email, "@") {
		v.addf("edge.acme.email", "invalid email address %q", e.ACME.Email)
	}
	v.cidrs("edge.trusted_proxies", e.TrustedProxies)
	v.atLeast("edge.max_conns_per_client", e.MaxConnsPerClient, 0)
}

func (v *validator) url(key, raw string, schemes ...string) {
	u, err := url.Parse(raw)
	if err == nil && u.Host != "" {
		for _, s := range schemes {
			if u.Scheme == s {
				return
			}
		}
	}
	v.addf(key, "must be a %s:// URL with a host, got %q", strings.Join(schemes, ":// or "), raw)
}

func (v *validator) maintenance(m *MaintenanceConfig) {
	v.absPath("maintenance.moodle_dataroot", m.MoodleDataroot)
	v.cidrs("maintenance.allow", m.Allow)
	if len(m.Allow) > MaxAllow {
		v.addf("maintenance.allow", "at most %d ranges, got %d", MaxAllow, len(m.Allow))
	}
}

// MaxAllow bounds maintenance.allow: each node announces its list in one
// gossip message.
const MaxAllow = 32

func (v *validator) cidrs(key string, cidrs []string) {
	for i, cidr := range cidrs {
		if _, err := netip.ParsePrefix(cidr); err != nil {
			v.addf(fmt.Sprintf("%s[%d]", key, i), "invalid CIDR %q", cidr)
		}
	}
}

func (v *validator) db(d *DBConfig) {
	v.oneOf("db.driver", d.Driver, "postgres", "mysql")
	if v.required("db.host", d.Host) && !validHost(d.Host) && !filepath.IsAbs(d.Host) {
		v.addf("db.host", "must be a hostname, an IP or a socket directory, got %q", d.Host)
	}
	if d.Port < 1 || d.Port > 65535 {
		v.addf("db.port", "must be 1-65535, got %d", d.Port)
	}
	v.required("db.name", d.Name)
	v.required("db.user", d.User)
	if v.required("db.dump_dir", d.DumpDir) {
		v.absPath("db.dump_dir", d.DumpDir)
	}
	if _, err := ParseSchedule(d.Schedule); err != nil {
		v.addf("db.schedule", "%v", err)
	}
	v.atLeast("db.keep", d.Keep, 1)
}

// validHost reports whether h is an IP address or a DNS name.
func validHost(h string) bool {
	if _, err := netip.ParseAddr(h); err == nil {
		return true
	}
	if h == "" || len(h) > 253 {
		return false
	}
	for label := range strings.SplitSeq(strings.TrimSuffix(h, "."), ".") {
		if len(label) == 0 || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, r := range label {
			if !(r == '-' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z') {
				return false
			}
		}
	}
	return true
}
