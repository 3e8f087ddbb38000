package sptest_test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/xml"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/crewjam/saml"
	"github.com/crewjam/saml/samlsp"

	"github.com/samlha/samlha/sp/devidp"
	"github.com/samlha/samlha/sp/sptest"
	"github.com/samlha/samlha/sp/sptest/devidptest"
)

// The two sites of the cross-site tests. ".test" is reserved (RFC 2606)
// and not on the public suffix list, so each name's registrable domain is
// its last two labels: samlha-idp.test and samlha-sp.test, two sites.
const (
	idpHost = "idp.samlha-idp.test"
	spHost  = "sp.samlha-sp.test"
)

// causeACSRefused is the cause the test SP names when its ACS refuses a
// response (crewjam's stock SP names none).
const causeACSRefused = "acs-refused"

// testSP is crewjam's stock samlsp middleware (cookie request tracker,
// signed-cookie sessions) served on loopback, in the shape samlha's SPs
// answer the browser: /app needs a login and names the user in
// X-Samlha-User; every reply names the instance.
type testSP struct {
	URL string // root URL
	mw  *samlsp.Middleware
}

// spSetup says how to start a test SP.
type spSetup struct {
	host     string // "" for 127.0.0.1
	instance string
	tls      *tls.Config // serve https with it
	binding  string      // how the SP sends its AuthnRequest; "" for crewjam's default (HTTP-Redirect)
}

func startSP(t testing.TB, idp *devidptest.IdP, setup spSetup) *testSP {
	t.Helper()
	srv := httptest.NewUnstartedServer(nil)
	port := srv.Listener.Addr().(*net.TCPAddr).Port
	host := setup.host
	if host == "" {
		host = "127.0.0.1"
	}
	scheme := "http"
	if setup.tls != nil {
		scheme = "https"
	}
	root, err := url.Parse(fmt.Sprintf("%s://%s:%d", scheme, host, port))
	if err != nil {
		t.Fatal(err)
	}
	key, cert := devidptest.KeyPair(t) // an SP key; sharing the test IdP's is harmless here
	mw, err := samlsp.New(samlsp.Options{
		URL:         *root,
		Key:         key,
		Certificate: cert,
		IDPMetadata: idp.Metadata(),
		Binding:     setup.binding,
	})
	if err != nil {
		t.Fatal(err)
	}
	mw.OnError = func(w http.ResponseWriter, _ *http.Request, err error) {
		if ire, ok := errors.AsType[*saml.InvalidResponseError](err); ok {
			err = ire.PrivateErr
		}
		t.Logf("SP %s refused: %v", setup.instance, err)
		w.Header().Set(sptest.HeaderCause, causeACSRefused)
		http.Error(w, "Forbidden", http.StatusForbidden)
	}
	mux := http.NewServeMux()
	mux.Handle("/saml/", mw)
	mux.Handle("/app", mw.RequireAccount(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		user := samlsp.AttributeFromContext(r.Context(), "uid")
		w.Header().Set(sptest.HeaderUser, user)
		fmt.Fprintf(w, "hello %s\n", user)
	})))
	srv.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set(sptest.HeaderInstance, setup.instance)
		mux.ServeHTTP(w, r)
	})
	if setup.tls != nil {
		srv.TLS = setup.tls
		srv.StartTLS()
	} else {
		srv.Start()
	}
	t.Cleanup(srv.Close)

	md, err := xml.Marshal(mw.ServiceProvider.Metadata())
	if err != nil {
		t.Fatal(err)
	}
	if err := idp.RegisterSPMetadata(setup.instance, md); err != nil {
		t.Fatal(err)
	}
	return &testSP{URL: root.String(), mw: mw}
}

