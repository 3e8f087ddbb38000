package main

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	"github.com/samlha/samlha/cmd/samllab/internal/topo"
	"github.com/samlha/samlha/sp/sptest"
)

// chromiumPath finds Debian's Chromium.
func chromiumPath(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	requireCI(t, "no Chromium on PATH (apt-get install chromium)")
	return ""
}

// acsObservation is what a browser's POST to the ACS looked like.
type acsObservation struct {
	decision, instance, cause string
	sentCookies               []string
}

// chromiumLogin logs in with a real headless Chromium and reports the ACS
// POST's proxy decision and the SP's answer.
func chromiumLogin(t *testing.T, bin string, top *topo.Topology) acsObservation {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(bin),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("no-first-run", true),
		// The lab's names, resolved to loopback; the lab's throwaway CA is
		// not in Chromium's store.
		chromedp.Flag("host-resolver-rules", "MAP "+topo.SPHost+" 127.0.0.1, MAP "+topo.IdPHost+" 127.0.0.1"),
		chromedp.Flag("ignore-certificate-errors", true),
		chromedp.UserDataDir(t.TempDir()),
	)
	actx, cancel := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancel()
	ctx, cancel := chromedp.NewContext(actx)
	defer cancel()
	ctx, cancel = context.WithTimeout(ctx, 45*time.Second)
	defer cancel()

	var mu sync.Mutex
	var obs acsObservation
	// A redirect keeps the request ID: the ACS POST and the GET it is
	// redirected to share one. The ACS's own cookies are in the first
	// ExtraInfo of the ID; its response comes as the next request's
	// RedirectResponse, or as ResponseReceived when it does not redirect.
	acsRequests := map[network.RequestID]bool{}
	extraSeen := map[network.RequestID]bool{}
	recordHeaders := func(h network.Headers) {
		for k, v := range h {
			s, _ := v.(string)
			switch strings.ToLower(k) {
			case "x-stickyproxy-decision":
				obs.decision = s
			case "x-samlha-instance":
				obs.instance = s
			case "x-samlha-cause":
				obs.cause = s
			}
		}
	}
	onRequest := func(e *network.EventRequestWillBeSent) {
		t.Logf("chromium: %s %s", e.Request.Method, e.Request.URL)
		if e.RedirectResponse != nil && acsRequests[e.RequestID] && strings.HasSuffix(e.RedirectResponse.URL, "/saml/acs") {
			recordHeaders(e.RedirectResponse.Headers)
		}
		if e.Request.Method == "POST" && strings.HasSuffix(e.Request.URL, "/saml/acs") {
			acsRequests[e.RequestID] = true
		}
	}
	onExtra := func(e *network.EventRequestWillBeSentExtraInfo) {
		if !acsRequests[e.RequestID] || extraSeen[e.RequestID] {
			return
		}
		extraSeen[e.RequestID] = true
		for _, c := range e.AssociatedCookies {
			t.Logf("chromium: ACS POST cookie %s (SameSite=%v) blocked: %v", c.Cookie.Name, c.Cookie.SameSite, c.BlockedReasons)
			if len(c.BlockedReasons) == 0 {
				obs.sentCookies = append(obs.sentCookies, c.Cookie.Name)
			}
		}
	}
	onResponse := func(e *network.EventResponseReceived) {
		if acsRequests[e.RequestID] && strings.HasSuffix(e.Response.URL, "/saml/acs") {
			recordHeaders(e.Response.Headers)
		}
	}
	// The listener runs in the tab's event loop: record, return at once.
	err := chromedp.Listen(ctx, func(ev any) {
		mu.Lock()
		defer mu.Unlock()
		switch e := ev.(type) {
		case *network.EventRequestWillBeSent:
			onRequest(e)
		case network.EventRequestWillBeSent:
			onRequest(&e)
		case *network.EventRequestWillBeSentExtraInfo:
			onExtra(e)
		case network.EventRequestWillBeSentExtraInfo:
			onExtra(&e)
		case *network.EventResponseReceived:
			onResponse(e)
		case network.EventResponseReceived:
			onResponse(&e)
		}
	})
	if err != nil {
		t.Fatalf("start Chromium: %v", err)
	}
	err = chromedp.Do(ctx,
		chromedp.Navigate(top.PublicURL+"/app"),
		chromedp.WaitVisible(chromedp.CSS(`input[name="user"]`)),
		chromedp.SendKeys(chromedp.CSS(`input[name="user"]`), "alice"),
		chromedp.SendKeys(chromedp.CSS(`input[name="password"]`), "alice-password"),
		chromedp.Submit(chromedp.CSS(`input[name="password"]`)),
		// Either the app (login finished) or the SP's error page.
		chromedp.WaitVisible(chromedp.CSS(`#user, #cause`)),
	)
	page, _ := chromedp.Run(ctx, chromedp.OuterHTML(chromedp.CSS("body")))
	if err != nil {
		t.Fatalf("Chromium login: %v\npage:\n%s", err, page)
	}
	mu.Lock()
	defer mu.Unlock()
	if obs.decision == "" {
		t.Fatalf("Chromium's ACS POST carried no proxy decision; page:\n%s", page)
	}
	return obs
}

