package sp_test

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/crewjam/saml"
	"golang.org/x/net/html"
	"golang.org/x/net/html/atom"

	"github.com/samlha/samlha/sp"
	"github.com/samlha/samlha/sp/failure"
	"github.com/samlha/samlha/sp/limits"
	"github.com/samlha/samlha/sp/login"
	"github.com/samlha/samlha/sp/respond"
	"github.com/samlha/samlha/sp/sptest"
)

// postBindingOnly makes the SP see an IdP that takes AuthnRequests only by
// HTTP-POST, so a login starts with the SP's auto-submitting form.
func postBindingOnly(c *sp.Config) {
	md := *c.IDP.Static
	md.IDPSSODescriptors = append([]saml.IDPSSODescriptor(nil), md.IDPSSODescriptors...)
	for i := range md.IDPSSODescriptors {
		var keep []saml.Endpoint
		for _, e := range md.IDPSSODescriptors[i].SingleSignOnServices {
			if e.Binding == saml.HTTPPostBinding {
				keep = append(keep, e)
			}
		}
		md.IDPSSODescriptors[i].SingleSignOnServices = keep
	}
	c.IDP = &login.IDPMetadata{Static: &md}
}

// cspDirectives parses a Content-Security-Policy value.
func cspDirectives(v string) map[string][]string {
	d := map[string][]string{}
	for _, part := range strings.Split(v, ";") {
		f := strings.Fields(part)
		if len(f) > 0 {
			d[strings.ToLower(f[0])] = f[1:]
		}
	}
	return d
}

// scripts returns the nonce attribute of every <script> in body, and
// whether any element has an inline event handler or style.
func scripts(t *testing.T, body []byte) (nonces []string, inline bool) {
	t.Helper()
	doc, err := html.Parse(bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	var walk func(*html.Node)
	walk = func(n *html.Node) {
		if n.Type == html.ElementNode {
			if n.DataAtom == atom.Script {
				nonce := ""
				for _, a := range n.Attr {
					if a.Key == "nonce" {
						nonce = a.Val
					}
				}
				nonces = append(nonces, nonce)
			}
			for _, a := range n.Attr {
				if strings.HasPrefix(a.Key, "on") || a.Key == "style" {
					inline = true
				}
			}
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c)
		}
	}
	walk(doc)
	return nonces, inline
}

// checkPageHeaders checks the rules every HTML page of the SP follows: one
// policy that forbids framing and everything by default, allows exactly the
// page's own scripts by nonce (or none), no caching, no Referer.
func checkPageHeaders(t *testing.T, name string, h http.Header, body []byte) {
	t.Helper()
	if ct := h.Get("Content-Type"); !strings.HasPrefix(ct, "text/html") {
		t.Errorf("%s: Content-Type %q, want an HTML page", name, ct)
		return
	}
	policies := h.Values("Content-Security-Policy")
	if len(policies) != 1 {
		t.Errorf("%s: %d Content-Security-Policy headers %q, want exactly the page's own", name, len(policies), policies)
		return
	}
	d := cspDirectives(policies[0])
	if got := strings.Join(d["frame-ancestors"], " "); got != "'none'" {
		t.Errorf("%s: frame-ancestors %q, want 'none'", name, got)
	}
	if got := strings.Join(d["default-src"], " "); got != "'none'" {
		t.Errorf("%s: default-src %q, want 'none'", name, got)
	}
	nonces, inline := scripts(t, body)
	if inline {
		t.Errorf("%s: the page has inline event handlers or styles, which its policy forbids", name)
	}
	src := d["script-src"]
	switch {
	case len(nonces) == 0 && len(src) > 0:
		t.Errorf("%s: no script on the page, but script-src %q allows some", name, src)
	case len(nonces) > 0:
		if len(src) != 1 || !strings.HasPrefix(src[0], "'nonce-") {
			t.Errorf("%s: script-src %q, want exactly one nonce", name, src)
			break
		}
		want := strings.TrimSuffix(strings.TrimPrefix(src[0], "'nonce-"), "'")
		for _, n := range nonces {
			if n != want {
				t.Errorf("%s: a script with nonce %q under a policy allowing %q", name, n, want)
			}
		}
	}
	if cc := h.Get("Cache-Control"); !strings.Contains(cc, "no-store") {
		t.Errorf("%s: Cache-Control %q, want no-store", name, cc)
	}
	if rp := h.Get("Referrer-Policy"); rp != respond.ReferrerPolicy {
		t.Errorf("%s: Referrer-Policy %q, want %q", name, rp, respond.ReferrerPolicy)
	}
	if h.Get("X-Content-Type-Options") != "nosniff" || h.Get("X-Frame-Options") != "DENY" {
		t.Errorf("%s: X-Content-Type-Options %q, X-Frame-Options %q", name, h.Get("X-Content-Type-Options"), h.Get("X-Frame-Options"))
	}
}

