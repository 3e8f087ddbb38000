package sp_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/beevik/etree"
	"github.com/crewjam/saml"
	"github.com/jonboulle/clockwork"
	"github.com/prometheus/client_golang/prometheus"
	dsig "github.com/russellhaering/goxmldsig"

	"github.com/samlha/samlha/sp"
	"github.com/samlha/samlha/sp/limits"
	"github.com/samlha/samlha/sp/login"
	"github.com/samlha/samlha/sp/respond"
	"github.com/samlha/samlha/sp/sptest/devidptest"
	"github.com/samlha/samlha/store"
	"github.com/samlha/samlha/store/memory"
)

// The hostile-response battery's harness: an in-process IdP (crewjam's
// IdentityProvider with devidp's test key pair) that answers real logins
// begun at the SP, minting each response as a test asks (what is signed,
// at what time, with which fields), and then mutating the signed XML; two
// SP replicas on one shared store; browsers with cookie jars. No network:
// every request goes straight to a replica's handler.

const batteryRoot = "http://sp.samlha.test"

// recordingStore is the shared store of the battery's replicas: a memory
// store that records the key of every write, so a test can show that a
// refused login wrote nothing but its tracked request (no session, no
// replay record).
type recordingStore struct {
	store.Store
	mu   sync.Mutex
	keys []string
}

func (s *recordingStore) note(keys ...string) {
	s.mu.Lock()
	s.keys = append(s.keys, keys...)
	s.mu.Unlock()
}

func (s *recordingStore) Put(ctx context.Context, k string, v []byte, ttl time.Duration) error {
	s.note(k)
	return s.Store.Put(ctx, k, v, ttl)
}

func (s *recordingStore) PutIfAbsent(ctx context.Context, k string, v []byte, ttl time.Duration) error {
	s.note(k)
	return s.Store.PutIfAbsent(ctx, k, v, ttl)
}

func (s *recordingStore) Swap(ctx context.Context, k string, v []byte, ttl time.Duration) ([]byte, error) {
	s.note(k)
	return s.Store.Swap(ctx, k, v, ttl)
}

func (s *recordingStore) PutBatch(ctx context.Context, ws []store.Write) []error {
	for _, w := range ws {
		s.note(w.Key)
	}
	return s.Store.PutBatch(ctx, ws)
}

// Kind names the store it wraps.
func (s *recordingStore) Kind() string {
	if d, ok := s.Store.(store.Describer); ok {
		return d.Kind()
	}
	return "test"
}

// Shared is true, which the store is: both replicas of the battery use it.
func (s *recordingStore) Shared() bool { return true }

func (s *recordingStore) Location() string { return "battery" }

// written returns the keys written since mark (a value of len(keys)).
func (s *recordingStore) written(mark int) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.keys[mark:]...)
}

func (s *recordingStore) mark() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.keys)
}

// logBuffer collects a replica's JSON log lines.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuffer) reset() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf.Reset()
}

// records returns the log records with message msg.
func (l *logBuffer) records(t testing.TB, msg string) []map[string]any {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []map[string]any
	for _, line := range bytes.Split(l.buf.Bytes(), []byte("\n")) {
		if len(line) == 0 {
			continue
		}
		var rec map[string]any
		if err := json.Unmarshal(line, &rec); err != nil {
			t.Fatalf("log line is not JSON: %s", line)
		}
		if rec["msg"] == msg {
			out = append(out, rec)
		}
	}
	return out
}

// battery is one IdP and two SP replicas on one shared store.
type battery struct {
	t        testing.TB
	clock    *clockwork.FakeClock // the SPs' clock
	idp      *saml.IdentityProvider
	spMD     *saml.EntityDescriptor
	store    *recordingStore
	replicas []*batteryReplica
}

type batteryReplica struct {
	id  string
	sp  *sp.SP
	reg *prometheus.Registry
	log *logBuffer
}

type staticSPs struct{ md *saml.EntityDescriptor }

func (s staticSPs) GetServiceProvider(_ *http.Request, id string) (*saml.EntityDescriptor, error) {
	if id != s.md.EntityID {
		return nil, os.ErrNotExist
	}
	return s.md, nil
}

// with returns b for another test: a fuzz target builds its battery once,
// and each of its inputs runs with its own t.
func (b *battery) with(t testing.TB) *battery {
	c := *b
	c.t = t
	return &c
}

// configure, if set, adjusts each replica's configuration (Store nil makes
// the replicas stateless).
func newBattery(t testing.TB, configure func(*sp.Config)) *battery {
	t.Helper()
	return newBatteryOn(t, nil, configure)
}

