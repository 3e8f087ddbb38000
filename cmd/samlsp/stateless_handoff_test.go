package main

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/samlha/samlha/sp/sptest"
)

// The move from stateless to Redis, with the binary's own code, each step
// a replica replaced at one address as a rolling deploy replaces it:
//
//	sp-1  --store stateless --store-handoff redis://   (step 1)
//	sp-2  --store redis --accept-stateless             (step 2)
//	sp-3  --store stateless --store-handoff redis://   (a step-1 replica not yet rolled)
//
// A login begun in sp-1's signed cookie finishes on sp-2, and sp-1's
// session JWT is a session there; the same response, tracking cookie and
// all, posted again from another browser is refused, because the store
// took the login once. A session and a pending login of sp-2 (in
// Redis) work on sp-3. A JWT logged out on sp-2 is refused on sp-3 too:
// the revocation is in the store, not only the browser's cookie gone.
func TestStatelessToRedisKeepsLoginsAndSessions(t *testing.T) {
	rs := newRolling(t)
	root := rs.root
	step1 := []string{"--store", "stateless", "--store-handoff", rs.redis.URL()}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	app := root + "/app"

	cancelA, doneA, _ := rs.start("sp-1", step1...)
	_, md := get(t, root+"/saml/metadata")
	if err := rs.idp.RegisterSPMetadata("samlsp", []byte(md)); err != nil {
		t.Fatal(err)
	}
	jwtUser := sptest.NewBrowser(sptest.Options{})
	if res := jwtUser.Login(ctx, app, "alice", "alice-password"); !res.OK || res.FinishInstance != "sp-1" {
		t.Fatalf("login on the stateless replica: %+v", res)
	}
	stolen := sptest.NewBrowser(sptest.Options{}) // a copy of alice's session cookie
	copyCookies(t, jwtUser, stolen, app)
	pending := sptest.NewBrowser(sptest.Options{})
	form, res, err := pending.LoginUntilACS(ctx, app, "bob", "bob-password")
	if err != nil || form == nil {
		t.Fatalf("a login up to the IdP's POST: %v %+v", err, res)
	}
	replay := sptest.NewBrowser(sptest.Options{}) // the same tracking cookie, in another browser
	copyCookies(t, pending, replay, form.Action)
	rs.stop(cancelA, doneA)

	cancelB, doneB, _ := rs.start("sp-2", "--store", "redis", "--store-url", rs.redis.URL(), "--accept-stateless")
	if res := pending.Submit(ctx, form); !res.OK || res.FinishInstance != "sp-2" {
		t.Errorf("the login begun on sp-1 (stateless), finished on sp-2 (redis): %+v", res)
	}
	if res := replay.Submit(ctx, form); res.OK || res.Cause != "state-already-used" {
		t.Errorf("the same response and tracking cookie from another browser: OK %v cause %q; want state-already-used", res.OK, res.Cause)
	}
	wantSession(ctx, t, jwtUser, app, "alice", "sp-1's session JWT on sp-2")
	storeUser := sptest.NewBrowser(sptest.Options{})
	if res := storeUser.Login(ctx, app, "bob", "bob-password"); !res.OK || res.FinishInstance != "sp-2" {
		t.Fatalf("login on the redis replica: %+v", res)
	}
	pending2 := sptest.NewBrowser(sptest.Options{})
	form2, res, err := pending2.LoginUntilACS(ctx, app, "alice", "alice-password")
	if err != nil || form2 == nil {
		t.Fatalf("a login on sp-2 up to the IdP's POST: %v %+v", err, res)
	}
	logout(ctx, t, jwtUser, root)
	rs.stop(cancelB, doneB)

	cancelC, doneC, _ := rs.start("sp-3", step1...)
	defer rs.stop(cancelC, doneC)
	wantSession(ctx, t, storeUser, app, "bob", "sp-2's session (in redis) on sp-3 (stateless, step 1)")
	if res := pending2.Submit(ctx, form2); !res.OK || res.FinishInstance != "sp-3" {
		t.Errorf("the login begun on sp-2 (redis), finished on sp-3 (stateless, step 1): %+v", res)
	}
	if page, err := stolen.Get(ctx, root+"/whoami"); err != nil || page.Status != http.StatusUnauthorized {
		t.Errorf("alice's JWT, logged out on sp-2, on sp-3: %v %v; want 401", err, page.Header.Get(sptest.HeaderUser))
	}
}

// copyCookies gives to the cookies from would send to rawURL.
func copyCookies(t *testing.T, from, to *sptest.Browser, rawURL string) {
	t.Helper()
	u, err := url.Parse(rawURL)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range from.Cookies(u) {
		if err := to.SetCookie(u, c); err != nil {
			t.Fatal(err)
		}
	}
}

// wantSession checks that b reaches app as user with no login on the way.
func wantSession(ctx context.Context, t *testing.T, b *sptest.Browser, app, user, what string) {
	t.Helper()
	page, err := b.Get(ctx, app)
	if err != nil || page.Status != http.StatusOK || len(page.Hops) != 1 || page.Header.Get(sptest.HeaderUser) != user {
		var status, hops int
		if page != nil {
			status, hops = page.Status, len(page.Hops)
		}
		t.Errorf("%s: %v, status %d after %d hops; want %s at once", what, err, status, hops, user)
	}
}

// logout logs b out through the logout page's button.
func logout(ctx context.Context, t *testing.T, b *sptest.Browser, root string) {
	t.Helper()
	confirm, err := b.Browse(ctx, root+"/logout")
	if err != nil || confirm.Status != http.StatusOK {
		t.Fatalf("GET /logout: %v %+v", err, confirm)
	}
	page, err := b.SubmitForm(ctx, confirm, "/saml/logout")
	if err != nil || page.Status != http.StatusOK || !strings.HasPrefix(page.URL.Path, "/saml/signed-out") {
		t.Fatalf("logout: %v, ended at %v", err, page)
	}
}
