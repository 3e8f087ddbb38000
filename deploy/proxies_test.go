package deploy

import (
	"context"
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
	needTool(t, string(kind))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	p, err := strconv.Atoi(port)
	if err != nil {
		t.Fatal(err)
	}
	px, err := thirdparty.ProxyConfig{Kind: kind, Dir: t.TempDir(), Text: text, Env: env}.Start(ctx, []int{p},
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
