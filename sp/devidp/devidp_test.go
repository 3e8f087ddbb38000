package devidp_test

import (
	"context"
	"encoding/json"
	"encoding/xml"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/crewjam/saml"
	"github.com/crewjam/saml/samlsp"
	"github.com/google/go-cmp/cmp"
	dsig "github.com/russellhaering/goxmldsig"

	"github.com/samlha/samlha/sp/devidp"
	"github.com/samlha/samlha/sp/sptest/devidptest"
)

// postLogin posts credentials to /login as a browser on origin would.
func postLogin(t *testing.T, idp *devidptest.IdP, origin, user, password string) *http.Response {
	t.Helper()
	form := url.Values{"user": {user}, "password": {password}}
	req, err := http.NewRequest(http.MethodPost, idp.URL+"/login", strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", origin)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

func get(t *testing.T, rawURL string) (int, string) {
	t.Helper()
	resp, err := http.Get(rawURL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// metricValue returns the value of the sample of the metric line that
// starts with series ("devidp_logins_total{result=\"success\"}").
func metricValue(t *testing.T, idp *devidptest.IdP, series string) string {
	t.Helper()
	_, body := get(t, idp.URL+"/metrics")
	for _, line := range strings.Split(body, "\n") {
		if rest, ok := strings.CutPrefix(line, series+" "); ok {
			return rest
		}
	}
	t.Fatalf("no %s in /metrics", series)
	return ""
}

func TestDefaultUsersLogIn(t *testing.T) {
	t.Parallel()
	idp := devidptest.Start(t, devidp.Config{})
	for _, u := range devidp.DefaultUsers() {
		resp := postLogin(t, idp, idp.URL, u.Name, u.Password)
		var sess saml.Session
		if err := json.NewDecoder(resp.Body).Decode(&sess); err != nil {
			t.Fatalf("%s: status %d, not a session: %v", u.Name, resp.StatusCode, err)
		}
		if sess.UserName != u.Name || sess.UserEmail != u.Email || !cmp.Equal(sess.Groups, u.Groups) {
			t.Errorf("%s: session user %q email %q groups %v", u.Name, sess.UserName, sess.UserEmail, sess.Groups)
		}
	}
	want := []devidp.User{
		{Name: "alice", Password: "alice-password", Email: "alice@example.com", Groups: []string{"staff"}, CommonName: "Alice Example", GivenName: "Alice", Surname: "Example"},
		{Name: "bob", Password: "bob-password", Email: "bob@example.com", Groups: []string{"staff", "admins"}, CommonName: "Bob Example", GivenName: "Bob", Surname: "Example"},
	}
	if diff := cmp.Diff(want, devidp.DefaultUsers()); diff != "" {
		t.Errorf("the documented default users changed (-want +got):\n%s", diff)
	}
}

func TestLoginMetricsByResult(t *testing.T) {
	t.Parallel()
	idp := devidptest.Start(t, devidp.Config{})
	postLogin(t, idp, idp.URL, "alice", "alice-password")
	postLogin(t, idp, idp.URL, "alice", "wrong")
	postLogin(t, idp, idp.URL, "nobody", "x")
	if resp := postLogin(t, idp, "http://evil.test", "alice", "alice-password"); resp.StatusCode != http.StatusForbidden {
		t.Errorf("cross-origin login: status %d, want 403", resp.StatusCode)
	}
	for result, want := range map[string]string{"success": "1", "invalid-credentials": "2", "refused-cross-origin": "1", "error": "0"} {
		if got := metricValue(t, idp, `devidp_logins_total{result="`+result+`"}`); got != want {
			t.Errorf("logins %s = %s, want %s", result, got, want)
		}
	}
	if got := metricValue(t, idp, `devidp_http_requests_total{code="200",route="/login"}`); got != "3" {
		t.Errorf("requests to /login with 200 = %s, want 3", got)
	}
}

func TestSessionLifetime(t *testing.T) {
	t.Parallel()
	at := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	idp := devidptest.Start(t, devidp.Config{SessionLifetime: 3 * time.Hour, Clock: dsig.NewFakeClockAt(at)})
	resp := postLogin(t, idp, idp.URL, "bob", "bob-password")
	var sess saml.Session
	if err := json.NewDecoder(resp.Body).Decode(&sess); err != nil {
		t.Fatal(err)
	}
	if !sess.CreateTime.Equal(at) || !sess.ExpireTime.Equal(at.Add(3*time.Hour)) {
		t.Errorf("session created %s, expires %s; want %s and 3h later", sess.CreateTime, sess.ExpireTime, at)
	}
	var cookie *http.Cookie
	for _, c := range resp.Cookies() {
		if c.Name == "session" {
			cookie = c
		}
	}
	if cookie == nil || cookie.MaxAge != 3*60*60 || !cookie.HttpOnly || cookie.Path != "/" {
		t.Errorf("session cookie %+v, want Max-Age 10800, HttpOnly, Path=/", cookie)
	}
}

func TestAdminAPIIsNotExposed(t *testing.T) {
	t.Parallel()
	idp := devidptest.Start(t, devidp.Config{})
	for _, rq := range []struct{ method, path string }{
		{"GET", "/services/"}, {"PUT", "/services/x"}, {"GET", "/users/alice"}, {"PUT", "/users/mallory"}, {"GET", "/sessions/"},
	} {
		req, _ := http.NewRequest(rq.method, idp.URL+rq.path, strings.NewReader(`{"password":"x"}`))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden {
			t.Errorf("%s %s: status %d, want 403", rq.method, rq.path, resp.StatusCode)
		}
	}
}

func TestHealthAndMetadata(t *testing.T) {
	t.Parallel()
	idp := devidptest.Start(t, devidp.Config{})
	if code, body := get(t, idp.URL+"/healthz"); code != 200 || body != "ok\n" {
		t.Errorf("/healthz: %d %q", code, body)
	}
	if code, body := get(t, idp.URL+"/readyz"); code != 200 {
		t.Errorf("/readyz with no SP configured: %d %q", code, body)
	}
	code, body := get(t, idp.URL+"/metadata")
	var md saml.EntityDescriptor
	if err := xml.Unmarshal([]byte(body), &md); code != 200 || err != nil {
		t.Fatalf("/metadata: %d %v", code, err)
	}
	if md.EntityID != idp.MetadataURL() || len(md.IDPSSODescriptors) != 1 {
		t.Errorf("metadata entity %q, %d IdP descriptors", md.EntityID, len(md.IDPSSODescriptors))
	}
}

// spMetadata returns the metadata of a (never served) crewjam SP at root.
func spMetadata(t *testing.T, idp *devidptest.IdP, root string) []byte {
	t.Helper()
	u, _ := url.Parse(root)
	key, cert := devidptest.KeyPair(t)
	mw, err := samlsp.New(samlsp.Options{URL: *u, Key: key, Certificate: cert, IDPMetadata: idp.Metadata()})
	if err != nil {
		t.Fatal(err)
	}
	md, err := xml.Marshal(mw.ServiceProvider.Metadata())
	if err != nil {
		t.Fatal(err)
	}
	return md
}

func TestRegisterSPMetadata(t *testing.T) {
	t.Parallel()
	idp := devidptest.Start(t, devidp.Config{})
	if err := idp.RegisterSPMetadata("sp-1", spMetadata(t, idp, "http://127.0.0.1:8081")); err != nil {
		t.Fatal(err)
	}
	if got := metricValue(t, idp, "devidp_service_providers_registered"); got != "1" {
		t.Errorf("registered SPs = %s, want 1", got)
	}
	for _, tc := range []struct {
		id  string
		doc string
	}{
		{"sp-2", "not xml"},
		{"sp-2", `<EntityDescriptor xmlns="urn:oasis:names:tc:SAML:2.0:metadata" entityID="x"></EntityDescriptor>`},
		{"a/b", string(spMetadata(t, idp, "http://127.0.0.1:8082"))},
		{"", string(spMetadata(t, idp, "http://127.0.0.1:8082"))},
	} {
		if err := idp.RegisterSPMetadata(tc.id, []byte(tc.doc)); err == nil {
			t.Errorf("RegisterSPMetadata(%q, %.20q...) accepted", tc.id, tc.doc)
		}
	}
}

// The SP starts after the IdP: RegisterSPs retries until it answers, and
// the IdP turns ready then.
func TestRegisterSPsRetriesUntilTheSPAnswers(t *testing.T) {
	t.Parallel()
	var up atomic.Bool
	var attempts atomic.Int32
	var md []byte
	sp := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		attempts.Add(1)
		if !up.Load() {
			http.Error(w, "starting", http.StatusServiceUnavailable)
			return
		}
		w.Write(md)
	}))
	t.Cleanup(sp.Close)
	metadataURL := sp.URL + "/saml/metadata"
	idp := devidptest.Start(t, devidp.Config{SPMetadataURLs: []string{metadataURL}, RetryMin: 5 * time.Millisecond, RetryMax: 20 * time.Millisecond})
	md = spMetadata(t, idp, sp.URL)

	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- idp.RegisterSPs(ctx) }()

	waitFor(t, "three failed attempts", func() bool { return attempts.Load() >= 3 })
	if idp.Ready() {
		t.Fatal("ready before the SP answered")
	}
	if code, body := get(t, idp.URL+"/readyz"); code != http.StatusServiceUnavailable || !strings.Contains(body, metadataURL) || !strings.Contains(body, "503") {
		t.Errorf("/readyz while waiting: %d %q, want 503 naming the URL and its last error", code, body)
	}
	up.Store(true)
	if err := <-done; err != nil {
		t.Fatalf("RegisterSPs: %v", err)
	}
	if !idp.Ready() {
		t.Error("not ready after registering every SP")
	}
	if code, _ := get(t, idp.URL+"/readyz"); code != http.StatusOK {
		t.Errorf("/readyz: %d", code)
	}
	if got := devidp.SPID(metadataURL); !strings.HasSuffix(got, "-saml-metadata") || strings.Contains(got, "/") {
		t.Errorf("SPID = %q", got)
	}
}

