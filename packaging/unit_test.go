package packaging_test

import (
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/nodeagent/nodeagent/internal/config"
)

// unitSettings returns the "Key=value" settings of a systemd unit file
// (comments skipped), by key.
func unitSettings(t *testing.T, file string) map[string][]string {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	settings := map[string][]string{}
	for line := range strings.Lines(string(b)) {
		line = strings.TrimSpace(line)
		if k, v, ok := strings.Cut(line, "="); ok && !strings.HasPrefix(line, "#") {
			settings[k] = append(settings[k], v)
		}
	}
	return settings
}

// TestUnit: the settings the agent and the maintainer scripts rely on.
func TestUnit(t *testing.T) {
	u := unitSettings(t, "nodeagent.service")
	for key, want := range map[string]string{
		"Type":                    "notify", // run sends READY=1 (sdnotify.go)
		"KillSignal":              "SIGINT", // graceful leave
		"KillMode":                "mixed",
		"Restart":                 "on-failure",
		"ExecStart":               "/usr/bin/nodeagent run -config /etc/nodeagent/nodeagent.yaml",
		"ExecReload":              "/bin/kill -HUP $MAINPID",
		"StateDirectory":          "nodeagent", // data_dir's default, /var/lib/nodeagent
		"StateDirectoryMode":      "0711",      // as postinst creates it
		"ProtectSystem":           "strict",
		"NoNewPrivileges":         "yes",
		"PrivateTmp":              "yes",
		"SystemCallArchitectures": "native",
		// The listening sockets outlive a restart (internal/handoff): the
		// agent stores its four (edge.https, edge.http, cluster.listen,
		// api.listen); systemd_test.go checks it under systemd 252.
		"FileDescriptorStoreMax": "8",
		"NotifyAccess":           "main", // FDSTORE=1 comes from the main process, the same PID after a re-exec
	} {
		if got := u[key]; len(got) != 1 || got[0] != want {
			t.Errorf("%s=%v, want %s", key, got, want)
		}
	}
	caps := strings.Fields(strings.Join(u["CapabilityBoundingSet"], " "))
	if !slices.Contains(caps, "CAP_NET_BIND_SERVICE") || slices.Contains(caps, "CAP_SYS_ADMIN") {
		t.Errorf("CapabilityBoundingSet=%v", caps)
	}
	// Debian 12 has systemd 252: RestartSteps, FileDescriptorStorePreserve
	// (254) would be unknown keys.
	for _, key := range []string{"RestartSteps", "RestartMaxDelaySec", "FileDescriptorStorePreserve"} {
		if _, ok := u[key]; ok {
			t.Errorf("%s needs systemd >= 254", key)
		}
	}
}

// TestPackageFilesAgree: the paths named in the nfpm config, the unit, the
// maintainer scripts and the config package are the same.
func TestPackageFilesAgree(t *testing.T) {
	read := func(name string) string {
		b, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	nfpm, postinst := read("nfpm.yaml"), read("scripts/postinst")
	for _, dst := range []string{"/usr/bin/nodeagent", "/usr/lib/systemd/system/nodeagent.service", "/etc/nodeagent/nodeagent.yaml"} {
		if !strings.Contains(nfpm, "dst: "+dst+"\n") {
			t.Errorf("nfpm.yaml does not install %s", dst)
		}
	}
	if !regexp.MustCompile(`install -d -m 0711 /var/lib/nodeagent\n`).MatchString(postinst) {
		t.Error("postinst does not create /var/lib/nodeagent 0711")
	}
	// ReadWritePaths=-/var/www needs it; an existing one keeps its mode.
	if !regexp.MustCompile(`if \[ ! -e /var/www \] && \[ ! -L /var/www \]; then\n\tinstall -d -m 0755 /var/www\n`).MatchString(postinst) {
		t.Error("postinst does not create a missing /var/www 0755 (and only a missing one)")
	}
	if !strings.Contains(postinst, `"$etc/api.token"`) || !strings.Contains(postinst, "umask 077") {
		t.Error("postinst does not create api.token 0600")
	}
	// The package's paths are the config's defaults.
	for got, want := range map[string]string{
		config.DefaultPath:      "/etc/nodeagent/nodeagent.yaml",
		config.DefaultDataDir:   "/var/lib/nodeagent",
		config.DefaultKeyFile:   "/etc/nodeagent/gossip.key", // postinst starts the unit once it exists
		config.DefaultTokenFile: "/etc/nodeagent/api.token",  // postinst generates it
	} {
		if got != want {
			t.Errorf("config default %s, but the package uses %s", got, want)
		}
	}
}
