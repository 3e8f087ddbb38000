package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/samlha/samlha/cmd/samllab/internal/scenario"
	"github.com/samlha/samlha/sp/sptest"
)

// The gateway scenarios: demoapp (no SAML code, answering with the user
// only when the identity JWT verifies) behind three samlsp gateways on
// Redis, round robin, with one gateway killed mid-run: nearly every login
// succeeds and no session is lost. Through nginx auth_request (the
// reference config): every login succeeds and every session holds.
func TestGatewayScenarios(t *testing.T) {
	// Parallel: it only reads the shared run, begun by TestMain.
	t.Parallel()
	r, _ := sharedRun.get(t, "TestGatewayScenarios")
	for _, s := range r.Scenarios {
		if s.Skipped != "" || s.Error != "" {
			t.Fatalf("%s: skipped %q, error %q", s.Name, s.Skipped, s.Error)
		}
		if s.Strategy != "gateway" || len(s.Replicas) != 3 {
			t.Errorf("%s: strategy %q, replicas %+v", s.Name, s.Strategy, s.Replicas)
		}
		// A login fails on state only if the shared store failed it:
		// nothing here may.
		for c := range s.Logins.Failed {
			if strings.HasPrefix(c, "state-") || strings.HasPrefix(c, "session-") || c == "wrong-user" {
				t.Errorf("%s: a login failed on %s (%d)", s.Name, c, s.Logins.Failed[c])
			}
		}
	}
	rr := scenarioByName(t, r, "gateway-roundrobin-redis")
	if len(rr.Faults) != 1 || rr.Faults[0].Target != "sp-2" || rr.Replicas[1].Fault != "kill" {
		t.Errorf("gateway-roundrobin-redis: faults %+v replicas %+v; want sp-2 killed", rr.Faults, rr.Replicas)
	}
	// Only what sp-2 was serving when it died (at most one login per
	// worker, four here) may fail.
	if rr.Logins.Tried != 30 || rr.Logins.Succeeded < rr.Logins.Tried-4 {
		t.Errorf("gateway-roundrobin-redis: %+v; want all but the logins in flight on sp-2 to succeed", rr.Logins)
	}
	if rr.Sessions.Revisited == 0 || rr.Sessions.Gone != 0 {
		t.Errorf("gateway-roundrobin-redis: sessions %+v; want every session kept", rr.Sessions)
	}
	// Deploy day: every gateway restarted in turn. Sessions live in Redis
	// and the JWT keys are the same everywhere: nothing is lost; only a
	// request caught by a stopping gateway may fail, as an error.
	roll := scenarioByName(t, r, "gateway-roundrobin-redis-rolling")
	if len(roll.Faults) != 1 || roll.Sessions.Gone != 0 || roll.Sessions.Lost != 0 {
		t.Errorf("gateway-roundrobin-redis-rolling: faults %+v sessions %+v; want every session kept", roll.Faults, roll.Sessions)
	}
	if roll.Logins.Tried != 30 || roll.Logins.Succeeded < roll.Logins.Tried-4 {
		t.Errorf("gateway-roundrobin-redis-rolling: %+v; want all but requests caught by a stopping gateway to succeed", roll.Logins)
	}
	if testBins.Nginx == "" {
		requireCI(t, "nginx is not installed (apt-get install -y nginx): gateway-forward-auth not run")
	}
	fa := scenarioByName(t, r, "gateway-forward-auth")
	if fa.Logins.Tried != 30 || fa.Logins.Succeeded != 30 || fa.Sessions.Lost != 0 || fa.Sessions.Gone != 0 {
		t.Errorf("gateway-forward-auth: logins %+v sessions %+v; want every login to succeed and every session to hold", fa.Logins, fa.Sessions)
	}
	acs := 0
	for _, rep := range fa.Replicas {
		if rep.ACS > 0 {
			acs++
		}
	}
	if acs < 2 {
		t.Errorf("gateway-forward-auth: ACS POSTs on %d replica(s) (%+v): nginx did not balance", acs, fa.Replicas)
	}
}

// Without nginx, the forward-auth scenario is skipped with the reason, but
// under CI=true it fails instead: CI must run it.
func TestForwardAuthScenarioRequiredUnderCI(t *testing.T) {
	scs, err := scenario.Select([]string{"gateway-forward-auth", "gateway-roundrobin-redis"})
	if err != nil {
		t.Fatal(err)
	}
	fa, rr := scs[1], scs[0]
	if fa.Name != "gateway-forward-auth" {
		fa, rr = scs[0], scs[1]
	}
	bins := testBins
	bins.Nginx = ""
	t.Setenv("CI", "")
	if skipped, failed := notRun(fa, bins, ""); !strings.Contains(skipped, "needs nginx") || failed != "" {
		t.Errorf("without nginx, outside CI: skipped %q failed %q; want skipped for nginx", skipped, failed)
	}
	t.Setenv("CI", "true")
	if skipped, failed := notRun(fa, bins, ""); skipped != "" || !strings.Contains(failed, "needs nginx") || !strings.Contains(failed, "CI=true") {
		t.Errorf("without nginx, CI=true: skipped %q failed %q; want a failure", skipped, failed)
	}
	if skipped, failed := notRun(rr, bins, ""); skipped != "" || failed != "" {
		t.Errorf("the proxy gateway scenario needs no nginx: skipped %q failed %q", skipped, failed)
	}
	bins.DemoApp = ""
	if skipped, _ := notRun(rr, bins, ""); !strings.Contains(skipped, "demoapp") {
		t.Errorf("without demoapp: skipped %q", skipped)
	}
}

