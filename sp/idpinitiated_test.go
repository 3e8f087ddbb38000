package sp_test

import (
	"encoding/xml"
	"html"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/crewjam/saml"

	"github.com/samlha/samlha/sp"
	"github.com/samlha/samlha/sp/login"
	"github.com/samlha/samlha/sp/respond"
	"github.com/samlha/samlha/sp/sptest/devidptest"
	"github.com/samlha/samlha/store"
	"github.com/samlha/samlha/store/memory"
	"github.com/samlha/samlha/store/redis/redistest"
)

type fixedSPs struct{ md *saml.EntityDescriptor }

func (f fixedSPs) GetServiceProvider(*http.Request, string) (*saml.EntityDescriptor, error) {
	return f.md, nil
}

type fixedSession struct{}

func (fixedSession) GetSession(http.ResponseWriter, *http.Request, *saml.IdpAuthnRequest) *saml.Session {
	now := time.Now()
	return &saml.Session{ID: "s-" + now.Format(time.RFC3339Nano), CreateTime: now, ExpireTime: now.Add(time.Hour),
		Index: "idx-" + now.Format(time.RFC3339Nano), NameID: "carol@example.com", UserName: "carol", UserEmail: "carol@example.com"}
}

// mintIDPInitiated has crewjam's IdentityProvider make an unsolicited
// response for the SP whose metadata md is, as an IdP's IdP-initiated
// login (samlidp's /login/:shortcut) would, and returns its form fields.
func mintIDPInitiated(t *testing.T, idp *saml.IdentityProvider, md *saml.EntityDescriptor, relayState string) url.Values {
	t.Helper()
	idp.ServiceProviderProvider = fixedSPs{md}
	rec := httptest.NewRecorder()
	idp.ServeIDPInitiated(rec, httptest.NewRequest(http.MethodGet, "http://idp.test/login/x", nil), md.EntityID, relayState)
	if rec.Code != 200 {
		t.Fatalf("IdP-initiated response: %d %s", rec.Code, rec.Body)
	}
	m := regexp.MustCompile(`name="SAMLResponse" value="([^"]+)"`).FindStringSubmatch(rec.Body.String())
	if m == nil {
		t.Fatalf("no SAMLResponse in %s", rec.Body)
	}
	return url.Values{"SAMLResponse": {html.UnescapeString(m[1])}, "RelayState": {relayState}}
}

func testIdP(t *testing.T) *saml.IdentityProvider {
	key, cert := devidptest.KeyPair(t)
	md, _ := url.Parse("http://idp.test/metadata")
	sso, _ := url.Parse("http://idp.test/sso")
	return &saml.IdentityProvider{Key: key, Certificate: cert, MetadataURL: *md, SSOURL: *sso, SessionProvider: fixedSession{}}
}

func spMetadata(t *testing.T, base string) *saml.EntityDescriptor {
	t.Helper()
	resp, err := http.Get(base + "/saml/metadata")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var md saml.EntityDescriptor
	if err := xml.Unmarshal(b, &md); err != nil {
		t.Fatal(err)
	}
	return &md
}

func postForm(t *testing.T, base string, form url.Values) *http.Response {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, base+"/saml/acs", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return do(t, req)
}

// An IdP-initiated login lands on an allowed RelayState path (anything
// else on /), and the same response replayed to another replica sharing
// the store is refused.
func TestIDPInitiatedLoginAndCrossReplicaReplay(t *testing.T) {
	t.Parallel()
	idp := testIdP(t)
	srv := redistest.Start(t)
	top := startTopology(t, topologyConfig{Replicas: 2, Store: redisStores(srv.URL()),
		Configure: func(_ int, c *sp.Config) {
			c.IDP = &login.IDPMetadata{Static: idp.Metadata()}
			c.IDPInitiated = &login.IDPInitiated{RedirectPrefixes: []string{"/reports"}}
		}})
	md := spMetadata(t, top.ProxyURL)

	for _, tc := range []struct{ relayState, landing string }{
		{"/reports/q3", "/reports/q3"},
		{"https://evil.test/", "/"},
		{"", "/"},
		{"/admin", "/"},
	} {
		form := mintIDPInitiated(t, idp, md, tc.relayState)
		resp := postForm(t, top.Replicas[0].URL, form)
		if resp.StatusCode != http.StatusFound || resp.Header.Get("Location") != tc.landing {
			body, _ := io.ReadAll(resp.Body)
			t.Fatalf("RelayState %q: %d Location %q, want 302 to %q: %s", tc.relayState, resp.StatusCode, resp.Header.Get("Location"), tc.landing, body)
		}
		// The session works on the other replica.
		req := mustGet(top.Replicas[1].URL + "/whoami")
		for _, c := range resp.Cookies() {
			req.AddCookie(c)
		}
		if w := do(t, req); w.StatusCode != 200 {
			t.Fatalf("session from an IdP-initiated login: whoami %d", w.StatusCode)
		}
		// Replayed to the other replica: refused.
		again := postForm(t, top.Replicas[1].URL, form)
		if again.StatusCode != http.StatusForbidden || again.Header.Get(respond.HeaderCause) != "assertion-replayed" {
			t.Fatalf("replay to another replica: %d cause %q, want 403 assertion-replayed", again.StatusCode, again.Header.Get(respond.HeaderCause))
		}
	}
}