// Every HTML page the SP writes: the index, the app page, the logout page,
// an error page, and the auto-submitting AuthnRequest form.
func TestE2EPageHeaders(t *testing.T) {
	t.Parallel()
	top := startTopology(t, topologyConfig{Replicas: 1, Store: memoryStores})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	b := top.browser()
	res := top.login(t, b, "alice")
	if !res.OK {
		t.Fatal(describe(res))
	}
	checkPageHeaders(t, "app page", res.Final.Header, res.Final.Body)
	for name, path := range map[string]string{"index": "/", "logout page": "/logout", "error page": "/saml/acs"} {
		page, err := b.Get(ctx, top.ProxyURL+path)
		if err != nil {
			t.Fatal(err)
		}
		checkPageHeaders(t, name, page.Header, page.Body)
	}
	// A rate-limited login start is an error page too.
	limited := startTopology(t, topologyConfig{Replicas: 1, Store: memoryStores,
		LoginLimits: &limits.LoginLimits{PerClientRate: 0.001, PerClientBurst: 1, TotalRate: -1}})
	if _, err := top.browser().Get(ctx, limited.ProxyURL+"/app"); err != nil {
		t.Fatal(err)
	}
	page, err := top.browser().Get(ctx, limited.ProxyURL+"/app")
	if err != nil || page.Status != http.StatusTooManyRequests {
		t.Fatalf("second start: %v %v, want 429", page, err)
	}
	checkPageHeaders(t, "login-rate-limited page", page.Header, page.Body)

	// The HTTP-POST binding's form: its one script allowed by nonce, a new
	// nonce each time; the login still completes through it.
	post := startTopology(t, topologyConfig{Replicas: 1, Store: memoryStores, Configure: func(_ int, c *sp.Config) { postBindingOnly(c) }})
	var seen []string
	for range 2 {
		resp, err := noRedirects("").Get(post.ProxyURL + "/app")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if !bytes.Contains(body, []byte(`name="SAMLRequest"`)) {
			t.Fatalf("GET /app with a POST-only IdP: %d, no AuthnRequest form:\n%s", resp.StatusCode, body)
		}
		checkPageHeaders(t, "AuthnRequest form", resp.Header, body)
		seen = append(seen, resp.Header.Get("Content-Security-Policy"))
		if !strings.Contains(resp.Header.Get("Cache-Control"), "no-cache") || resp.Header.Get("Pragma") != "no-cache" {
			t.Errorf("AuthnRequest form: Cache-Control %q Pragma %q, want the SAML binding's no-cache, no-store and Pragma no-cache",
				resp.Header.Get("Cache-Control"), resp.Header.Get("Pragma"))
		}
	}
	if seen[0] == seen[1] {
		t.Errorf("two forms had the same policy (nonce): %q", seen[0])
	}
	if res := post.login(t, post.browser(), "bob"); !res.OK {
		t.Fatalf("login through the POST form:\n%s", describe(res))
	}
}

