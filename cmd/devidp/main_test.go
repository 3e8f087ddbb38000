package main

import (
	"bytes"
	"context"
	"encoding/xml"
	"errors"
	"flag"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/crewjam/saml"
	"github.com/crewjam/saml/samlsp"
	"github.com/google/go-cmp/cmp"

	"github.com/samlha/samlha/sp/devidp"
	"github.com/samlha/samlha/sp/sptest"
	"github.com/samlha/samlha/sp/sptest/devidptest"
)

func TestHelp(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	err := run(t.Context(), []string{"--help"}, &out, nil)
	if !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("err = %v, want flag.ErrHelp", err)
	}
	for _, want := range []string{
		"alice / alice-password", "bob   / bob-password", "groups: staff, admins",
		"--listen", "$SAMLHA_IDP_LISTEN", "default 127.0.0.1:9000",
		"--public-url", "default http://127.0.0.1:9000", "--data-dir", "default ./devidp-data",
		"--users", "--users-file", "--bcrypt-cost", "default 4", "--sp-metadata", "$SAMLHA_IDP_SP_METADATA",
		"--register-timeout", "--session-lifetime", "--log-format", "--log-level",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("--help lacks %q", want)
		}
	}
}

// Environment twins fill what the command line leaves out; the command
// line wins.
func TestFlagsFromEnvironment(t *testing.T) {
	t.Setenv("SAMLHA_IDP_PUBLIC_URL", "http://idp.samlha-idp.test:9000")
	t.Setenv("SAMLHA_IDP_SP_METADATA", "http://127.0.0.1:8081/saml/metadata,http://127.0.0.1:8082/saml/metadata")
	t.Setenv("SAMLHA_IDP_SESSION_LIFETIME", "5m")
	t.Setenv("SAMLHA_IDP_USERS", "carol:carol-pw:carol@example.com:staff")
	t.Setenv("SAMLHA_IDP_LISTEN", "127.0.0.1:1")
	o, err := parseFlags([]string{"--listen", "127.0.0.1:9100", "--sp-metadata", "http://127.0.0.1:8083/saml/metadata"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	got := []any{o.listen, o.publicURL, []string(o.spMetadata), o.sessionLifetime, o.dataDir, o.bcryptCost, o.registerTimeout}
	want := []any{"127.0.0.1:9100", "http://idp.samlha-idp.test:9000", []string{"http://127.0.0.1:8083/saml/metadata"}, 5 * time.Minute, "./devidp-data", 4, 2 * time.Minute}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("options (-want +got):\n%s", diff)
	}
	users, err := o.loadUsers()
	if err != nil || len(users) != 1 || users[0].Name != "carol" {
		t.Errorf("users %v, err %v", users, err)
	}
}

// Every problem is reported at once, each naming its flag.
func TestFlagProblems(t *testing.T) {
	t.Parallel()
	_, err := parseFlags([]string{
		"--listen", "nonsense", "--bcrypt-cost", "2", "--log-format", "xml", "--log-level", "loud",
		"--session-lifetime", "1ms", "--register-timeout", "-1s", "--users", "alice",
		"--users-file", filepath.Join(t.TempDir(), "missing.json"),
	}, io.Discard)
	if err == nil {
		t.Fatal("accepted")
	}
	for _, flagName := range []string{"--listen", "--bcrypt-cost", "--log-format", "--log-level", "--session-lifetime", "--register-timeout", "--users:", "--users-file"} {
		if !strings.Contains(err.Error(), flagName) {
			t.Errorf("error does not name %s:\n%v", flagName, err)
		}
	}
}

// instance is devidp running in-process on a free port.
type instance struct {
	url  string
	stop func() error // cancels and returns run's error
	done chan error
}

// start runs devidp with args (plus --listen and --public-url for a free
// port unless given) until the test ends.
func start(t *testing.T, args ...string) *instance {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	base := "http://" + ln.Addr().String()
	args = append([]string{"--listen", ln.Addr().String(), "--public-url", base, "--log-level", "debug"}, args...)
	ctx, cancel := context.WithCancel(t.Context())
	inst := &instance{url: base, done: make(chan error, 1)}
	w := devidptest.LogWriter(t)
	go func() { inst.done <- run(ctx, args, w, ln) }()
	var once sync.Once
	var runErr error
	inst.stop = func() error {
		once.Do(func() {
			cancel()
			runErr = <-inst.done
		})
		return runErr
	}
	t.Cleanup(func() { inst.stop() })
	waitFor(t, "devidp to answer /healthz", func() bool {
		resp, err := http.Get(base + "/healthz")
		if err == nil {
			resp.Body.Close()
		}
		return err == nil && resp.StatusCode == http.StatusOK
	})
	return inst
}

// metadataCert returns the signing certificate in the IdP's metadata.
func metadataCert(t *testing.T, base string) string {
	t.Helper()
	md := fetchMetadata(t, base)
	for _, kd := range md.IDPSSODescriptors[0].KeyDescriptors {
		if len(kd.KeyInfo.X509Data.X509Certificates) > 0 {
			return kd.KeyInfo.X509Data.X509Certificates[0].Data
		}
	}
	t.Fatal("no certificate in the metadata")
	return ""
}

func fetchMetadata(t *testing.T, base string) *saml.EntityDescriptor {
	t.Helper()
	resp, err := http.Get(base + "/metadata")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var md saml.EntityDescriptor
	if err := xml.NewDecoder(resp.Body).Decode(&md); err != nil || len(md.IDPSSODescriptors) == 0 {
		t.Fatalf("metadata: %v", err)
	}
	return &md
}

// The key pair survives a restart, so metadata an SP fetched stays valid.
func TestKeyPairReusedAcrossRestarts(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "devidp-data")
	first := start(t, "--data-dir", dir)
	cert := metadataCert(t, first.url)
	if err := first.stop(); err != nil {
		t.Fatalf("first run: %v", err)
	}
	for _, f := range []string{devidp.KeyFile, devidp.CertFile} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
	second := start(t, "--data-dir", dir)
	if got := metadataCert(t, second.url); got != cert {
		t.Error("the restarted IdP publishes another certificate")
	}
}

