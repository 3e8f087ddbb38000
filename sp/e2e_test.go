package sp_test

import (
	"context"
	"crypto"
	"crypto/x509"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/samlha/samlha/sp/failure"
	"github.com/samlha/samlha/sp/respond"
	"github.com/samlha/samlha/store"
	"github.com/samlha/samlha/store/memory"
)

func memoryStores(t testing.TB, _ int) store.Store {
	st := memory.New(memory.Options{})
	t.Cleanup(func() { st.Close() })
	return st
}

// Per-replica memory behind round robin: the failure from the field. Every
// login's ACS POST reaches a replica other than the one that began it, and
// every one fails with the cross-instance cause; none succeeds by accident.
func TestE2EMemoryRoundRobinFailsCrossInstance(t *testing.T) {
	t.Parallel()
	top := startTopology(t, topologyConfig{Store: memoryStores})
	const logins = 6
	for i := range logins {
		res := top.login(t, top.browser(), "alice")
		if res.OK {
			t.Fatalf("login %d succeeded through round robin with per-replica memory:\n%s", i, describe(res))
		}
		if res.StartInstance == "" || res.ACSInstance == "" || res.StartInstance == res.ACSInstance {
			t.Fatalf("login %d did not cross replicas (the test proxy should force it):\n%s", i, describe(res))
		}
		if res.Cause != string(failure.CauseStateCrossInstance) {
			t.Fatalf("login %d: cause %q, want %q:\n%s", i, res.Cause, failure.CauseStateCrossInstance, describe(res))
		}
		last := res.Hops[len(res.Hops)-1]
		if last.Status != http.StatusMisdirectedRequest {
			t.Errorf("login %d: ACS answered %d, want 421", i, last.Status)
		}
		body := string(res.Final.Body)
		for _, want := range []string{res.StartInstance, res.ACSInstance, "--store redis", "sticky"} {
			if !strings.Contains(body, want) {
				t.Errorf("login %d: error page does not mention %q", i, want)
			}
		}
	}
	var failures float64
	for _, r := range top.Replicas {
		failures += counterValue(t, r, "samlha_sp_failures_total", map[string]string{"cause": string(failure.CauseStateCrossInstance)})
	}
	if failures != logins {
		t.Errorf("samlha_sp_failures_total{cause=cross-instance} summed over replicas = %v, want %d", failures, logins)
	}
}

// With one shared key, stateless mode finishes logins on any replica.
func TestE2EStatelessSharedKey(t *testing.T) {
	t.Parallel()
	top := startTopology(t, topologyConfig{})
	for i := range 4 {
		res := top.login(t, top.browser(), "bob")
		if !res.OK {
			t.Fatalf("login %d failed:\n%s", i, describe(res))
		}
		if res.StartInstance == res.ACSInstance {
			t.Fatalf("login %d did not cross replicas:\n%s", i, describe(res))
		}
	}
}

// With a key per replica, stateless logins fail at the ACS with a cause that
// says so.
func TestE2EStatelessKeyMismatch(t *testing.T) {
	t.Parallel()
	keys := make([]struct {
		k crypto.Signer
		c *x509.Certificate
	}, 3)
	top := startTopology(t, topologyConfig{Keys: func(t testing.TB, i int) (crypto.Signer, *x509.Certificate) {
		keys[i].k, keys[i].c = newKeyPair(t)
		return keys[i].k, keys[i].c
	}})
	for i := range 3 {
		res := top.login(t, top.browser(), "alice")
		if res.OK || res.Cause != string(failure.CauseStateSignatureInvalid) {
			t.Fatalf("login %d: want failure %s:\n%s", i, failure.CauseStateSignatureInvalid, describe(res))
		}
		if !strings.Contains(string(res.Final.Body), "--sp-key") {
			t.Errorf("the page should tell the operator to share --sp-key")
		}
	}
}

