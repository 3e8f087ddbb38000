package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/samlha/samlha/cmd/internal/cli"
)

func TestGatewayFlagsInHelp(t *testing.T) {
	var out bytes.Buffer
	if err := run(context.Background(), []string{"--help"}, &out, &out); !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("--help: %v", err)
	}
	for _, f := range []string{"upstream", "public-path", "identity-header-prefix", "pass-attribute", "allow", "allowed-redirect-hosts",
		"identity-jwt", "identity-jwt-key", "identity-jwt-ttl", "identity-jwt-audience", "trusted-proxies", "allow-idp-initiated",
		"idp-initiated-redirect", "idp-initiated-accept-replica-replay", "sp-key-next", "sp-cert-next", "session-cache-ttl", "upstream-header-timeout"} {
		env := "$SAMLHA_" + strings.ToUpper(strings.ReplaceAll(f, "-", "_"))
		if !strings.Contains(out.String(), "--"+f+" ") && !strings.Contains(out.String(), "--"+f+"\n") {
			t.Errorf("--help lacks --%s", f)
		}
		if !strings.Contains(out.String(), env) {
			t.Errorf("--help lacks %s", env)
		}
	}
}

func TestGatewayFlagProblemsReportedAtOnce(t *testing.T) {
	var out bytes.Buffer
	err := run(context.Background(), []string{"--sp-key", "k", "--sp-cert", "c", "--idp-metadata-file", "m",
		"--upstream", "ftp://x", "--allow", "groups", "--pass-attribute", "mail", "--identity-jwt",
		"--trusted-proxies", "not-an-ip", "--allow-idp-initiated", "--sp-key-next", "k2"}, &out, &out)
	if err == nil {
		t.Fatal("bad gateway flags accepted")
	}
	for _, want := range []string{"--upstream", "--allow", "--pass-attribute", "--identity-jwt needs --identity-jwt-key",
		"--trusted-proxies", "--allow-idp-initiated: an IdP-initiated response has no login state", "--sp-key-next and --sp-cert-next"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
}

func TestJWTKeyWritesALoadableKey(t *testing.T) {
	dir := t.TempDir()
	var out bytes.Buffer
	for _, alg := range []string{"ES256", "EdDSA"} {
		p := filepath.Join(dir, alg+".pem")
		if err := run(context.Background(), []string{"jwtkey", "--out", p, "--alg", alg}, &out, &out); err != nil {
			t.Fatal(err)
		}
		if st, _ := os.Stat(p); st.Mode().Perm() != 0o600 {
			t.Errorf("%s mode %v, want 0600", p, st.Mode().Perm())
		}
	}
	g := gatewayOptions{identityJWT: true, jwtKeys: []string{dir}, jwtTTL: 60e9}
	var p problemsRecorder
	c := g.build(&p.Problems)
	if len(p.Problems) != 0 || len(c.Gateway.JWT.Keys) != 2 {
		t.Fatalf("key ring from %s: %v, %d keys", dir, p.Problems, len(c.Gateway.JWT.Keys))
	}
	if err := run(context.Background(), []string{"jwtkey", "--out", filepath.Join(dir, "ES256.pem")}, &out, &out); err == nil {
		t.Fatal("jwtkey overwrote an existing key")
	}
}

type problemsRecorder struct{ Problems cli.Problems }

// Every field the SP's validator names has a flag here: a problem is never
// reported by a Go field name a user cannot act on.
func TestEveryConfigFieldHasAFlag(t *testing.T) {
	src, err := os.ReadFile("../../sp/config.go")
	if err != nil {
		t.Fatal(err)
	}
	fields := regexp.MustCompile(`ps\.add\("([A-Za-z.]+)"`).FindAllStringSubmatch(string(src), -1)
	if len(fields) < 20 {
		t.Fatalf("found only %d fields in sp/config.go's validator: the pattern is stale", len(fields))
	}
	seen := map[string]bool{}
	for _, f := range fields {
		seen[f[1]] = true
		if _, ok := fieldFlags[f[1]]; !ok {
			t.Errorf("sp's validator names %s, which no flag maps", f[1])
		}
	}
	for f := range fieldFlags {
		if !seen[f] && !strings.Contains(string(src), `"`+f+`"`) {
			t.Errorf("fieldFlags maps %s, which sp's validator never names", f)
		}
	}
}

// Modes are explicit: forward-auth is asked for, and combinations that
// make no sense are refused at start.
func TestModes(t *testing.T) {
	base := []string{"--sp-key", "k", "--sp-cert", "c", "--idp-metadata-file", "m"}
	for _, tc := range []struct {
		args []string
		want string // "" = no mode problem
	}{
		{[]string{"--mode", "app,gateway", "--upstream", "http://127.0.0.1:3000"}, "--mode: app and gateway cannot run together"},
		{[]string{"--mode", "gateway"}, "--upstream: gateway mode needs the application"},
		{[]string{"--mode", "forward-auth", "--upstream", "http://127.0.0.1:3000"}, "--upstream: an upstream is for gateway mode"},
		{[]string{"--pass-attribute", "mail=X-Email"}, "add forward-auth to the mode"},
		{[]string{"--public-path", "/static/", "--mode", "forward-auth"}, "--public-path: public paths are for gateway mode"},
		{[]string{"--mode", "sideways"}, "--mode: mode \"sideways\""},
	} {
		var out bytes.Buffer
		err := run(context.Background(), append(append([]string{}, base...), tc.args...), &out, &out)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: %v; want a problem %q", tc.args, err, tc.want)
		}
	}
}