// The SP starts after the IdP: devidp keeps fetching its metadata until it
// answers, turns ready, and a login through it then succeeds.
func TestRegistersAnSPThatStartsLater(t *testing.T) {
	t.Parallel()
	// A free port for the SP, not listening yet: fetches are refused.
	spLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	spAddr := spLn.Addr().String()
	spLn.Close()
	spRoot := "http://" + spAddr
	idp := start(t, "--data-dir", t.TempDir(), "--sp-metadata", spRoot+"/saml/metadata", "--register-timeout", "1m")

	waitFor(t, "/readyz to report the refused SP", func() bool {
		code, body := get(t, idp.url+"/readyz")
		return code == http.StatusServiceUnavailable && strings.Contains(body, spRoot) && strings.Contains(body, "refused")
	})

	// Start the SP now, on the port devidp keeps trying.
	spLn, err = net.Listen("tcp", spAddr)
	if err != nil {
		t.Skipf("the SP's port was taken meanwhile: %v", err)
	}
	root, _ := url.Parse(spRoot)
	key, cert := devidptest.KeyPair(t)
	mw, err := samlsp.New(samlsp.Options{URL: *root, Key: key, Certificate: cert, IDPMetadata: fetchMetadata(t, idp.url)})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/saml/", mw)
	mux.Handle("/app", mw.RequireAccount(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set(sptest.HeaderUser, samlsp.AttributeFromContext(r.Context(), "uid"))
	})))
	spSrv := &http.Server{Handler: mux}
	go spSrv.Serve(spLn)
	t.Cleanup(func() { spSrv.Close() })

	waitFor(t, "/readyz to turn ready", func() bool {
		code, _ := get(t, idp.url+"/readyz")
		return code == http.StatusOK
	})
	b := sptest.NewBrowser(sptest.Options{})
	defer b.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if res := b.Login(ctx, spRoot+"/app", "bob", "bob-password"); !res.OK {
		t.Errorf("login: cause %q err %v", res.Cause, res.Err)
	}
	if err := idp.stop(); err != nil {
		t.Errorf("clean shutdown: %v", err)
	}
}

// When --register-timeout passes with an SP missing, devidp exits with an
// error naming it.
func TestRegisterTimeoutExits(t *testing.T) {
	t.Parallel()
	dead, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadURL := "http://" + dead.Addr().String() + "/saml/metadata"
	dead.Close()
	idp := start(t, "--data-dir", t.TempDir(), "--sp-metadata", deadURL, "--register-timeout", "300ms")
	select {
	case err := <-idp.done:
		idp.done <- err // for stop
		if err == nil || !strings.Contains(err.Error(), deadURL) || !strings.Contains(err.Error(), "--register-timeout") {
			t.Errorf("err = %v, want one naming %s and --register-timeout", err, deadURL)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("devidp did not exit after --register-timeout")
	}
}

func get(t *testing.T, rawURL string) (int, string) {
	t.Helper()
	resp, err := http.Get(rawURL)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// waitFor polls cond until it holds, failing the test after a deadline.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