// newBatteryOn is newBattery with the replicas' shared store st (nil: one
// memory store).
func newBatteryOn(t testing.TB, st store.Store, configure func(*sp.Config)) *battery {
	t.Helper()
	b := &battery{t: t, clock: clockwork.NewFakeClockAt(time.Now().UTC().Truncate(time.Second))}
	key, cert := devidptest.KeyPair(t)
	idpURL, _ := url.Parse("http://idp.samlha.test")
	b.idp = &saml.IdentityProvider{
		Key: key, Certificate: cert,
		MetadataURL: *idpURL.JoinPath("metadata"), SSOURL: *idpURL.JoinPath("sso"),
		Clock: dsig.NewFakeClock(b.clock),
	}
	if st == nil {
		mem := memory.New(memory.Options{})
		t.Cleanup(func() { mem.Close() })
		st = mem
	}
	b.store = &recordingStore{Store: st}
	root, _ := url.Parse(batteryRoot)
	spKey, spCert := spKeyPair(t)
	for _, id := range []string{"sp-1", "sp-2"} {
		lb := &logBuffer{}
		reg := prometheus.NewRegistry()
		cfg := sp.Config{
			InstanceID: id, RootURL: root, Store: b.store, Key: spKey, Certificate: spCert,
			IDP:    &login.IDPMetadata{Static: b.idp.Metadata()},
			Logger: slog.New(slog.NewJSONHandler(lb, &slog.HandlerOptions{Level: slog.LevelDebug})), Registry: reg,
			Clock: dsig.NewFakeClock(b.clock),
			// Every browser of the battery and the fuzzers comes from
			// 127.0.0.1: the login limits have tests of their own.
			LoginLimits: limits.LoginLimits{PerClientRate: -1, TotalRate: -1},
		}
		if configure != nil {
			configure(&cfg)
		}
		s, err := sp.New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.LoadIDPMetadata(context.Background()); err != nil {
			t.Fatal(err)
		}
		b.replicas = append(b.replicas, &batteryReplica{id: id, sp: s, reg: reg, log: lb})
	}
	rec := httptest.NewRecorder()
	b.replicas[0].sp.ServeHTTP(rec, httptest.NewRequest("GET", batteryRoot+"/saml/metadata", nil))
	md := &saml.EntityDescriptor{}
	if err := xml.Unmarshal(rec.Body.Bytes(), md); err != nil {
		t.Fatalf("SP metadata: %v", err)
	}
	b.spMD = md
	b.idp.ServiceProviderProvider = staticSPs{md}
	return b
}

// browserJar is a browser: a cookie jar for the SP's site, and an address
// of its own (from the documentation ranges), so that limits per client
// see as many clients as there are browsers.
type browserJar struct {
	jar  *cookiejar.Jar
	addr string
}

func newBrowserJar() *browserJar {
	j, _ := cookiejar.New(nil)
	var p [4]byte
	_, _ = rand.Read(p[:])
	return &browserJar{jar: j, addr: fmt.Sprintf("[2001:db8::%x%02x:%x%02x]:40000", p[0], p[1], p[2], p[3])}
}

// do sends req to replica r from the browser, with its cookies, and keeps
// the cookies it sets.
func (b *browserJar) do(r *batteryReplica, req *http.Request) *httptest.ResponseRecorder {
	req.RemoteAddr = b.addr
	for _, c := range b.jar.Cookies(req.URL) {
		req.AddCookie(c)
	}
	rec := httptest.NewRecorder()
	r.sp.ServeHTTP(rec, req)
	b.jar.SetCookies(req.URL, rec.Result().Cookies())
	return rec
}

// begun is one login begun at a replica: the AuthnRequest as the IdP
// received it and the RelayState.
type begun struct {
	req        *saml.IdpAuthnRequest
	relayState string
	browser    *browserJar
}

// begin starts a login in browser br at replica r, as a browser does
// (GET /app, follow to the IdP), and returns what the IdP received.
func (b *battery) begin(br *browserJar, r *batteryReplica) *begun {
	b.t.Helper()
	rec := br.do(r, httptest.NewRequest("GET", batteryRoot+"/app", nil))
	if rec.Code != http.StatusFound {
		b.t.Fatalf("GET /app: %d %s, want a redirect to the IdP", rec.Code, rec.Body.String())
	}
	loc := rec.Header().Get("Location")
	idpReq, err := saml.NewIdpAuthnRequest(b.idp, httptest.NewRequest("GET", loc, nil))
	if err != nil {
		b.t.Fatalf("IdP: %v", err)
	}
	if err := idpReq.Validate(); err != nil {
		b.t.Fatalf("IdP refused the SP's AuthnRequest: %v", err)
	}
	return &begun{req: idpReq, relayState: idpReq.RelayState, browser: br}
}

// mint describes the response the IdP makes for a login.
type mint struct {
	user string // default "alice"
	// unsignedAssertion and unsignedResponse leave a level unsigned (the
	// default signs both, as crewjam's IdP does).
	unsignedAssertion, unsignedResponse bool
	// encrypt encrypts the assertion for the SP, as crewjam's IdP does when
	// the SP's metadata has an encryption key.
	encrypt bool
	// shift moves the IdP's clock for this response.
	shift time.Duration
	// assertion and response edit the fields before signing.
	assertion func(*saml.Assertion)
	response  func(*saml.Response)
	// after mutates the signed document, raw its serialized bytes.
	after func(t testing.TB, doc *etree.Document)
	raw   func([]byte) []byte
}

