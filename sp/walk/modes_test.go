package walk

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	"github.com/samlha/samlha/deploy"
	"github.com/samlha/samlha/deploy/thirdparty"
	"github.com/samlha/samlha/sp/failure"
	"github.com/samlha/samlha/sp/sptest/devidptest"
	"github.com/samlha/samlha/store/localproc"
)

// adminRule is an --allow rule alice (groups: staff) does not satisfy.
const adminRule = "/admin:eduPersonAffiliation=admins"

// front is one mode in front of go-httpbin: how to start a samlsp (and
// whatever stands before it) and what the browser opens.
type front struct {
	// start starts samlsp with its IdP metadata at metadataURL (registered
	// at idp unless idp is nil; ready: wait for the metadata) in front of
	// bin, and returns the URL the browser opens.
	start func(t *testing.T, idp *devidptest.IdP, metadataURL string, ready bool, bin *thirdparty.HTTPBin) string
}

// gatewayFront is samlsp --upstream go-httpbin.
var gatewayFront = front{start: func(t *testing.T, idp *devidptest.IdP, metadataURL string, ready bool, bin *thirdparty.HTTPBin) string {
	return startSP(t, idp, metadataURL, nil, ready, "--mode", "gateway", "--upstream", bin.URL, "--allow", adminRule).URL
}}

// nginxFront is nginx on deploy/nginx-forward-auth.conf, samlsp
// --mode forward-auth answering its subrequests, and go-httpbin behind it.
var nginxFront = front{start: func(t *testing.T, idp *devidptest.IdP, metadataURL string, ready bool, bin *thirdparty.HTTPBin) string {
	port := localproc.Port()
	root := "http://127.0.0.1:" + strconv.Itoa(port)
	sp := startSP(t, idp, metadataURL, func(int) string { return root }, ready,
		"--mode", "forward-auth", "--trusted-proxies", "127.0.0.1", "--allow", adminRule)
	startNginx(t, port, sp.Port, bin.Addr)
	return root
}}

