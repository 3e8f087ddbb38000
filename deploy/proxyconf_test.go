package deploy

import (
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"

	"github.com/samlha/samlha/deploy/thirdparty"
)

// The reference configs describe one topology: a balancer on 127.0.0.1:8080
// in front of replicas sp-1, sp-2, sp-3 on 127.0.0.1:8081-8083.
var (
	refListen   = "127.0.0.1:8080"
	refReplicas = []string{"127.0.0.1:8081", "127.0.0.1:8082", "127.0.0.1:8083"}
)

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
		"http-check send meth GET uri /readyz",
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

	needTool(t, "haproxy")
	if _, err := (thirdparty.ProxyConfig{Kind: thirdparty.HAProxy, Dir: t.TempDir(), Text: text}).Check(); err != nil {
		t.Fatal(err)
	}

	// The commented advice for a cross-site IdP is valid too: swap it in.
	m := regexp.MustCompile(`(?m)^\s*#\s*(cookie SRV insert .*secure attr "SameSite=None".*)$`).FindStringSubmatch(text)
	if m == nil {
		t.Fatalf("%s: cannot find the commented SameSite=None cookie line", name)
	}
	variant := regexp.MustCompile(`(?m)^(\s*)cookie SRV insert .*$`).ReplaceAllString(text, "${1}"+m[1])
	if _, err := (thirdparty.ProxyConfig{Kind: thirdparty.HAProxy, Dir: t.TempDir(), Text: variant}).Check(); err != nil {
		t.Errorf("with the commented line %q: %v", m[1], err)
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
	// Open source nginx has passive checks only; the nginx Plus active
	// check it suggests must be on readiness, not liveness.
	if !strings.Contains(text, "health_check uri=/readyz;") || strings.Contains(text, "uri=/healthz") {
		t.Errorf("%s: the suggested nginx Plus health_check must check /readyz, not /healthz", name)
	}
	for _, d := range []string{"pid", "error_log"} {
		for _, l := range active {
			if strings.HasPrefix(l, d+" ") {
				t.Errorf("%s sets %s; leave it to -g so that nginx -t can run as a standalone main config under a temp prefix", name, d)
			}
		}
	}

	needTool(t, "nginx")
	if _, err := (thirdparty.ProxyConfig{Kind: thirdparty.Nginx, Dir: t.TempDir(), Text: text}).Check(); err != nil {
		t.Fatal(err)
	}
}

func TestCaddyfile(t *testing.T) {
	t.Parallel()
	const name = "Caddyfile"
	text := readConf(t, name)
	active := activeLines(text)
	checkAddresses(t, name, active)
	joined := strings.Join(active, "\n")
	for _, want := range []string{"lb_policy cookie", "health_uri /readyz", "admin off", "bind 127.0.0.1"} {
		if !strings.Contains(joined, want) {
			t.Errorf("%s lacks %q", name, want)
		}
	}

	// .ci/run installs it, as README says; elsewhere it may be missing.
	needTool(t, "caddy")
	if _, err := (thirdparty.ProxyConfig{Kind: thirdparty.Caddy, Dir: t.TempDir(), Text: text, Env: []string{"SAMLHA_LB_SECRET=test-secret"}}).Check(); err != nil {
		t.Fatal(err)
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
	if v, _ := value(hc, "path"); v != "/readyz" {
		t.Errorf("health_check path = %q, want /readyz (readiness, not liveness)", v)
	}
	if v, _ := value(tg.Body, "port"); v != "8081" {
		t.Errorf("target group port = %q, want samlsp's 8081", v)
	}
	if !strings.Contains(string(src), "AWSALBCORS") {
		t.Errorf("%s lacks the note on AWSALBCORS", name)
	}
}
