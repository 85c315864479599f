package packaging_test

import (
	"bytes"
	"encoding/base64"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/nodeagent/nodeagent/internal/config"
)

// cloudConfig is the part of cloud-config these files use.
type cloudConfig struct {
	WriteFiles []struct {
		Path        string `yaml:"path"`
		Owner       string `yaml:"owner"`
		Permissions string `yaml:"permissions"`
		Content     string `yaml:"content"`
	} `yaml:"write_files"`
	RunCmd [][]string `yaml:"runcmd"`
}

var params = map[string]string{
	"nodeagent_deb_url": "https://example.com/nodeagent_1.0.0_amd64.deb",
	"controller_ip":     "10.0.0.4",
	"gossip_key":        base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{1}, 32)),
	"api_token":         "token-0123456789",
	"php_fpm_service":   "php8.2-fpm",
	"moodle_dir":        "/moodle/html/moodle",
	// Outside the unit's ReadWritePaths: the file must allow it.
	"moodle_dataroot": "/var/moodledata",
}

// render substitutes ${name} as Terraform's templatefile() or envsubst do,
// failing on a parameter the test does not know.
func render(t *testing.T, file string) string {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	return regexp.MustCompile(`\$\{([a-z_]+)\}`).ReplaceAllStringFunc(string(b), func(m string) string {
		v, ok := params[m[2:len(m)-1]]
		if !ok {
			t.Errorf("%s: unknown template parameter %s", file, m)
		}
		return v
	})
}

func TestCloudInit(t *testing.T) {
	for file, role := range map[string]string{"cloud-init/web.yaml": "web", "cloud-init/controller.yaml": "controller"} {
		t.Run(role, func(t *testing.T) {
			text := render(t, file)
			if !strings.HasPrefix(text, "#cloud-config\n") {
				t.Fatal("first line must be #cloud-config")
			}
			var cc cloudConfig
			dec := yaml.NewDecoder(strings.NewReader(text))
			dec.KnownFields(true)
			if err := dec.Decode(&cc); err != nil {
				t.Fatalf("not valid YAML of the expected shape: %v", err)
			}
			files := map[string]string{}
			for _, f := range cc.WriteFiles {
				files[f.Path] = f.Content
				secret := strings.HasSuffix(f.Path, ".key") || strings.HasSuffix(f.Path, ".token")
				if secret && (f.Permissions != "0600" || f.Owner != "root:root") {
					t.Errorf("%s: %s %s, want root:root 0600", f.Path, f.Owner, f.Permissions)
				}
			}
			cfg, err := config.Parse([]byte(files["/etc/nodeagent/nodeagent.yaml"]))
			if err != nil {
				t.Fatalf("the nodeagent config it writes: %v", err)
			}
			if cfg.Role != role {
				t.Errorf("role %q, want %q", cfg.Role, role)
			}
			if key, err := base64.StdEncoding.DecodeString(strings.TrimSpace(files["/etc/nodeagent/gossip.key"])); err != nil || len(key) != 32 {
				t.Errorf("gossip.key: %d bytes, %v", len(key), err)
			}
			if strings.TrimSpace(files["/etc/nodeagent/api.token"]) != params["api_token"] {
				t.Errorf("api.token not written from the parameter")
			}
			allowed := writableByUnit(t, "nodeagent.service")
			dropIn, hasDropIn := files[pathsDropIn]
			if hasDropIn {
				allowed = append(allowed, writableByUnit(t, writeTemp(t, dropIn))...)
				if !strings.Contains(dropIn, "\n[Service]\n") && !strings.HasPrefix(dropIn, "[Service]\n") {
					t.Errorf("%s lacks [Service]:\n%s", pathsDropIn, dropIn)
				}
			}
			for _, p := range agentWrites(cfg) {
				if !slices.ContainsFunc(allowed, func(a string) bool { return p == a || strings.HasPrefix(p, a+"/") }) {
					t.Errorf("the agent writes %s but the unit allows only %v (ReadWritePaths in %s)", p, allowed, pathsDropIn)
				}
			}
			var install, start, wait, reloaded, reloadedFirst bool
			for _, c := range cc.RunCmd {
				line := strings.Join(c, " ")
				reloaded = reloaded || line == "systemctl daemon-reload"
				install = install || strings.Contains(line, "apt-get install") && strings.Contains(line, "--force-confold")
				start = start || line == "systemctl enable --now nodeagent.service"
				reloadedFirst = reloadedFirst || start && reloaded
				wait = wait || strings.HasPrefix(line, "nodeagent wait")
			}
			if !install || !start {
				t.Errorf("runcmd must install the package keeping the written config (%v) and start it (%v)", install, start)
			}
			if hasDropIn && !reloadedFirst {
				t.Errorf("runcmd must run systemctl daemon-reload before it starts the agent, so %s applies", pathsDropIn)
			}
			if role == "web" && !wait {
				t.Error("a web VM's provisioning must wait for its first sync")
			}
		})
	}
}

// pathsDropIn is where cloud-init allows the paths it templates.
const pathsDropIn = "/etc/systemd/system/nodeagent.service.d/paths.conf"

// writableByUnit returns the directories a unit file (or drop-in) lets the
// agent write under ProtectSystem=strict: ReadWritePaths (without the "-"
// and "+" prefixes) and StateDirectory.
func writableByUnit(t *testing.T, file string) []string {
	t.Helper()
	u := unitSettings(t, file)
	var dirs []string
	for _, p := range strings.Fields(strings.Join(u["ReadWritePaths"], " ")) {
		dirs = append(dirs, filepath.Clean(strings.TrimLeft(p, "-+")))
	}
	for _, d := range u["StateDirectory"] {
		dirs = append(dirs, filepath.Join("/var/lib", d))
	}
	return dirs
}

// agentWrites returns the paths a config makes the agent write: data_dir,
// mirror.target's directory, maintenance.moodle_dataroot and db.dump_dir.
func agentWrites(cfg *config.Config) []string {
	paths := []string{cfg.DataDir}
	if cfg.Mirror.Target != "" {
		paths = append(paths, filepath.Dir(cfg.Mirror.Target))
	}
	if cfg.Maintenance.MoodleDataroot != "" {
		paths = append(paths, cfg.Maintenance.MoodleDataroot)
	}
	if cfg.DB != nil && cfg.DB.DumpDir != "" {
		paths = append(paths, cfg.DB.DumpDir)
	}
	return paths
}

func writeTemp(t *testing.T, content string) string {
	t.Helper()
	name := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(name, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return name
}

// TestNginxSnippetUsesRealpathRoot: PHP must get the resolved release path.
func TestNginxSnippetUsesRealpathRoot(t *testing.T) {
	b, err := os.ReadFile("nginx/moodle-nodeagent.conf")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"fastcgi_param SCRIPT_FILENAME $realpath_root$fastcgi_script_name;",
		"fastcgi_param DOCUMENT_ROOT   $realpath_root;",
	} {
		if !bytes.Contains(b, []byte(want)) {
			t.Errorf("nginx snippet lacks %q", want)
		}
	}
	if regexp.MustCompile(`(?m)^\s*fastcgi_param\s+SCRIPT_FILENAME\s+\$document_root`).Match(b) {
		t.Error("SCRIPT_FILENAME from $document_root would hand PHP the symlink path")
	}
}
