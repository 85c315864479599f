package packaging_test

import (
	"bytes"
	"encoding/base64"
	"os"
	"regexp"
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
	"moodle_dataroot":   "/moodle/moodledata",
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
			var install, start, wait bool
			for _, c := range cc.RunCmd {
				line := strings.Join(c, " ")
				install = install || strings.Contains(line, "apt-get install") && strings.Contains(line, "--force-confold")
				start = start || line == "systemctl enable --now nodeagent.service"
				wait = wait || strings.HasPrefix(line, "nodeagent wait")
			}
			if !install || !start {
				t.Errorf("runcmd must install the package keeping the written config (%v) and start it (%v)", install, start)
			}
			if role == "web" && !wait {
				t.Error("a web VM's provisioning must wait for its first sync")
			}
		})
	}
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