// A POST to /logout without the logout page's token, or with another
// session's, is refused and logs no one out; the page's own form works.
func TestE2ELogoutNeedsToken(t *testing.T) {
	t.Parallel()
	top := startTopology(t, topologyConfig{Replicas: 1, Store: memoryStores})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	alice, bob := top.browser(), top.browser()
	for _, u := range []struct {
		b    *sptest.Browser
		name string
	}{{alice, "alice"}, {bob, "bob"}} {
		if res := top.login(t, u.b, u.name); !res.OK {
			t.Fatal(describe(res))
		}
	}
	root, _ := url.Parse(top.ProxyURL)
	bobsPage, err := bob.Get(ctx, top.ProxyURL+"/logout")
	if err != nil {
		t.Fatal(err)
	}
	bobsToken := formValue(t, bobsPage.Body, "token")
	for name, form := range map[string]url.Values{
		"no token":        {},
		"empty token":     {"token": {""}},
		"another's token": {"token": {bobsToken}},
	} {
		req, _ := http.NewRequest("POST", top.ProxyURL+"/logout", strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Origin", "http://evil.example") // a form on another site
		for _, c := range alice.Cookies(root) {
			req.AddCookie(c)
		}
		resp, err := noRedirects("").Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden || resp.Header.Get(respond.HeaderCause) != string(failure.CauseLogoutTokenInvalid) {
			t.Errorf("%s: %d cause %q, want 403 logout-token-invalid", name, resp.StatusCode, resp.Header.Get(respond.HeaderCause))
		}
		if code, _ := whoami(t, top, alice, top.Replicas[0]); code != http.StatusOK {
			t.Fatalf("%s: alice was logged out (/whoami %d)", name, code)
		}
	}
	// A GET never logs out; other methods are refused.
	for _, m := range []string{"GET", "PUT", "DELETE"} {
		req, _ := http.NewRequest(m, top.ProxyURL+"/logout", nil)
		for _, c := range alice.Cookies(root) {
			req.AddCookie(c)
		}
		resp, err := noRedirects("").Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if want := map[string]int{"GET": 200}[m]; (want == 0 && resp.StatusCode != http.StatusMethodNotAllowed) || (want != 0 && resp.StatusCode != want) {
			t.Errorf("%s /logout: %d", m, resp.StatusCode)
		}
		if code, _ := whoami(t, top, alice, top.Replicas[0]); code != http.StatusOK {
			t.Fatalf("%s /logout logged alice out", m)
		}
	}
	// Alice's own page: its button logs her out, and only her.
	page, err := alice.Get(ctx, top.ProxyURL+"/logout")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := alice.SubmitForm(ctx, page, sp.PathLogout); err != nil {
		t.Fatal(err)
	}
	if code, _ := whoami(t, top, alice, top.Replicas[0]); code != http.StatusUnauthorized {
		t.Errorf("after alice's logout: /whoami %d, want 401", code)
	}
	if code, _ := whoami(t, top, bob, top.Replicas[0]); code != http.StatusOK {
		t.Errorf("alice's logout ended bob's session: /whoami %d", code)
	}
}

// formValue is the value of the input named name in the page's first form.
func formValue(t *testing.T, body []byte, name string) string {
	t.Helper()
	doc, err := html.Parse(bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	var val string
	var walk func(*html.Node)
	walk = func(n *html.Node) {
		if n.Type == html.ElementNode && n.DataAtom == atom.Input {
			var nm, v string
			for _, a := range n.Attr {
				switch a.Key {
				case "name":
					nm = a.Val
				case "value":
					v = a.Val
				}
			}
			if nm == name && val == "" {
				val = v
			}
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c)
		}
	}
	walk(doc)
	if val == "" {
		t.Fatalf("no input %q on the page:\n%s", name, body)
	}
	return val
}
