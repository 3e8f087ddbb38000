package main

import (
	"context"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/samlha/samlha/cmd/samllab/internal/chromium"
	"github.com/samlha/samlha/cmd/samllab/internal/topo"
	"github.com/samlha/samlha/sp/sptest"
)

// chromiumPath finds Debian's Chromium, or skips (fails under CI).
func chromiumPath(t *testing.T) string {
	t.Helper()
	if os.Getenv("SAMLLAB_SKIP_CHROMIUM") == "1" {
		t.Skip("SAMLLAB_SKIP_CHROMIUM=1")
	}
	p := chromium.Find()
	if p == "" {
		requireCI(t, "no Chromium on PATH (apt-get install chromium)")
	}
	return p
}

// chromiumLogin logs in with a real headless Chromium.
func chromiumLogin(t *testing.T, bin string, top *topo.Topology, think time.Duration) chromium.Result {
	t.Helper()
	res, err := chromium.Login(context.Background(), chromium.Options{ExecPath: bin, Resolve: top.Resolve, ThinkTime: think, Logf: t.Logf},
		top.PublicURL+"/app", "alice", "alice-password")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("chromium: ACS decision %q instance %s cause %q; sent %v, withheld %v", res.Decision, res.ACSInstance, res.Cause, res.CookiesSent, res.CookiesBlocked)
	return res
}

// scriptedACS logs in with the scripted browser and returns its ACS POST.
func scriptedACS(t *testing.T, top *topo.Topology, o sptest.Options) (*sptest.Result, sptest.Hop) {
	t.Helper()
	o.Resolve, o.RootCAs = top.Resolve, top.RootCAs
	b := sptest.NewBrowser(o)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	res := b.Login(ctx, top.PublicURL+"/app", "alice", "alice-password")
	for _, h := range res.Hops {
		if h.Form == sptest.FormSAMLResponse {
			return res, h
		}
	}
	t.Fatalf("scripted browser: no ACS POST\n%+v", res)
	return nil, sptest.Hop{}
}

// Real Chromium confirms the SameSite trap the scripted browser emulates:
// a SameSite=Lax affinity cookie is withheld from the IdP's cross-site POST
// to the ACS, so the proxy balances that POST anew; the ALB-style
// SameSite=None twin reaches it and the POST stays pinned. The scripted
// browser makes the same judgement on the same topology.
func TestChromiumConfirmsSameSiteTrap(t *testing.T) {
	bin := chromiumPath(t)
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

			got := chromiumLogin(t, bin, top, 0)
			if pinned := got.Decision == "pinned"; pinned != tc.wantPinned {
				t.Fatalf("Chromium: ACS POST proxy decision %q (cookies sent %v), want pinned=%v", got.Decision, got.CookiesSent, tc.wantPinned)
			}
			if slices.Contains(got.CookiesSent, "AWSALB") {
				t.Errorf("Chromium sent the SameSite=Lax AWSALB cookie on the cross-site POST")
			}
			if tc.twin && !slices.Contains(got.CookiesSent, "AWSALBCORS") {
				t.Errorf("Chromium did not send the AWSALBCORS twin: sent %v", got.CookiesSent)
			}
			if tc.twin && got.Cause != "" {
				t.Errorf("with the twin the login failed: %s", got.Cause)
			}

			res, acs := scriptedACS(t, top, sptest.Options{})
			if pinned := acs.ProxyDecision == "pinned"; pinned != tc.wantPinned {
				t.Errorf("scripted browser: ACS decision %q, Chromium's pinned=%v", acs.ProxyDecision, tc.wantPinned)
			}
			if slices.Contains(acs.CookiesSent, "AWSALB") {
				t.Error("scripted browser sent the Lax AWSALB cookie cross-site")
			}
			if tc.twin && (!res.OK || !slices.Contains(acs.CookiesSent, "AWSALBCORS")) {
				t.Errorf("scripted browser with the twin: ok=%v cause=%s cookies=%v", res.OK, res.Cause, acs.CookiesSent)
			}
		})
	}
}

// Real Chromium confirms the two-minute rule behind the slow-user trap: an
// affinity cookie without SameSite still goes with the IdP's cross-site
// POST while it is younger than two minutes, and no longer after. The
// scripted browser, with Lax+POST emulated and the think time simulated,
// judges both alike. The old-cookie half waits two minutes of real time
// (Chromium's clock cannot be moved through CDP: Network.setCookie sets no
// creation time), so it runs in parallel with the other tests and not
// under -short.
func TestChromiumConfirmsLaxPlusPOST(t *testing.T) {
	bin := chromiumPath(t)
	env := newEnv(t)
	for _, tc := range []struct {
		name       string
		think      time.Duration
		wantPinned bool
	}{
		{"young", 0, true},
		{"old", sptest.LaxPlusPOSTWindow + 5*time.Second, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.think > 0 {
				if testing.Short() {
					t.Skip("-short: the old-cookie half waits two minutes")
				}
				t.Parallel()
			}
			top, err := topo.Start(context.Background(), env, topo.Spec{Name: "chromium-laxpost-" + tc.name, Replicas: 2, Store: "memory",
				Stickiness: "duration", CookieSameSite: "default", TLS: true, CrossSite: true})
			if err != nil {
				t.Fatal(err)
			}
			defer top.Stop()
			got := chromiumLogin(t, bin, top, tc.think)
			if pinned := got.Decision == "pinned"; pinned != tc.wantPinned || slices.Contains(got.CookiesSent, "AWSALB") != tc.wantPinned {
				t.Fatalf("Chromium after %v at the IdP: ACS decision %q, cookies sent %v (withheld %v); want pinned=%v",
					tc.think, got.Decision, got.CookiesSent, got.CookiesBlocked, tc.wantPinned)
			}
			_, acs := scriptedACS(t, top, sptest.Options{LaxPlusPOST: true, SimulatedThink: tc.think})
			if pinned := acs.ProxyDecision == "pinned"; pinned != tc.wantPinned || slices.Contains(acs.CookiesSent, "AWSALB") != tc.wantPinned {
				t.Errorf("scripted browser after %v (simulated): ACS decision %q, cookies %v; Chromium's pinned=%v",
					tc.think, acs.ProxyDecision, acs.CookiesSent, tc.wantPinned)
			}
		})
	}
}

// samllab run --chromium N: each scenario's Chromium logins agree with the
// scripted browser's, on a scenario where the cookie is withheld and on
// one where state is shared.
func TestRunWithChromium(t *testing.T) {
	chromiumPath(t)
	r, printed := runLab(t, "--scenarios", "sticky-lax-cookie/lax,roundrobin-redis", "--logins", "6", "--concurrency", "2", "--chromium", "2")
	for _, s := range r.Scenarios {
		c := s.Chromium
		if c == nil || c.Logins != 2 || c.Agreed != 2 {
			t.Errorf("%s: chromium %+v; want 2 logins that agree with the scripted browser", s.Name, c)
		}
	}
	if !strings.Contains(printed, "agreed with the scripted browser on 2 of 2") {
		t.Errorf("the table does not show the agreement:\n%s", printed)
	}
}