// startNginx runs deploy/nginx-forward-auth.conf, only its addresses
// moved, until the test ends: it listens on port, sends samlsp's paths and
// its subrequests to the samlsp on spPort (the reference's three replicas
// are that one) and the rest to app (host:port).
func startNginx(t *testing.T, port, spPort int, app string) {
	t.Helper()
	if _, err := thirdparty.FindTool("nginx"); err != nil {
		skipOrFail(t, "%v", err)
	}
	sp := "127.0.0.1:" + strconv.Itoa(spPort)
	text, err := thirdparty.Place(deploy.NginxForwardAuth, map[string]string{
		"127.0.0.1:8080": "127.0.0.1:" + strconv.Itoa(port),
		"127.0.0.1:8081": sp, "127.0.0.1:8082": sp, "127.0.0.1:8083": sp,
		"127.0.0.1:3000": app,
	})
	if err != nil {
		t.Fatalf("deploy/nginx-forward-auth.conf: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	px, err := thirdparty.ProxyConfig{Kind: thirdparty.Nginx, Dir: t.TempDir(), Text: text}.Start(ctx, []int{port}, nil)
	if err != nil {
		t.Fatalf("nginx on deploy/nginx-forward-auth.conf did not start: %v", err)
	}
	t.Cleanup(func() {
		px.Stop()
		if t.Failed() {
			t.Logf("--- nginx log (tail) ---\n%s", px.Proc.LogTail(6000))
		}
	})
}

// startHTTPBin starts go-httpbin for the test.
func startHTTPBin(t *testing.T) *thirdparty.HTTPBin {
	t.Helper()
	bin, err := thirdparty.StartHTTPBin()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { bin.Close() })
	return bin
}

// refusals walks the SP's refusals of alice's requests in front of the
// app: /admin, which an --allow rule keeps from her (403 forbidden), and a
// path with a ;jsessionid parameter (400 path-not-canonical).
func refusals(s site) func(t *testing.T, b *tab) {
	return func(t *testing.T, b *tab) {
		t.Helper()
		for _, p := range []struct {
			path   string
			status int
			cause  failure.Cause
		}{
			{"/admin", 403, failure.CauseForbidden},
			{"/docs;jsessionid=0123", 400, failure.CausePathNotCanonical},
		} {
			b.reset()
			b.do(t, "open "+p.path, chromedp.Navigate(s.Root+p.path), chromedp.WaitReady(chromedp.CSS("#cause")))
			mustLookRight(t, b, want{Name: string(p.cause), Status: p.status, Cause: string(p.cause), Title: titleOf(p.cause), Path: p.path})
		}
	}
}

// walkFront walks a mode in front of go-httpbin: the whole walk with its
// refusals, then (a parallel subtest) a samlsp whose IdP metadata URL has
// nothing listening. go-httpbin must have answered /headers, the page
// asked for, and never a request for the SP's style sheet, /admin or a
// ;jsessionid path.
func walkFront(t *testing.T, f front) {
	if findChromium() == "" {
		skipOrFail(t, "no Chromium on PATH (apt-get install chromium)")
	}
	idp := startIdP(t)
	bin := startHTTPBin(t)
	root := f.start(t, idp, idp.URL+"/metadata", true, bin)
	b := newBrowser(t)
	// Runs after the walk, in the same tab (a tab in the background draws
	// no frame to take a screenshot of).
	t.Run("idp-metadata-unavailable", func(t *testing.T) {
		t.Parallel()
		const path = "/anything/walk-metadata-down"
		root := f.start(t, nil, "http://127.0.0.1:"+strconv.Itoa(localproc.Port())+"/metadata", false, bin)
		if _, err := chromedp.Call(b.ctx, network.ClearBrowserCookies, cdp.Empty{}); err != nil {
			t.Fatal(err)
		}
		b.reset()
		b.do(t, "open "+path, chromedp.Navigate(root+path), chromedp.WaitReady(chromedp.CSS("#cause")))
		c := failure.CauseIdPMetadataUnavailable
		mustLookRight(t, b, want{Name: string(c), Status: 503, Cause: string(c), Title: titleOf(c), Path: path})
		if got := bin.Finished("walk-metadata-down"); len(got) > 0 {
			t.Errorf("go-httpbin received %s without a login", got[0].URI)
		}
	})
	// Checked when the test ends, even if the walk stopped early: what
	// reached go-httpbin says where a refusal came from.
	t.Cleanup(func() {
		for _, m := range []string{stylePath, "/static/", "/admin", "jsessionid", "walk-metadata-down"} {
			if got := bin.Finished(m); len(got) > 0 {
				t.Errorf("go-httpbin received %s (%d times): the SP's own request or a refused one reached the app", got[0].URI, len(got))
			}
		}
	})
	s := site{Root: root, Protected: "/headers", LogoutPath: "/saml/logout"}
	walk(t, b, s, refusals(s))
	// The control: go-httpbin tells which requests reached it.
	for deadline := time.Now().Add(5 * time.Second); len(bin.Finished("/headers")) == 0; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("go-httpbin never finished /headers, which the browser was shown: it cannot tell what reached it")
		}
	}
}

// TestWalkGateway walks gateway mode (samlsp --upstream go-httpbin):
// /headers, the IdP, back on /headers with X-Samlha-User: alice, the
// replayed ACS POST, /admin and a ;jsessionid path refused, the logout
// page and its button, the signed-out page, logging in again, a stale
// logout tab; and samlsp with no IdP metadata.
func TestWalkGateway(t *testing.T) {
	t.Parallel()
	walkFront(t, gatewayFront)
}

// TestWalkForwardAuth walks forward-auth mode as TestWalkGateway walks
// gateway mode, through nginx on deploy/nginx-forward-auth.conf.
func TestWalkForwardAuth(t *testing.T) {
	t.Parallel()
	if _, err := thirdparty.FindTool("nginx"); err != nil {
		skipOrFail(t, "%v", err)
	}
	walkFront(t, nginxFront)
}
