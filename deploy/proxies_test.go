package deploy

import (
	"context"
	"maps"
	"strconv"
	"testing"
	"time"

	"github.com/samlha/samlha/deploy/thirdparty"
	"github.com/samlha/samlha/store/localproc"
)

// needTool skips the test (fails it under CI=true) when a program it runs
// is not installed.
func needTool(t *testing.T, name string) {
	t.Helper()
	if _, err := thirdparty.FindTool(name); err != nil {
		skipOrFail(t, "%v", err)
	}
}

// placeConf is the reference config name (a file of this directory) with
// the addresses that are keys of place moved to their values, and nothing
// else changed.
func placeConf(t *testing.T, name string, place map[string]string) string {
	t.Helper()
	text, err := thirdparty.Place(readConf(t, name), place)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return text
}

// runProxy runs a proxy on text until the test ends, listening on port,
// and waits until probeURL answers 200 through it. Its log is printed if
// the test fails.
func runProxy(t *testing.T, kind thirdparty.Kind, text, port, probeURL string, env ...string) *thirdparty.Proxy {
	t.Helper()
	return runProxyConfig(t, thirdparty.ProxyConfig{Kind: kind, Text: text, Env: env}, port, probeURL)
}

// proxyFiles are the files a reference config loads, by config.
var proxyFiles = map[string][]string{"haproxy-forward-auth.cfg": {"haproxy-forward-auth.lua"}}

// filesOf reads the files the reference config name loads.
func filesOf(t *testing.T, name string) map[string]string {
	t.Helper()
	files := map[string]string{}
	for _, f := range proxyFiles[name] {
		files[f] = readConf(t, f)
	}
	return files
}

// runReference runs the reference config conf with the files it loads,
// the addresses in place moved, and its internal addresses (HAProxy's
// abstract auth socket) made this test's own, as runProxy does.
func runReference(t *testing.T, kind thirdparty.Kind, conf string, place map[string]string, port, probeURL string, env ...string) *thirdparty.Proxy {
	t.Helper()
	place = maps.Clone(place)
	if conf == "haproxy-forward-auth.cfg" {
		place["abns@samlha-auth"] = "abns@samlha-auth-" + port
	}
	return runProxyConfig(t, thirdparty.ProxyConfig{Kind: kind, Text: placeConf(t, conf, place), Files: filesOf(t, conf), Env: env}, port, probeURL)
}

// runProxyConfig runs c (Dir is a new temporary directory) as runProxy does.
func runProxyConfig(t *testing.T, c thirdparty.ProxyConfig, port, probeURL string) *thirdparty.Proxy {
	t.Helper()
	kind := c.Kind
	needTool(t, string(kind))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	p, err := strconv.Atoi(port)
	if err != nil {
		t.Fatal(err)
	}
	c.Dir = t.TempDir()
	px, err := c.Start(ctx, []int{p},
		localproc.HTTPProbe(nil, probeURL))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		px.Stop()
		if t.Failed() {
			t.Logf("--- %s log (tail) ---\n%s", kind, px.Proc.LogTail(4000))
		}
	})
	return px
}