func ctxFor(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// names returns the names of the hops' forms, methods and paths, for
// messages.
func describe(hops []sptest.Hop) string {
	var b strings.Builder
	for i, h := range hops {
		u, _ := url.Parse(h.URL)
		fmt.Fprintf(&b, "\n  %d. %s %s%s -> %d cross-site=%v cookies=%v form=%q instance=%q cause=%q",
			i+1, h.Method, u.Host, u.Path, h.Status, h.CrossSite, h.CookiesSent, h.Form, h.Instance, h.Cause)
	}
	return b.String()
}

// acsHop returns the hop that posted the SAMLResponse.
func acsHop(t *testing.T, res *sptest.Result) sptest.Hop {
	t.Helper()
	for _, h := range res.Hops {
		if h.Form == sptest.FormSAMLResponse {
			return h
		}
	}
	t.Fatalf("no hop posted a SAMLResponse:%s", describe(res.Hops))
	return sptest.Hop{}
}

func hasTrackingCookie(h sptest.Hop) bool {
	return slices.ContainsFunc(h.CookiesSent, func(n string) bool { return strings.HasPrefix(n, "saml_") })
}

// On one site (everything on 127.0.0.1, ports apart), crewjam's stock SP
// works: the tracking cookie reaches the ACS.
func TestLoginSameSite(t *testing.T) {
	t.Parallel()
	idp := devidptest.Start(t, devidp.Config{})
	sp := startSP(t, idp, spSetup{instance: "sp-1"})

	b := sptest.NewBrowser(sptest.Options{})
	defer b.CloseIdleConnections()
	res := b.Login(ctxFor(t), sp.URL+"/app", "alice", "alice-password")
	if !res.OK {
		t.Fatalf("login failed: cause %q, err %v%s", res.Cause, res.Err, describe(res.Hops))
	}
	wantPath := []string{"GET /app", "GET /sso", "POST /sso", "POST /saml/acs", "GET /app"}
	if got := hopPaths(res.Hops); !slices.Equal(got, wantPath) {
		t.Errorf("hops = %q, want %q", got, wantPath)
	}
	acs := acsHop(t, res)
	if acs.CrossSite || !hasTrackingCookie(acs) {
		t.Errorf("ACS hop: cross-site=%v cookies=%v, want same-site with a saml_ tracking cookie", acs.CrossSite, acs.CookiesSent)
	}
	if res.StartInstance != "sp-1" || res.ACSInstance != "sp-1" || res.FinishInstance != "sp-1" {
		t.Errorf("instances start=%q acs=%q finish=%q, want sp-1 each", res.StartInstance, res.ACSInstance, res.FinishInstance)
	}
	if res.User != "alice" || res.Cause != "" || res.Err != nil {
		t.Errorf("user=%q cause=%q err=%v", res.User, res.Cause, res.Err)
	}

	// The same browser now has sessions at the SP and at the IdP.
	page, err := b.Get(ctxFor(t), sp.URL+"/app")
	if err != nil || page.Status != http.StatusOK || page.Header.Get(sptest.HeaderUser) != "alice" {
		t.Errorf("second visit: err %v, status %d, user %q", err, statusOf(page), userOf(page))
	}
}

// With the IdP on another site over plain http, the SP's tracking cookie
// (SameSite unset, so Lax) is held back from the IdP's cross-site POST to
// the ACS, and the login fails: the failure from the field. Without
// SameSite emulation the same login succeeds, so SameSite is the cause.
func TestLoginCrossSiteHTTPFails(t *testing.T) {
	t.Parallel()
	idp := devidptest.Start(t, devidp.Config{PublicURL: "http://" + idpHost})
	sp := startSP(t, idp, spSetup{host: spHost, instance: "sp-1"})
	resolve := map[string]string{idpHost: "127.0.0.1", spHost: "127.0.0.1"}

	b := sptest.NewBrowser(sptest.Options{Resolve: resolve})
	defer b.CloseIdleConnections()
	res := b.Login(ctxFor(t), sp.URL+"/app", "alice", "alice-password")
	if res.OK {
		t.Fatalf("cross-site login over http succeeded; want the SameSite failure%s", describe(res.Hops))
	}
	if res.Cause != causeACSRefused {
		t.Errorf("cause = %q (err %v), want %q%s", res.Cause, res.Err, causeACSRefused, describe(res.Hops))
	}
	acs := acsHop(t, res)
	if !acs.CrossSite || hasTrackingCookie(acs) || acs.Status != http.StatusForbidden {
		t.Errorf("ACS hop: cross-site=%v cookies=%v status=%d, want cross-site, no saml_ cookie, 403", acs.CrossSite, acs.CookiesSent, acs.Status)
	}
	if n := len(b.Cookies(mustURL(t, sp.URL+"/saml/acs"))); n == 0 {
		t.Errorf("the jar holds no cookie for the ACS: the tracking cookie should be there, only held back")
	}

	lax := sptest.NewBrowser(sptest.Options{Resolve: resolve, DisableSameSite: true})
	defer lax.CloseIdleConnections()
	if res := lax.Login(ctxFor(t), sp.URL+"/app", "alice", "alice-password"); !res.OK {
		t.Errorf("without SameSite emulation: cause %q, err %v%s", res.Cause, res.Err, describe(res.Hops))
	}
}

// Over https, crewjam issues the tracking cookie with SameSite=None;
// Secure, which the cross-site POST carries: the fix.
func TestLoginCrossSiteHTTPSSucceeds(t *testing.T) {
	t.Parallel()
	tlsConfig, pool := testTLS(t, idpHost, spHost)
	idp := devidptest.Start(t, devidp.Config{PublicURL: "http://" + idpHost})
	sp := startSP(t, idp, spSetup{host: spHost, instance: "sp-1", tls: tlsConfig})

	b := sptest.NewBrowser(sptest.Options{
		Resolve: map[string]string{idpHost: "127.0.0.1", spHost: "127.0.0.1"},
		RootCAs: pool,
	})
	defer b.CloseIdleConnections()
	res := b.Login(ctxFor(t), sp.URL+"/app", "bob", "bob-password")
	if !res.OK {
		t.Fatalf("cause %q, err %v%s", res.Cause, res.Err, describe(res.Hops))
	}
	acs := acsHop(t, res)
	if !acs.CrossSite || !hasTrackingCookie(acs) {
		t.Errorf("ACS hop: cross-site=%v cookies=%v, want cross-site with the SameSite=None tracking cookie", acs.CrossSite, acs.CookiesSent)
	}
}

// A second SP reuses the browser's IdP session when its AuthnRequest comes
// by a cross-site GET (HTTP-Redirect binding): the IdP's session cookie
// (SameSite unset, so Lax) goes along. By a cross-site POST (HTTP-POST
// binding) it does not, and the IdP asks for the password again.
func TestIdPSessionAcrossSPs(t *testing.T) {
	t.Parallel()
	// Three hosts of one site: cookies do not isolate ports, so SPs on one
	// host would share crewjam's session cookie.
	hosts := []string{"sp1.samlha-sp.test", "sp2.samlha-sp.test", "sp3.samlha-sp.test"}
	tlsConfig, pool := testTLS(t, hosts...)
	idp := devidptest.Start(t, devidp.Config{PublicURL: "http://" + idpHost})
	sp1 := startSP(t, idp, spSetup{host: hosts[0], instance: "sp-1", tls: tlsConfig})
	sp2 := startSP(t, idp, spSetup{host: hosts[1], instance: "sp-2", tls: tlsConfig})
	sp3 := startSP(t, idp, spSetup{host: hosts[2], instance: "sp-3", tls: tlsConfig, binding: saml.HTTPPostBinding})

	b := sptest.NewBrowser(sptest.Options{Resolve: map[string]string{idpHost: "127.0.0.1", hosts[0]: "127.0.0.1", hosts[1]: "127.0.0.1", hosts[2]: "127.0.0.1"}, RootCAs: pool})
	defer b.CloseIdleConnections()
	for _, tc := range []struct {
		sp        *testSP
		wantForms []string
	}{
		{sp1, []string{sptest.FormLogin, sptest.FormSAMLResponse}},
		{sp2, []string{sptest.FormSAMLResponse}},
		{sp3, []string{sptest.FormSAMLRequest, sptest.FormLogin, sptest.FormSAMLResponse}},
	} {
		res := b.Login(ctxFor(t), tc.sp.URL+"/app", "alice", "alice-password")
		if !res.OK {
			t.Fatalf("%s: cause %q err %v%s", tc.sp.URL, res.Cause, res.Err, describe(res.Hops))
		}
		var forms []string
		for _, h := range res.Hops {
			if h.Form != "" {
				forms = append(forms, h.Form)
			}
		}
		if !slices.Equal(forms, tc.wantForms) {
			t.Errorf("%s: forms submitted %q, want %q%s", res.FinishInstance, forms, tc.wantForms, describe(res.Hops))
		}
	}
}

func TestLoginWrongPassword(t *testing.T) {
	t.Parallel()
	idp := devidptest.Start(t, devidp.Config{})
	sp := startSP(t, idp, spSetup{instance: "sp-1"})
	b := sptest.NewBrowser(sptest.Options{})
	defer b.CloseIdleConnections()
	res := b.Login(ctxFor(t), sp.URL+"/app", "alice", "not-her-password")
	if res.OK || res.Cause != sptest.CauseIdPLoginFailed {
		t.Fatalf("ok=%v cause=%q err=%v, want %q%s", res.OK, res.Cause, res.Err, sptest.CauseIdPLoginFailed, describe(res.Hops))
	}
}

// A response held back from one browser and submitted from another is
// refused by crewjam's cookie tracker (the other browser has no tracking
// cookie); submitted from its own browser it completes the login.
func TestLoginUntilACSAndSubmit(t *testing.T) {
	t.Parallel()
	idp := devidptest.Start(t, devidp.Config{})
	sp := startSP(t, idp, spSetup{instance: "sp-1"})

	victim := sptest.NewBrowser(sptest.Options{})
	defer victim.CloseIdleConnections()
	form, res, err := victim.LoginUntilACS(ctxFor(t), sp.URL+"/app", "alice", "alice-password")
	if err != nil {
		t.Fatalf("LoginUntilACS: %v%s", err, describe(res.Hops))
	}
	if form.User != "alice" || !strings.HasSuffix(form.Action, "/saml/acs") || form.Fields.Get("SAMLResponse") == "" || !strings.HasPrefix(form.From, idp.URL) {
		t.Fatalf("form = action %q from %q user %q fields %v", form.Action, form.From, form.User, slices.Sorted(maps.Keys(form.Fields)))
	}
	if got := len(res.Hops); got != 3 {
		t.Errorf("%d hops before the ACS, want 3%s", got, describe(res.Hops))
	}

	attacker := sptest.NewBrowser(sptest.Options{})
	defer attacker.CloseIdleConnections()
	if res := attacker.Submit(ctxFor(t), form); res.OK || res.Cause != causeACSRefused {
		t.Errorf("transplanted response: ok=%v cause=%q, want refused%s", res.OK, res.Cause, describe(res.Hops))
	}
	if res := victim.Submit(ctxFor(t), form); !res.OK {
		t.Errorf("own response: cause %q err %v%s", res.Cause, res.Err, describe(res.Hops))
	}
}

// Many browsers share one transport under load.
func TestConcurrentLoginsSharedTransport(t *testing.T) {
	t.Parallel()
	idp := devidptest.Start(t, devidp.Config{})
	sp := startSP(t, idp, spSetup{instance: "sp-1"})
	tr := sptest.NewTransport(nil, nil)
	defer tr.CloseIdleConnections()

	const n = 40
	var wg sync.WaitGroup
	results := make([]*sptest.Result, n)
	for i := range n {
		wg.Go(func() {
			b := sptest.NewBrowser(sptest.Options{Transport: tr, RequestTimeout: 10 * time.Second})
			user, pw := "alice", "alice-password"
			if i%2 == 1 {
				user, pw = "bob", "bob-password"
			}
			results[i] = b.Login(ctxFor(t), sp.URL+"/app", user, pw)
		})
	}
	wg.Wait()
	for i, res := range results {
		if !res.OK {
			t.Errorf("login %d: cause %q err %v", i, res.Cause, res.Err)
		}
	}
}

func hopPaths(hops []sptest.Hop) []string {
	var out []string
	for _, h := range hops {
		u, _ := url.Parse(h.URL)
		out = append(out, h.Method+" "+u.Path)
	}
	return out
}

func statusOf(p *sptest.Page) int {
	if p == nil {
		return 0
	}
	return p.Status
}

func userOf(p *sptest.Page) string {
	if p == nil {
		return ""
	}
	return p.Header.Get(sptest.HeaderUser)
}

func mustURL(t *testing.T, raw string) *url.URL {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// testTLS returns a server TLS config with a self-signed certificate for
// names, and a pool that trusts it.
func testTLS(t *testing.T, names ...string) (*tls.Config, *x509.CertPool) {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: names[0]},
		DNSNames:              names,
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}, pool
}

// BenchmarkLogin measures whole logins (browser, devidp, crewjam's SP, all
// in this process), in parallel over one shared transport.
func BenchmarkLogin(b *testing.B) {
	idp := devidptest.Start(b, devidp.Config{Logger: slog.New(slog.DiscardHandler)})
	sp := startSP(b, idp, spSetup{instance: "sp-1"})
	tr := sptest.NewTransport(nil, nil)
	defer tr.CloseIdleConnections()
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			br := sptest.NewBrowser(sptest.Options{Transport: tr})
			if res := br.Login(context.Background(), sp.URL+"/app", "alice", "alice-password"); !res.OK {
				b.Errorf("login: %s %v", res.Cause, res.Err)
				return
			}
		}
	})
}
