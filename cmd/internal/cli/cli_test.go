package cli

import (
	"bytes"
	"flag"
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestParseEnvTwins(t *testing.T) {
	t.Setenv("TESTPFX_STORE_URL", "redis://from-env:6379")
	t.Setenv("TESTPFX_TTL", "3m")
	t.Setenv("TESTPFX_NAME", "env-name")
	t.Setenv("TESTPFX_TARGET", "a=1,b=2")
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	storeURL := fs.String("store-url", "memory://", "store URL")
	ttl := fs.Duration("ttl", time.Minute, "ttl")
	name := fs.String("name", "default", "name")
	var targets StringList
	fs.Var(&targets, "target", "targets")
	if err := Parse(fs, []string{"--name", "cli-name"}, "TESTPFX", "summary\n"); err != nil {
		t.Fatal(err)
	}
	if *storeURL != "redis://from-env:6379" || *ttl != 3*time.Minute {
		t.Errorf("env not applied: store-url=%q ttl=%v", *storeURL, *ttl)
	}
	if *name != "cli-name" {
		t.Errorf("command line must win over env: name=%q", *name)
	}
	if strings.Join(targets, ";") != "a=1;b=2" {
		t.Errorf("targets = %q", targets)
	}
}

func TestParseBadEnvNamesVariable(t *testing.T) {
	t.Setenv("TESTPFX_TTL", "soon")
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	fs.Duration("ttl", time.Minute, "ttl")
	err := Parse(fs, nil, "TESTPFX", "")
	if err == nil || !strings.Contains(err.Error(), "TESTPFX_TTL") || !strings.Contains(err.Error(), "--ttl") {
		t.Fatalf("err = %v, want one naming TESTPFX_TTL and --ttl", err)
	}
}

func TestUsageNamesEnvTwin(t *testing.T) {
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	fs.String("store-url", "memory://", "where login state lives")
	var buf bytes.Buffer
	Usage(&buf, fs, "SAMLHA", "samlsp: a SAML SP\n")
	for _, want := range []string{"samlsp: a SAML SP", "--store-url", "$SAMLHA_STORE_URL", "default memory://", "where login state lives"} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("usage lacks %q:\n%s", want, buf.String())
		}
	}
}

func TestProblems(t *testing.T) {
	var p Problems
	if p.Err() != nil {
		t.Fatal("no problems must be nil")
	}
	p.Addf("--a: bad")
	p.Addf("--b: worse")
	if err := p.Err(); err == nil || !strings.Contains(err.Error(), "--a: bad") || !strings.Contains(err.Error(), "--b: worse") {
		t.Fatalf("err = %v", err)
	}
}

func TestNewLogger(t *testing.T) {
	var buf bytes.Buffer
	l, err := NewLogger(&buf, "json", "warn")
	if err != nil {
		t.Fatal(err)
	}
	l.Info("hidden")
	l.Warn("shown", "k", "v")
	if strings.Contains(buf.String(), "hidden") || !strings.Contains(buf.String(), `"k":"v"`) {
		t.Errorf("log output %q", buf.String())
	}
	if _, err := NewLogger(&buf, "xml", "info"); err == nil {
		t.Error("want error for format xml")
	}
	if _, err := NewLogger(&buf, "text", "loud"); err == nil {
		t.Error("want error for level loud")
	}
}

func TestSameSite(t *testing.T) {
	for in, want := range map[string][2]http.SameSite{ // [http, https]
		"auto":    {http.SameSiteLaxMode, http.SameSiteNoneMode},
		"AUTO":    {http.SameSiteLaxMode, http.SameSiteNoneMode},
		"default": {http.SameSiteDefaultMode, http.SameSiteDefaultMode},
		"lax":     {http.SameSiteLaxMode, http.SameSiteLaxMode},
		"strict":  {http.SameSiteStrictMode, http.SameSiteStrictMode},
		" None ":  {http.SameSiteNoneMode, http.SameSiteNoneMode},
	} {
		var s SameSite
		if err := s.Set(in); err != nil {
			t.Fatalf("Set(%q): %v", in, err)
		}
		if got := [2]http.SameSite{s.Mode(false), s.Mode(true)}; got != want {
			t.Errorf("%q: Mode(http, https) = %v, want %v", in, got, want)
		}
	}
	var s SameSite
	if s.String() != "auto" || s.Mode(true) != http.SameSiteNoneMode {
		t.Errorf("zero value: %q, %v; want auto", s.String(), s.Mode(true))
	}
	if err := s.Set("loose"); err == nil || !strings.Contains(err.Error(), SameSiteHelp) {
		t.Errorf("Set(loose): %v, want an error listing the values", err)
	}
}
