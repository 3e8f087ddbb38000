package deploy

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
)

// The reference configs describe one topology: a balancer on 127.0.0.1:8080
// in front of replicas sp-1, sp-2, sp-3 on 127.0.0.1:8081-8083.
var (
	refListen   = "127.0.0.1:8080"
	refReplicas = []string{"127.0.0.1:8081", "127.0.0.1:8082", "127.0.0.1:8083"}
)

// findTool returns the path of a tool, looking in the sbin directories too
// (Debian puts nginx and haproxy in /usr/sbin, which a non-root PATH lacks).
func findTool(name string) (string, bool) {
	if p, err := exec.LookPath(name); err == nil {
		return p, true
	}
	for _, dir := range []string{"/usr/sbin", "/usr/local/sbin", "/sbin"} {
		p := filepath.Join(dir, name)
		if st, err := os.Stat(p); err == nil && !st.IsDir() {
			return p, true
		}
	}
	return "", false
}

func readConf(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// activeLines drops comments (# to the end of the line) and blank lines.
func activeLines(text string) []string {
	var out []string
	for _, line := range strings.Split(text, "\n") {
		if i := strings.Index(line, "#"); i >= 0 {
			line = line[:i]
		}
		if line = strings.TrimSpace(line); line != "" {
			out = append(out, line)
		}
	}
	return out
}

// checkAddresses: the config listens on refListen and balances over exactly
// refReplicas.
func checkAddresses(t *testing.T, name string, active []string) {
	t.Helper()
	re := regexp.MustCompile(`127\.0\.0\.1:\d+`)
	var got []string
	for _, a := range re.FindAllString(strings.Join(active, "\n"), -1) {
		if !slices.Contains(got, a) {
			got = append(got, a)
		}
	}
	slices.Sort(got)
	want := append([]string{refListen}, refReplicas...)
	if !slices.Equal(got, want) {
		t.Errorf("%s uses addresses %v, want the reference topology %v", name, got, want)
	}
}

func TestHAProxyConfig(t *testing.T) {
	t.Parallel()
	const name = "haproxy.cfg"
	text := readConf(t, name)
	active := activeLines(text)
	checkAddresses(t, name, active)
	joined := strings.Join(active, "\n")
	for _, want := range []string{
		"cookie SRV insert indirect nocache",
		"http-check send meth GET uri /healthz",
		"option redispatch",
	} {
		if !strings.Contains(joined, want) {
			t.Errorf("%s lacks %q", name, want)
		}
	}
	// Each server's cookie value is its name, which is the replica's
	// --instance-id.
	servers := regexp.MustCompile(`(?m)^server (\S+) (\S+) cookie (\S+)`).FindAllStringSubmatch(joined, -1)
	if len(servers) != len(refReplicas) {
		t.Errorf("%s has %d servers with a cookie, want %d", name, len(servers), len(refReplicas))
	}
	for i, s := range servers {
		if s[1] != s[3] || s[1] != "sp-"+strconv.Itoa(i+1) {
			t.Errorf("%s: server %s cookie %s: want server sp-N with cookie sp-N (the instance ID)", name, s[1], s[3])
		}
	}
	// The SameSite advice for a cross-site IdP is there, as a comment.
	if !strings.Contains(text, `secure attr "SameSite=None"`) {
		t.Errorf("%s lacks the comment on cookie ... secure attr \"SameSite=None\"", name)
	}

	haproxy, ok := findTool("haproxy")
	if !ok {
		skipOrFail(t, "haproxy is not installed (apt-get install -y haproxy)")
	}
	out, err := exec.Command(haproxy, "-c", "-f", name).CombinedOutput()
	if err != nil {
		t.Fatalf("haproxy -c -f %s: %v\n%s", name, err, out)
	}
	if strings.Contains(string(out), "[WARNING]") || strings.Contains(string(out), "[ALERT]") {
		t.Errorf("haproxy -c -f %s passes with warnings:\n%s", name, out)
	}

	// The commented advice for a cross-site IdP is valid too: swap it in.
	m := regexp.MustCompile(`(?m)^\s*#\s*(cookie SRV insert .*secure attr "SameSite=None".*)$`).FindStringSubmatch(text)
	if m == nil {
		t.Fatalf("%s: cannot find the commented SameSite=None cookie line", name)
	}
	variant := regexp.MustCompile(`(?m)^(\s*)cookie SRV insert .*$`).ReplaceAllString(text, "${1}"+m[1])
	alt := filepath.Join(t.TempDir(), "haproxy-samesite-none.cfg")
	if err := os.WriteFile(alt, []byte(variant), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(haproxy, "-c", "-f", alt).CombinedOutput(); err != nil || strings.Contains(string(out), "[WARNING]") {
		t.Errorf("haproxy -c with the commented line %q: %v\n%s", m[1], err, out)
	}
}

func TestNginxConfig(t *testing.T) {
	t.Parallel()
	const name = "nginx.conf"
	text := readConf(t, name)
	active := activeLines(text)
	checkAddresses(t, name, active)
	if !slices.Contains(active, "ip_hash;") {
		t.Errorf("%s: the upstream does not use ip_hash", name)
	}
	if !regexp.MustCompile(`#\s*sticky cookie \S+ .*samesite=none`).MatchString(text) {
		t.Errorf("%s lacks the commented nginx Plus `sticky cookie ... samesite=none` line", name)
	}
	for _, d := range []string{"pid", "error_log"} {
		for _, l := range active {
			if strings.HasPrefix(l, d+" ") {
				t.Errorf("%s sets %s; leave it to -g so that nginx -t can run as a standalone main config under a temp prefix", name, d)
			}
		}
	}

	nginx, ok := findTool("nginx")
	if !ok {
		skipOrFail(t, "nginx is not installed (apt-get install -y nginx)")
	}
	abs, err := filepath.Abs(name)
	if err != nil {
		t.Fatal(err)
	}
	prefix := t.TempDir()
	if err := os.MkdirAll(filepath.Join(prefix, "logs"), 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(nginx, "-t", "-p", prefix, "-c", abs,
		"-g", "pid "+filepath.Join(prefix, "nginx.pid")+"; error_log stderr;")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(cmd.Args, " "), err, out)
	}
	if strings.Contains(string(out), "[warn]") || strings.Contains(string(out), "[emerg]") {
		t.Errorf("nginx -t passes with warnings:\n%s", out)
	}
}

func TestCaddyfile(t *testing.T) {
	t.Parallel()
	const name = "Caddyfile"
	text := readConf(t, name)
	active := activeLines(text)
	checkAddresses(t, name, active)
	joined := strings.Join(active, "\n")
	for _, want := range []string{"lb_policy cookie", "health_uri /healthz"} {
		if !strings.Contains(joined, want) {
			t.Errorf("%s lacks %q", name, want)
		}
	}

	caddy, ok := findTool("caddy")
	if !ok {
		// .ci/run installs it, as README says; elsewhere it may be missing.
		skipOrFail(t, "caddy is not installed (apt-get install -y caddy)")
	}
	home := t.TempDir()
	cmd := exec.Command(caddy, "validate", "--config", name, "--adapter", "caddyfile")
	cmd.Env = append(os.Environ(), "HOME="+home, "XDG_DATA_HOME="+home, "XDG_CONFIG_HOME="+home, "SAMLHA_LB_SECRET=test-secret")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("caddy validate: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "Valid configuration") {
		t.Errorf("caddy validate did not say the configuration is valid:\n%s", out)
	}
}

// TestALBTerraform parses alb-stickiness.tf as HCL (there is no terraform
// here) and checks the target group's stickiness and health check.
func TestALBTerraform(t *testing.T) {
	t.Parallel()
	const name = "alb-stickiness.tf"
	src, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	f, diags := hclsyntax.ParseConfig(src, name, hcl.InitialPos)
	if diags.HasErrors() {
		t.Fatalf("%s does not parse: %s", name, diags.Error())
	}
	body := f.Body.(*hclsyntax.Body)
	var tg *hclsyntax.Block
	vars := map[string]*hclsyntax.Block{}
	for _, b := range body.Blocks {
		switch {
		case b.Type == "resource" && len(b.Labels) == 2 && b.Labels[0] == "aws_lb_target_group":
			tg = b
		case b.Type == "variable" && len(b.Labels) == 1:
			vars[b.Labels[0]] = b
		}
	}
	if tg == nil {
		t.Fatalf("%s has no aws_lb_target_group resource", name)
	}
	// value evaluates an attribute that is a literal or var.NAME (with its
	// default).
	var value func(b *hclsyntax.Body, attr string) (string, bool)
	value = func(b *hclsyntax.Body, attr string) (string, bool) {
		a, ok := b.Attributes[attr]
		if !ok {
			return "", false
		}
		if tr, ok := a.Expr.(*hclsyntax.ScopeTraversalExpr); ok && len(tr.Traversal) == 2 && tr.Traversal.RootName() == "var" {
			vname := tr.Traversal[1].(hcl.TraverseAttr).Name
			v, ok := vars[vname]
			if !ok {
				t.Errorf("%s: %s = var.%s, which is not declared", name, attr, vname)
				return "", false
			}
			return value(v.Body, "default")
		}
		v, d := a.Expr.Value(nil)
		if d.HasErrors() {
			return "", false
		}
		if v.Type().FriendlyName() == "number" {
			return v.AsBigFloat().Text('f', -1), true
		}
		if v.Type().FriendlyName() == "string" {
			return v.AsString(), true
		}
		return v.GoString(), true
	}
	blocks := map[string]*hclsyntax.Body{}
	for _, b := range tg.Body.Blocks {
		blocks[b.Type] = b.Body
	}
	st, ok := blocks["stickiness"]
	if !ok {
		t.Fatalf("%s: the target group has no stickiness block", name)
	}
	if v, _ := value(st, "type"); v != "lb_cookie" {
		t.Errorf("stickiness type = %q, want lb_cookie (duration-based, AWSALB)", v)
	}
	if v, _ := value(st, "enabled"); v != "cty.True" {
		t.Errorf("stickiness enabled = %s, want true", v)
	}
	d, ok := value(st, "cookie_duration")
	if n, err := strconv.Atoi(d); !ok || err != nil || n < 1 || n > 604800 {
		t.Errorf("stickiness cookie_duration = %q: ALB takes 1 to 604800 seconds", d)
	}
	hc, ok := blocks["health_check"]
	if !ok {
		t.Fatalf("%s: the target group has no health_check block", name)
	}
	if v, _ := value(hc, "path"); v != "/healthz" {
		t.Errorf("health_check path = %q, want /healthz", v)
	}
	if v, _ := value(tg.Body, "port"); v != "8081" {
		t.Errorf("target group port = %q, want samlsp's 8081", v)
	}
	if !strings.Contains(string(src), "AWSALBCORS") {
		t.Errorf("%s lacks the note on AWSALBCORS", name)
	}
}