// A response begun in one browser and posted from another is refused, and
// does not burn the first browser's login.
func TestE2EResponseFromAnotherBrowser(t *testing.T) {
	t.Parallel()
	top := startTopology(t, topologyConfig{Replicas: 1, Store: memoryStores})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	victim := top.browser()
	pending, res, err := victim.LoginUntilACS(ctx, top.ProxyURL+"/app", "alice", "alice-password")
	if err != nil {
		t.Fatalf("LoginUntilACS: %v\n%s", err, describe(res))
	}

	fresh := top.browser() // no cookies of this SP at all
	if r := fresh.Submit(ctx, pending); r.OK || r.Cause != string(failure.CauseBindingCookieMissing) {
		t.Fatalf("post from a browser without the binding cookie: want %s:\n%s", failure.CauseBindingCookieMissing, describe(r))
	}
	attacker := top.browser() // has a binding cookie of its own
	if _, err := attacker.Get(ctx, top.ProxyURL+"/app"); err != nil {
		t.Fatal(err)
	}
	if r := attacker.Submit(ctx, pending); r.OK || r.Cause != string(failure.CauseBindingMismatch) {
		t.Fatalf("post from another browser: want %s:\n%s", failure.CauseBindingMismatch, describe(r))
	}
	if r := victim.Submit(ctx, pending); !r.OK {
		t.Fatalf("the real browser could not finish its login after the forged posts:\n%s", describe(r))
	}
}

// A session that lives on another replica must not loop: with requests
// landing in pairs on alternate replicas, each login succeeds and the next
// page lands where the session is not; after MaxRelogins the SP explains.
func TestE2ESessionCrossInstanceDoesNotLoop(t *testing.T) {
	t.Parallel()
	top := startTopology(t, topologyConfig{Replicas: 2, Store: memoryStores, MaxRelogins: 2,
		Pick: func(n int64, _ *http.Request) int { return int(n/2) % 2 }})
	res := top.login(t, top.browser(), "alice")
	if res.OK || res.Cause != string(failure.CauseSessionCrossInstance) {
		t.Fatalf("want %s after capped re-logins:\n%s", failure.CauseSessionCrossInstance, describe(res))
	}
	acs := 0
	for _, h := range res.Hops {
		if strings.HasSuffix(h.URL, "/saml/acs") {
			acs++
		}
	}
	if acs != 3 {
		t.Errorf("%d ACS posts, want 3 (the login and MaxRelogins=2 re-logins):\n%s", acs, describe(res))
	}
	if res.Final.Header.Get("Location") != "" {
		t.Error("the final answer must not redirect")
	}
}

// A store that is down gives 503 store-unavailable, at the start of a login
// and at the ACS; nothing is guessed.
func TestE2EStoreDown(t *testing.T) {
	t.Parallel()
	var stores []store.Store
	top := startTopology(t, topologyConfig{Replicas: 1, Store: func(t testing.TB, i int) store.Store {
		st := memoryStores(t, i)
		stores = append(stores, st)
		return st
	}})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	b := top.browser()
	pending, res, err := b.LoginUntilACS(ctx, top.ProxyURL+"/app", "alice", "alice-password")
	if err != nil {
		t.Fatalf("%v\n%s", err, describe(res))
	}
	stores[0].Close()
	if r := b.Submit(ctx, pending); r.OK || r.Cause != string(failure.CauseStoreUnavailable) || r.Hops[len(r.Hops)-1].Status != 503 {
		t.Fatalf("ACS with the store down: want 503 %s:\n%s", failure.CauseStoreUnavailable, describe(r))
	}
	if r := top.login(t, top.browser(), "alice"); r.OK || r.Cause != string(failure.CauseStoreUnavailable) {
		t.Fatalf("login start with the store down: want %s:\n%s", failure.CauseStoreUnavailable, describe(r))
	}
	resp, err := http.Get(top.Replicas[0].URL + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var ready struct {
		Ready  bool
		Checks map[string]string
	}
	_ = json.NewDecoder(resp.Body).Decode(&ready)
	if resp.StatusCode != 503 || ready.Ready {
		t.Errorf("/readyz with the store down: %d %+v, want 503 not ready", resp.StatusCode, ready)
	}
}

// Every reply carries the serving instance.
func TestE2EInstanceHeaderEverywhere(t *testing.T) {
	t.Parallel()
	top := startTopology(t, topologyConfig{Replicas: 1, Store: memoryStores})
	for _, path := range []string{"/", "/app", "/whoami", "/saml/metadata", "/healthz", "/readyz", "/nope", "/static/style.css"} {
		c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
		resp, err := c.Get(top.Replicas[0].URL + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if got := resp.Header.Get(respond.HeaderInstance); got != "sp-1" {
			t.Errorf("%s: %s = %q, want sp-1", path, respond.HeaderInstance, got)
		}
	}
}