func (b *battery) signer() *dsig.SigningContext {
	key, cert := devidptest.KeyPair(b.t)
	ctx := dsig.NewDefaultSigningContext(dsig.TLSCertKeyStore(tls.Certificate{Certificate: [][]byte{cert.Raw}, PrivateKey: key}))
	ctx.Canonicalizer = dsig.MakeC14N10ExclusiveCanonicalizerWithPrefixList("")
	if err := ctx.SetSignatureMethod(dsig.RSASHA256SignatureMethod); err != nil {
		b.t.Fatal(err)
	}
	return ctx
}

// sign returns el signed (enveloped), the Signature placed where crewjam's
// IdP places it, and the Signature element.
func (b *battery) sign(el *etree.Element) *etree.Element {
	b.t.Helper()
	signed, err := b.signer().SignEnveloped(el)
	if err != nil {
		b.t.Fatal(err)
	}
	return signed.ChildElements()[len(signed.ChildElements())-1]
}

func randomID() string {
	var p [20]byte
	_, _ = rand.Read(p[:])
	return "id-" + hex.EncodeToString(p[:])
}

// respond makes the IdP's response to l as m says, and returns the
// Response XML.
func (b *battery) respond(l *begun, m mint) []byte {
	b.t.Helper()
	req := *l.req
	req.Now = b.clock.Now().Add(m.shift)
	user := m.user
	if user == "" {
		user = "alice"
	}
	sess := &saml.Session{ID: randomID(), CreateTime: req.Now, ExpireTime: req.Now.Add(time.Hour), Index: randomID(),
		NameID: user + "@example.org", UserName: user, UserEmail: user + "@example.org", Groups: []string{"staff"}}
	if err := (saml.DefaultAssertionMaker{}).MakeAssertion(&req, sess); err != nil {
		b.t.Fatal(err)
	}
	a := req.Assertion
	if m.assertion != nil {
		m.assertion(a)
	}
	var assertionEl *etree.Element
	switch {
	case m.encrypt:
		if m.unsignedAssertion {
			b.t.Fatal("mint: encrypt signs the assertion")
		}
		if err := req.MakeAssertionEl(); err != nil {
			b.t.Fatal(err)
		}
		assertionEl = req.AssertionEl
	case m.unsignedAssertion:
		assertionEl = a.Element()
	default:
		a.Signature = b.sign(a.Element())
		assertionEl = a.Element()
	}
	resp := &saml.Response{
		Destination: req.ACSEndpoint.Location, ID: randomID(), InResponseTo: req.Request.ID,
		IssueInstant: req.Now, Version: "2.0",
		Issuer: &saml.Issuer{Format: "urn:oasis:names:tc:SAML:2.0:nameid-format:entity", Value: b.idp.MetadataURL.String()},
		Status: saml.Status{StatusCode: saml.StatusCode{Value: saml.StatusSuccess}},
	}
	if m.response != nil {
		m.response(resp)
	}
	respEl := resp.Element()
	respEl.AddChild(assertionEl)
	if !m.unsignedResponse {
		resp.Signature = b.sign(respEl)
		respEl = resp.Element()
		respEl.AddChild(assertionEl)
	}
	doc := etree.NewDocument()
	doc.SetRoot(respEl)
	if m.after != nil {
		m.after(b.t, doc)
	}
	out, err := doc.WriteToBytes()
	if err != nil {
		b.t.Fatal(err)
	}
	if m.raw != nil {
		out = m.raw(out)
	}
	return out
}

// post is one POST to the ACS and what came of it.
type post struct {
	status int
	cause  string
	body   string
	// reason and detail are from the replica's "login refused" log record.
	reason, detail string
	// sessionCookie is the value of the session cookie the answer set, if
	// any.
	sessionCookie string
	// written are the store keys written while it was handled.
	written []string
}

// postXML posts a Response document to replica r's ACS from browser br
// with RelayState rs.
func (b *battery) postXML(br *browserJar, r *batteryReplica, rs string, doc []byte) *post {
	return b.postForm(br, r, url.Values{"SAMLResponse": {base64.StdEncoding.EncodeToString(doc)}, "RelayState": {rs}})
}

func (b *battery) postForm(br *browserJar, r *batteryReplica, form url.Values) *post {
	b.t.Helper()
	before := len(r.log.records(b.t, "login refused"))
	mark := b.store.mark()
	req := httptest.NewRequest("POST", batteryRoot+"/saml/acs", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	rec := br.do(r, req)
	p := &post{status: rec.Code, cause: rec.Header().Get(respond.HeaderCause), body: rec.Body.String(), written: b.store.written(mark)}
	for _, c := range rec.Result().Cookies() {
		if c.Name == "samlha_session" && c.Value != "" && c.MaxAge >= 0 {
			p.sessionCookie = c.Value
		}
	}
	if recs := r.log.records(b.t, "login refused"); len(recs) > before {
		last := recs[len(recs)-1]
		p.reason, _ = last["reason"].(string)
		p.detail, _ = last["detail"].(string)
	}
	return p
}

// whoami asks replica r who browser br is: the status of /whoami.
func (b *battery) whoami(br *browserJar, r *batteryReplica) int {
	return br.do(r, httptest.NewRequest("GET", batteryRoot+"/whoami", nil)).Code
}