func TestRegisterSPsGivesUpWithTheContext(t *testing.T) {
	t.Parallel()
	dead := httptest.NewServer(http.NotFoundHandler())
	dead.Close()
	metadataURL := dead.URL + "/saml/metadata"
	idp := devidptest.Start(t, devidp.Config{SPMetadataURLs: []string{metadataURL}, RetryMin: time.Millisecond, RetryMax: 5 * time.Millisecond})
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	err := idp.RegisterSPs(ctx)
	if err == nil || !strings.Contains(err.Error(), metadataURL) {
		t.Fatalf("err = %v, want one naming %s", err, metadataURL)
	}
	if idp.Ready() {
		t.Error("ready without the SP")
	}
}

func TestNewKeepsTheKeyPairInDataDir(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "data")
	cfg := devidp.Config{PublicURL: "http://127.0.0.1:9000", DataDir: dir}
	first, err := devidp.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	second, err := devidp.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if !first.Certificate().Equal(second.Certificate()) {
		t.Error("a restart generated a new certificate; SPs would have to fetch the metadata again")
	}
	info, err := os.Stat(filepath.Join(dir, devidp.KeyFile))
	if err != nil || info.Mode().Perm() != 0o600 {
		t.Errorf("key file: %v, mode %v, want 0600", err, info.Mode().Perm())
	}
}

