package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/samlha/samlha/cmd/samllab/internal/chromium"
	"github.com/samlha/samlha/cmd/samllab/internal/topo"
	"github.com/samlha/samlha/sp/sptest"
	"github.com/samlha/samlha/store/localproc"
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

// chromiumLogin logs in with a real headless Chromium, its cookies first
// aged by age (see chromium.Options.AgeFirst).
func chromiumLogin(t *testing.T, bin string, top *topo.Topology, age time.Duration) chromium.Result {
	t.Helper()
	res, err := chromium.Login(context.Background(), chromium.Options{ExecPath: bin, Resolve: top.Resolve, AgeFirst: age, Logf: t.Logf},
		top.PublicURL+"/app", "alice", "alice-password")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("chromium: ACS decision %q instance %s cause %q; sent %v, withheld %v", res.Decision, res.ACSInstance, res.Cause, res.CookiesSent, res.CookiesBlocked)
	return res
}

// scriptedACS logs in with the scripted browser and returns its ACS POST.
// With age, it first opens /healthz through the balancer and moves its
// clock on by age, as chromiumLogin waits.
func scriptedACS(t *testing.T, top *topo.Topology, o sptest.Options, age time.Duration) (*sptest.Result, sptest.Hop) {
	t.Helper()
	o.Resolve, o.RootCAs = top.Resolve, top.RootCAs
	var offset atomic.Int64
	o.Now = func() time.Time { return time.Now().Add(time.Duration(offset.Load())) }
	b := sptest.NewBrowser(o)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if age > 0 {
		if _, err := b.Get(ctx, top.PublicURL+"/healthz"); err != nil {
			t.Fatal(err)
		}
		// The proxy seals its cookie once a second: let its second turn,
		// so the login's first response re-seals it with a new value, as
		// it did after Chromium's real wait.
		sealed := time.Now().Unix()
		if err := localproc.Poll(ctx, func(context.Context) error {
			if time.Now().Unix() == sealed {
				return errors.New("same second")
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		offset.Add(int64(age))
	}
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

			res, acs := scriptedACS(t, top, sptest.Options{}, 0)
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

// Real Chromium confirms the two-minute rule behind the slow-user trap: a
// cookie without SameSite still goes with the IdP's cross-site POST while
// it is younger than two minutes, and not after. Chromium's clock cannot be
// moved through CDP (Network.setCookie sets no creation time), so the old
// half waits two minutes of real time, before the login rather than at the
// IdP's form (crewjam's IdP refuses a request issued more than 90 s ago):
// the page sets a cookie of its own, the balancer sets its affinity
// cookie, both age, then the login begins. The page's cookie, never set
// again, is withheld as Lax; the affinity cookie, re-sealed with a new
// value by the login's first response, is young again and sent. The
// scripted browser, with Lax+POST emulated and its clock moved on, judges
// the affinity cookie alike (its rule for the page's cookie is
// TestJarLaxPlusPOST's). The old half runs in parallel with the other
// tests and not under -short.
func TestChromiumConfirmsLaxPlusPOST(t *testing.T) {
	// Parallel: it runs after the package's other tests, by when the
	// old half's two minutes (begun by TestMain) have mostly passed,
	// instead of waiting them out first.
	t.Parallel()
	bin := chromiumPath(t)
	env := newEnv(t)
	for _, tc := range []struct {
		name string
		age  time.Duration
	}{
		{"young", 0},
		{"old", sptest.LaxPlusPOSTWindow + 5*time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.age > 0 && testing.Short() {
				t.Skip("-short: the old-cookie half waits two minutes")
			}
			var top *topo.Topology
			var got chromium.Result
			if tc.age > 0 {
				// Begun by TestMain, so that its two minutes of real
				// waiting overlap the package's other tests.
				old := <-oldLaxPlusPOST.await()
				top, got = old.top, old.res
				if top != nil {
					defer top.Stop()
				}
				for _, l := range old.logs {
					t.Log(l)
				}
				if old.err != nil {
					t.Fatal(old.err)
				}
			} else {
				var err error
				top, err = topo.Start(context.Background(), env, laxPlusPOSTSpec(tc.name))
				if err != nil {
					t.Fatal(err)
				}
				defer top.Stop()
				got = chromiumLogin(t, bin, top, tc.age)
			}
			if got.Decision != "pinned" || !slices.Contains(got.CookiesSent, "AWSALB") {
				t.Errorf("Chromium: ACS decision %q, cookies sent %v (withheld %v); want the young AWSALB sent and the POST pinned",
					got.Decision, got.CookiesSent, got.CookiesBlocked)
			}
			if tc.age > 0 {
				reasons := got.CookiesBlocked[chromium.ProbeCookie]
				if !slices.ContainsFunc(reasons, func(r string) bool { return strings.Contains(r, "SameSiteUnspecifiedTreatedAsLax") }) {
					t.Errorf("Chromium sent (or withheld for another reason: %v) a SameSite-less cookie %v old on the cross-site POST; want it withheld as Lax",
						reasons, tc.age)
				}
			}
			_, acs := scriptedACS(t, top, sptest.Options{LaxPlusPOST: true}, tc.age)
			if acs.ProxyDecision != "pinned" || !slices.Contains(acs.CookiesSent, "AWSALB") {
				t.Errorf("scripted browser (clock moved on %v): ACS decision %q, cookies %v; Chromium's: pinned with AWSALB", tc.age, acs.ProxyDecision, acs.CookiesSent)
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

func laxPlusPOSTSpec(name string) topo.Spec {
	return topo.Spec{Name: "chromium-laxpost-" + name, Replicas: 2, Store: "memory",
		Stickiness: "duration", CookieSameSite: "default", TLS: true, CrossSite: true}
}

// oldLaxPlusPOST is the old-cookie half of TestChromiumConfirmsLaxPlusPOST,
// begun by TestMain in the background: its Chromium login waits two minutes
// of real time, which would otherwise add two minutes to the package.
var oldLaxPlusPOST laxPlusPOSTRun

type laxPlusPOSTRun struct {
	done  chan oldLogin // nil: not begun (the test then runs it itself)
	taken bool
}

type oldLogin struct {
	top  *topo.Topology
	res  chromium.Result
	logs []string
	err  error
}

// begin starts the old-cookie login in its own run directory under dir.
func (r *laxPlusPOSTRun) begin(dir string) {
	r.done = make(chan oldLogin, 1)
	go func() {
		var o oldLogin
		defer func() { r.done <- o }()
		env, err := topo.NewEnv(filepath.Join(dir, "laxpost-run"), testBins, "", slog.New(slog.DiscardHandler))
		if err != nil {
			o.err = err
			return
		}
		if o.top, o.err = topo.Start(context.Background(), env, laxPlusPOSTSpec("old")); o.err != nil {
			return
		}
		var mu sync.Mutex
		logf := func(format string, args ...any) {
			mu.Lock()
			defer mu.Unlock()
			o.logs = append(o.logs, fmt.Sprintf(format, args...))
		}
		o.res, o.err = chromium.Login(context.Background(), chromium.Options{ExecPath: chromium.Find(), Resolve: o.top.Resolve,
			AgeFirst: sptest.LaxPlusPOSTWindow + 5*time.Second, Logf: logf}, o.top.PublicURL+"/app", "alice", "alice-password")
		logf("chromium: ACS decision %q instance %s cause %q; sent %v, withheld %v", o.res.Decision, o.res.ACSInstance, o.res.Cause, o.res.CookiesSent, o.res.CookiesBlocked)
	}()
}

// await returns the background login's result, beginning it now if
// TestMain did not.
func (r *laxPlusPOSTRun) await() <-chan oldLogin {
	if r.done == nil {
		dir, err := os.MkdirTemp("", "samllab-laxpost-")
		if err != nil {
			ch := make(chan oldLogin, 1)
			ch <- oldLogin{err: err}
			return ch
		}
		r.begin(dir)
	}
	r.taken = true
	return r.done
}

// abandon stops the background topology if no test took it.
func (r *laxPlusPOSTRun) abandon() {
	if r.done == nil || r.taken {
		return
	}
	(<-r.done).top.Stop()
}

// wanted says whether this run of the package will run the old-cookie
// half: Chromium is here and neither -short nor -run leaves it out.
func (r *laxPlusPOSTRun) wanted() bool {
	if testing.Short() || os.Getenv("SAMLLAB_SKIP_CHROMIUM") == "1" || chromium.Find() == "" {
		return false
	}
	return selected("TestChromiumConfirmsLaxPlusPOST", "old")
}

// selected says whether -run selects the test named top (and, if sub is
// not empty, its subtest sub), for work TestMain begins before the tests.
func selected(top, sub string) bool {
	f := flag.Lookup("test.run")
	if f == nil || f.Value.String() == "" {
		return true
	}
	ptop, psub, _ := strings.Cut(f.Value.String(), "/")
	matches := func(pattern, name string) bool {
		re, err := regexp.Compile(pattern)
		return err == nil && re.MatchString(name)
	}
	return matches(ptop, top) && (sub == "" || matches(psub, sub))
}
