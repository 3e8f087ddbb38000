package sp_test

import (
	"context"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	cdplog "github.com/chromedp/cdproto/log"
	"github.com/chromedp/chromedp"

	"github.com/samlha/samlha/sp"
)

// chromium returns a headless Chromium context, or skips the test outside
// CI (and fails it in CI) when there is no Chromium.
func chromium(t *testing.T) context.Context {
	t.Helper()
	var bin string
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			bin = p
			break
		}
	}
	if bin == "" {
		if os.Getenv("CI") == "true" {
			t.Fatal("no Chromium on PATH (apt-get install chromium)")
		}
		t.Skip("no Chromium on PATH (apt-get install chromium); CI runs this test")
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(bin), chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.Flag("disable-background-networking", true), chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true), chromedp.Flag("no-first-run", true),
		chromedp.UserDataDir(t.TempDir()))
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelCtx := chromedp.NewContext(actx)
	ctx, cancelTimeout := context.WithTimeout(ctx, 60*time.Second)
	t.Cleanup(func() { cancelTimeout(); cancelCtx(); cancelAlloc() })
	return ctx
}

// A real browser runs the AuthnRequest form's script under its policy (so
// the nonce is right and the form posts itself to the IdP), and loads the
// SP's pages without a single Content-Security-Policy violation.
func TestChromiumPagesUnderTheirPolicy(t *testing.T) {
	t.Parallel()
	ctx := chromium(t)
	top := startTopology(t, topologyConfig{Replicas: 1, Store: memoryStores, Configure: func(_ int, c *sp.Config) { postBindingOnly(c) }})

	var mu sync.Mutex
	var violations []string
	record := func(e *cdplog.EventEntryAdded) {
		if e.Entry != nil && strings.Contains(e.Entry.Text, "Content Security Policy") {
			violations = append(violations, e.Entry.URL+": "+e.Entry.Text)
		}
	}
	if err := chromedp.Listen(ctx, func(ev any) {
		mu.Lock()
		defer mu.Unlock()
		switch e := ev.(type) {
		case *cdplog.EventEntryAdded:
			record(e)
		case cdplog.EventEntryAdded:
			record(&e)
		}
	}); err != nil {
		t.Fatalf("start Chromium: %v", err)
	}
	if _, err := chromedp.Call(ctx, cdplog.Enable, cdp.Empty{}); err != nil {
		t.Fatal(err)
	}
	idp, _ := url.Parse(top.IdP.URL)
	err := chromedp.Do(ctx,
		// The SP's own page, with its style sheet.
		chromedp.Navigate(top.ProxyURL+"/"),
		chromedp.WaitVisible(chromedp.CSS("h1")),
		// The AuthnRequest form: only its script can take the browser on to
		// the IdP's login form.
		chromedp.Navigate(top.ProxyURL+"/app"),
		chromedp.WaitVisible(chromedp.CSS(`input[type="password"]`)),
	)
	loc, _ := chromedp.Run(ctx, chromedp.Location())
	if err != nil {
		t.Fatalf("chromium: %v (at %s)", err, loc)
	}
	if u, _ := url.Parse(loc); u == nil || u.Host != idp.Host {
		t.Fatalf("the browser is at %s, want the IdP (%s): the form's script did not run", loc, idp.Host)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(violations) > 0 {
		t.Errorf("Content-Security-Policy violations:\n%s", strings.Join(violations, "\n"))
	}
}