// Real Chromium confirms the SameSite trap the scripted browser emulates:
// a SameSite=Lax affinity cookie is withheld from the IdP's cross-site POST
// to the ACS, so the proxy balances that POST anew; the ALB-style
// SameSite=None twin reaches it and the POST stays pinned. The scripted
// browser makes the same judgement on the same topology.
func TestChromiumConfirmsSameSiteTrap(t *testing.T) {
	bin := chromiumPath(t)
	if os.Getenv("SAMLLAB_SKIP_CHROMIUM") == "1" {
		t.Skip("SAMLLAB_SKIP_CHROMIUM=1")
	}
	env := newEnv(t)
	for _, tc := range []struct {
		name       string
		twin       bool
		wantPinned bool
	}{
		{"lax", false, false},
		{"twin", true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			top, err := topo.Start(context.Background(), env, topo.Spec{Name: "chromium-" + tc.name, Replicas: 2, Store: "memory",
				Stickiness: "duration", CookieSameSite: "lax", Twin: tc.twin, TLS: true, CrossSite: true})
			if err != nil {
				t.Fatal(err)
			}
			defer top.Stop()

			got := chromiumLogin(t, bin, top)
			if pinned := got.decision == "pinned"; pinned != tc.wantPinned {
				t.Fatalf("Chromium: ACS POST proxy decision %q (cookies sent %v), want pinned=%v", got.decision, got.sentCookies, tc.wantPinned)
			}
			for _, c := range got.sentCookies {
				if c == "AWSALB" {
					t.Errorf("Chromium sent the SameSite=Lax AWSALB cookie on the cross-site POST")
				}
			}
			if tc.twin && !contains(got.sentCookies, "AWSALBCORS") {
				t.Errorf("Chromium did not send the AWSALBCORS twin: sent %v", got.sentCookies)
			}
			if tc.twin && got.cause != "" {
				t.Errorf("with the twin the login failed: %s", got.cause)
			}

			// The scripted browser, on the same topology.
			b := sptest.NewBrowser(sptest.Options{Resolve: top.Resolve, RootCAs: top.RootCAs})
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			res := b.Login(ctx, top.PublicURL+"/app", "alice", "alice-password")
			var acs *sptest.Hop
			for i := range res.Hops {
				if res.Hops[i].Form == sptest.FormSAMLResponse {
					acs = &res.Hops[i]
				}
			}
			if acs == nil {
				t.Fatalf("scripted browser: no ACS POST\n%+v", res)
			}
			if pinned := acs.ProxyDecision == "pinned"; pinned != tc.wantPinned {
				t.Errorf("scripted browser: ACS decision %q, Chromium's pinned=%v", acs.ProxyDecision, tc.wantPinned)
			}
			if contains(acs.CookiesSent, "AWSALB") {
				t.Error("scripted browser sent the Lax AWSALB cookie cross-site")
			}
			if tc.twin && (!res.OK || !contains(acs.CookiesSent, "AWSALBCORS")) {
				t.Errorf("scripted browser with the twin: ok=%v cause=%s cookies=%v", res.OK, res.Cause, acs.CookiesSent)
			}
		})
	}
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}
