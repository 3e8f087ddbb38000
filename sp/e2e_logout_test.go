package sp_test

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/samlha/samlha/sp"
	"github.com/samlha/samlha/sp/login"
	"github.com/samlha/samlha/store/redis/redistest"
)

// SP-initiated single logout through the IdP ends the session on every
// replica that shares the store, and the browser comes back to the SP.
func TestE2ELogout(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	top := startTopology(t, topologyConfig{Store: redisStores(srv.URL())})
	b := top.browser()
	if res := top.login(t, b, "alice"); !res.OK {
		t.Fatal(describe(res))
	}
	for _, r := range top.Replicas {
		if code, _ := whoami(t, top, b, r); code != http.StatusOK {
			t.Fatalf("before logout, %s: %d", r.ID, code)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	// To the IdP with a signed LogoutRequest, and back with its
	// LogoutResponse (an auto-submitting form) to the SP's SLO endpoint.
	// GET /logout is a page with one button; pressing it POSTs the token.
	confirm, err := b.Browse(ctx, top.ProxyURL+"/logout")
	if err != nil {
		t.Fatal(err)
	}
	if confirm.Status != http.StatusOK || confirm.URL.Path != "/logout" {
		t.Fatalf("GET /logout: %d at %s, want the logout page", confirm.Status, confirm.URL)
	}
	for _, r := range top.Replicas {
		if code, _ := whoami(t, top, b, r); code != http.StatusOK {
			t.Fatalf("GET /logout ended the session on %s: only the page's button may", r.ID)
		}
	}
	page, err := b.SubmitForm(ctx, confirm, sp.PathLogout)
	if err != nil {
		t.Fatal(err)
	}
	// It ends on the signed-out page, which says the IdP confirmed it and
	// starts no login by itself.
	if page.Status != http.StatusOK || page.URL.Path != login.PathSignedOut || page.Header.Get("X-Samlha-Logout") != "confirmed" ||
		page.Header.Get("X-Samlha-Instance") == "" || !strings.Contains(string(page.Body), `id="signed-out"`) {
		var hops []string
		for _, h := range page.Hops {
			hops = append(hops, h.Method+" "+h.URL+" -> "+http.StatusText(h.Status))
		}
		t.Fatalf("logout ended with %d at %s (X-Samlha-Logout %q), want the signed-out page:\n%s", page.Status, page.URL,
			page.Header.Get("X-Samlha-Logout"), strings.Join(hops, "\n"))
	}
	sawSLO := false
	for _, h := range page.Hops {
		if u, err := url.Parse(h.URL); err == nil && u.Path == "/saml/slo" && u.Query().Get("SAMLResponse") != "" {
			sawSLO = true
		}
	}
	if !sawSLO {
		t.Error("the IdP's LogoutResponse never reached /saml/slo: the logout was local only")
	}
	for _, r := range top.Replicas {
		if code, body := whoami(t, top, b, r); code != http.StatusUnauthorized {
			t.Errorf("after logout, %s still has the session: %d %v", r.ID, code, body)
		}
	}
}