func TestLoadOrCreateKeyPair(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	now := time.Now()
	key1, cert1, created, err := devidp.LoadOrCreateKeyPair(dir, "idp.test", now)
	if err != nil || !created {
		t.Fatalf("first: created=%v err=%v", created, err)
	}
	key2, cert2, created, err := devidp.LoadOrCreateKeyPair(dir, "idp.test", now)
	if err != nil || created {
		t.Fatalf("second: created=%v err=%v", created, err)
	}
	if !key1.Equal(key2) || !cert1.Equal(cert2) || cert1.Subject.CommonName != "idp.test" {
		t.Error("the second call did not load the same key pair")
	}

	onlyKey := t.TempDir()
	data, _ := os.ReadFile(filepath.Join(dir, devidp.KeyFile))
	os.WriteFile(filepath.Join(onlyKey, devidp.KeyFile), data, 0o600)
	if _, _, _, err := devidp.LoadOrCreateKeyPair(onlyKey, "idp.test", now); err == nil || !strings.Contains(err.Error(), "only one") {
		t.Errorf("key without certificate: err = %v", err)
	}
	if _, err := os.Stat(filepath.Join(onlyKey, devidp.CertFile)); err == nil {
		t.Error("a lone key was paired with a new certificate")
	}

	mismatch := t.TempDir()
	other := t.TempDir()
	devidp.LoadOrCreateKeyPair(other, "other", now)
	otherCert, _ := os.ReadFile(filepath.Join(other, devidp.CertFile))
	os.WriteFile(filepath.Join(mismatch, devidp.KeyFile), data, 0o600)
	os.WriteFile(filepath.Join(mismatch, devidp.CertFile), otherCert, 0o644)
	if _, _, _, err := devidp.LoadOrCreateKeyPair(mismatch, "idp.test", now); err == nil {
		t.Error("a certificate for another key was accepted")
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	t.Parallel()
	key, cert := devidptest.KeyPair(t)
	ok := devidp.Config{PublicURL: "http://127.0.0.1:9000", Key: key, Certificate: cert}
	for name, mutate := range map[string]func(*devidp.Config){
		"no public URL":         func(c *devidp.Config) { c.PublicURL = "" },
		"relative public URL":   func(c *devidp.Config) { c.PublicURL = "/idp" },
		"ftp public URL":        func(c *devidp.Config) { c.PublicURL = "ftp://x" },
		"key without cert":      func(c *devidp.Config) { c.Certificate = nil },
		"no key and no dir":     func(c *devidp.Config) { c.Key, c.Certificate = nil, nil },
		"bcrypt cost too high":  func(c *devidp.Config) { c.BcryptCost = 99 },
		"short session":         func(c *devidp.Config) { c.SessionLifetime = time.Millisecond },
		"bad SP metadata URL":   func(c *devidp.Config) { c.SPMetadataURLs = []string{"127.0.0.1:8081/saml/metadata"} },
		"user without password": func(c *devidp.Config) { c.Users = []devidp.User{{Name: "x"}} },
	} {
		cfg := ok
		mutate(&cfg)
		if _, err := devidp.New(cfg); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if _, err := devidp.New(ok); err != nil {
		t.Errorf("good config: %v", err)
	}
}

func TestParseUsers(t *testing.T) {
	t.Parallel()
	got, err := devidp.ParseUsers("carol:carol-pw:carol@example.com:staff, admins;dave:dave-pw\nerin:e:")
	if err != nil {
		t.Fatal(err)
	}
	want := []devidp.User{
		{Name: "carol", Password: "carol-pw", Email: "carol@example.com", Groups: []string{"staff", "admins"}},
		{Name: "dave", Password: "dave-pw"},
		{Name: "erin", Password: "e"},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	for _, bad := range []string{"nopassword", "a:", "a:x;a:y", "a/b:x", ":x"} {
		if _, err := devidp.ParseUsers(bad); err == nil {
			t.Errorf("ParseUsers(%q) accepted", bad)
		} else if strings.Contains(err.Error(), ":x") && bad == "nopassword" {
			t.Errorf("error shows a password: %v", err)
		}
	}
}

func TestLoadUsersFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	good := filepath.Join(dir, "users.json")
	os.WriteFile(good, []byte(`[{"name":"carol","password":"c:;pw","email":"carol@example.com","groups":["staff"],"common_name":"Carol"}]`), 0o600)
	got, err := devidp.LoadUsersFile(good)
	if err != nil {
		t.Fatal(err)
	}
	want := []devidp.User{{Name: "carol", Password: "c:;pw", Email: "carol@example.com", Groups: []string{"staff"}, CommonName: "Carol"}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	typo := filepath.Join(dir, "typo.json")
	os.WriteFile(typo, []byte(`[{"name":"carol","passwrd":"x"}]`), 0o600)
	if _, err := devidp.LoadUsersFile(typo); err == nil {
		t.Error("unknown field accepted")
	}
}

// waitFor polls cond until it holds, failing the test after a deadline.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