// samllab up --mode gateway: demoapp behind samlsp gateways. A person logs
// in at the printed URL; the app receives the identity headers and
// verifies the JWT; a forged identity sent to the app directly gets 401.
func TestUpGateway(t *testing.T) {
	// Parallel (free ports, its own directory): it mostly waits, so it
	// overlaps the deploy-day scenarios after the serial tests.
	t.Parallel()
	up := startUp(t, "--mode", "gateway", "--replicas", "2", "--store", "redis")
	for _, want := range []string{"demoapp (no SAML code) behind 2 samlsp gateways", "identity headers it received", "JWKS", "/saml/jwks.json"} {
		if !strings.Contains(up.printed, want) {
			t.Errorf("up printed no %q:\n%s", want, up.printed)
		}
	}
	direct := up.field("app, direct", 2)
	if !strings.HasPrefix(direct, "http://127.0.0.1:") {
		t.Fatalf("up printed no direct app URL (%q):\n%s", direct, up.printed)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	b := sptest.NewBrowser(sptest.Options{})
	res := b.Login(ctx, up.appURL, "bob", "bob-password")
	if !res.OK {
		t.Fatalf("login at %s: %s %v", up.appURL, res.Cause, res.Err)
	}
	// What the app received, as JSON, through the gateway with the
	// session; a forged identity header from the client does not get
	// through.
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, up.appURL, nil)
	req.Header.Set("Accept", "application/json")
	req.Header.Set("X-Samlha-User", "mallory")
	for _, c := range b.Cookies(req.URL) {
		req.AddCookie(c)
	}
	var rep struct {
		User    string            `json:"user"`
		JWT     string            `json:"jwt"`
		Headers map[string]string `json:"headers"`
		Claims  map[string]any    `json:"claims"`
	}
	status, body := getJSON(t, req, &rep)
	if status != 200 || rep.User != "bob" || rep.JWT != "verified" || rep.Headers["X-Email"] != "bob@example.com" || rep.Claims["sub"] == nil {
		t.Errorf("the app through the gateway: %d %s", status, body)
	}
	forged, _ := http.NewRequestWithContext(ctx, http.MethodGet, direct, nil)
	forged.Header.Set("Accept", "application/json")
	forged.Header.Set("X-Samlha-User", "mallory")
	if status, body := getJSON(t, forged, &rep); status != http.StatusUnauthorized || rep.User != "" {
		t.Errorf("a forged identity sent to the app directly: %d %s; want 401", status, body)
	}
	up.stop(t)
}

// up's mode is checked before anything starts.
func TestUpModeFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--mode", "sidecar"}, `--mode "sidecar": want sp, gateway or forward-auth`},
		{[]string{"--mode", "forward-auth", "--replicas", "2"}, "--mode forward-auth runs nginx's reference config: 3 replicas"},
		{[]string{"--mode", "forward-auth", "--stickiness", "duration"}, "no stickiness"},
	} {
		err := run(context.Background(), append([]string{"up", "--bin-dir", filepath.Dir(testBins.SP)}, tc.args...), io.Discard, io.Discard)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("up %v: %v, want %q", tc.args, err, tc.want)
		}
	}
}

func getJSON(t *testing.T, req *http.Request, v any) (int, string) {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err := json.Unmarshal(body, v); err != nil {
		t.Fatalf("%s: %v: %s", req.URL, err, body)
	}
	return resp.StatusCode, string(body)
}

// upRun is a samllab up running in the background.
type upRun struct {
	appURL, printed string
	out             *syncBuffer
	cancel          context.CancelFunc
	done            chan error
}

// startUp runs samllab up with args on free ports and waits until it
// prints the URL to open.
func startUp(t *testing.T, args ...string) *upRun {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	u := &upRun{out: &syncBuffer{}, cancel: cancel, done: make(chan error, 1)}
	t.Cleanup(func() {
		cancel()
		select {
		case <-u.done:
		case <-time.After(20 * time.Second):
		}
	})
	args = append([]string{"up", "--fixed-ports=false", "--bin-dir", filepath.Dir(testBins.SP), "--out", filepath.Join(t.TempDir(), "up")}, args...)
	go func() { u.done <- run(ctx, args, u.out, u.out) }()
	deadline := time.Now().Add(90 * time.Second)
	for u.appURL == "" {
		// The URL line comes first; the rest of the block follows in one
		// write (the tab writer's Flush) before "Ctrl-C stops everything".
		if s := u.out.String(); strings.Contains(s, "Ctrl-C stops everything") {
			u.printed = s
			u.appURL = u.field("Open", 1)
			if u.appURL == "" {
				t.Fatalf("up printed no URL to open:\n%s", s)
			}
		}
		select {
		case err := <-u.done:
			t.Fatalf("up ended early: %v\n%s", err, u.out.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("up printed no URL in time:\n%s", u.out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	return u
}

// field returns field i of the printed line that starts with label.
func (u *upRun) field(label string, i int) string {
	for _, line := range strings.Split(u.printed, "\n") {
		if strings.HasPrefix(line, label) {
			if f := strings.Fields(line); len(f) > i {
				return f[i]
			}
		}
	}
	return ""
}

// stop cancels up (Ctrl-C) and checks that it stops cleanly and leaves
// nothing answering.
func (u *upRun) stop(t *testing.T) {
	t.Helper()
	u.cancel()
	select {
	case err := <-u.done:
		if err != nil {
			t.Fatalf("up after Ctrl-C: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("up did not stop")
	}
	if _, err := http.Get(u.appURL); err == nil {
		t.Error("the topology still answers after up stopped")
	}
}
