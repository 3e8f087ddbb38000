package topo

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/samlha/samlha/deploy"
	"github.com/samlha/samlha/store/localproc"
)

// refAddress is an address of the reference config the lab moves.
var refAddress = regexp.MustCompile(`127\.0\.0\.1:(808\d|3000)\b`)

// The forward-auth topology runs deploy/nginx-forward-auth.conf with only
// its addresses moved and, over https, the lab's certificate on its
// listener; nginx accepts the result.
func TestNginxConfigPlacesTheReferenceConfig(t *testing.T) {
	dir := t.TempDir()
	ca, err := localproc.NewCA(filepath.Join(dir, "tls"), SPHost, "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	// The listener on 30002, whose address begins with the reference
	// app's 127.0.0.1:3000: it must be moved once, not twice.
	top := &Topology{Spec: Spec{TLS: true}, env: &Env{CA: ca}, ports: ports{proxy: 30002, app: 27002},
		Replicas: []*Replica{{Port: 27003}, {Port: 27004}, {Port: 27005}}}
	conf, err := top.nginxConfig(deploy.NginxForwardAuth)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"listen 127.0.0.1:30002 ssl;", "ssl_certificate " + ca.CertFile + ";", "ssl_certificate_key " + ca.KeyFile + ";",
		"server 127.0.0.1:27002;", "server 127.0.0.1:27003 ", "server 127.0.0.1:27004 ", "server 127.0.0.1:27005 ", "auth_request /_samlha_auth;"} {
		if !strings.Contains(conf, want) {
			t.Errorf("the config lacks %q", want)
		}
	}
	for _, line := range strings.Split(conf, "\n") {
		if l := strings.TrimSpace(line); !strings.HasPrefix(l, "#") && refAddress.MatchString(l) {
			t.Errorf("a reference address is left: %q", l)
		}
	}
	nginx := FindTool("nginx")
	if nginx == "" {
		if os.Getenv("CI") == "true" {
			t.Fatal("nginx is not installed (CI=true: nginx -t must run)")
		}
		t.Skip("nginx is not installed: nginx -t not run")
	}
	prefix := filepath.Join(dir, "nginx")
	os.MkdirAll(filepath.Join(prefix, "logs"), 0o755)
	cfg := filepath.Join(prefix, "nginx.conf")
	if err := os.WriteFile(cfg, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(nginx, "-t", "-p", prefix, "-c", cfg, "-e", "stderr", "-g", "pid "+filepath.Join(prefix, "nginx.pid")+"; error_log stderr;").CombinedOutput(); err != nil {
		t.Fatalf("nginx -t: %v\n%s", err, out)
	}

	// A reference config that lost an address the lab moves is refused,
	// not run half-placed.
	for _, gone := range []string{"server 127.0.0.1:8082 ", "listen 127.0.0.1:8080;", "server 127.0.0.1:3000;"} {
		if _, err := top.nginxConfig(strings.Replace(deploy.NginxForwardAuth, gone, "server 127.0.0.1:9999 ", 1)); err == nil || !strings.Contains(err.Error(), strings.TrimSpace(gone)) {
			t.Errorf("a config without %q: %v", gone, err)
		}
	}
}