// Without the switch, an unsolicited response is refused.
func TestIDPInitiatedOffByDefault(t *testing.T) {
	t.Parallel()
	idp := testIdP(t)
	top := startTopology(t, topologyConfig{Replicas: 1,
		Store:     func(testing.TB, int) store.Store { return memory.New(memory.Options{}) },
		Configure: func(_ int, c *sp.Config) { c.IDP = &login.IDPMetadata{Static: idp.Metadata()} }})
	form := mintIDPInitiated(t, idp, spMetadata(t, top.ProxyURL), "")
	resp := postForm(t, top.Replicas[0].URL, form)
	if resp.StatusCode == http.StatusFound || resp.Header.Get(respond.HeaderCause) != "state-unknown" {
		t.Fatalf("unsolicited response without --allow-idp-initiated: %d cause %q", resp.StatusCode, resp.Header.Get(respond.HeaderCause))
	}
}

// A per-replica replay record (memory store, stateless mode) is refused
// at startup unless the operator accepts it.
func TestIDPInitiatedRefusedWithPerReplicaReplayRecord(t *testing.T) {
	t.Parallel()
	key, cert := spKeyPair(t)
	root, _ := url.Parse("http://127.0.0.1:1")
	for _, tc := range []struct {
		name   string
		store  store.Store
		accept bool
		ok     bool
	}{
		{"memory", memory.New(memory.Options{}), false, false},
		{"stateless", nil, false, false},
		{"memory, accepted", memory.New(memory.Options{}), true, true},
		{"stateless, accepted", nil, true, true},
	} {
		_, err := sp.New(sp.Config{InstanceID: "sp-1", RootURL: root, Store: tc.store, Key: key, Certificate: cert,
			IDP: &login.IDPMetadata{Static: &saml.EntityDescriptor{}}, IDPInitiated: &login.IDPInitiated{AcceptLocalReplay: tc.accept}})
		if (err == nil) != tc.ok {
			t.Errorf("%s: sp.New error %v, want ok=%v", tc.name, err, tc.ok)
		}
		if err != nil && !strings.Contains(err.Error(), "replay") {
			t.Errorf("%s: error does not name the replay risk: %v", tc.name, err)
		}
	}
}

// A response to an SP-initiated login, posted without its RelayState (so
// that it looks unsolicited), is refused: it names an AuthnRequest
// (InResponseTo), which the IdP-initiated path has none of. It cannot skip
// the browser binding that way.
func TestIDPInitiatedRefusesSolicitedResponseWithoutRelayState(t *testing.T) {
	t.Parallel()
	top := startTopology(t, topologyConfig{Replicas: 1,
		Store: func(testing.TB, int) store.Store { return memory.New(memory.Options{}) },
		Configure: func(_ int, c *sp.Config) {
			c.IDPInitiated = &login.IDPInitiated{AcceptLocalReplay: true}
		}})
	b := top.browser()
	ctx := t.Context()
	form, res, err := b.LoginUntilACS(ctx, top.ProxyURL+"/app", "alice", "alice-password")
	if err != nil {
		t.Fatalf("%v\n%s", err, describe(res))
	}
	stripped := url.Values{"SAMLResponse": form.Fields["SAMLResponse"]}
	resp := postForm(t, top.Replicas[0].URL, stripped)
	if resp.StatusCode != http.StatusForbidden || resp.Header.Get(respond.HeaderCause) != "response-invalid" {
		t.Fatalf("solicited response without RelayState: %d cause %q, want 403 response-invalid", resp.StatusCode, resp.Header.Get(respond.HeaderCause))
	}
	// The login itself still finishes in its own browser.
	if res := b.Submit(ctx, form); !res.OK {
		t.Fatalf("the real login after the attempt:\n%s", describe(res))
	}
}
