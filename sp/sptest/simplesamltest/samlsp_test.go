package simplesamltest_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/samlha/samlha/sp/sptest"
	"github.com/samlha/samlha/sp/sptest/samlspbin"
	"github.com/samlha/samlha/sp/sptest/simplesamltest"
	"github.com/samlha/samlha/store/localproc"
)

// samlsp's --help, read once per test process.
var help struct {
	once sync.Once
	text string
}

func TestMain(m *testing.M) {
	code := m.Run()
	samlspbin.Remove()
	os.Exit(code)
}

// samlspBinary builds samlsp (once per test process) and returns its path
// and the SP's key and certificate files.
func samlspBinary(t *testing.T) (exe, key, cert string) {
	t.Helper()
	b, err := samlspbin.Build()
	if err != nil {
		t.Fatal(err)
	}
	return b.Path, b.Key, b.Cert
}

// samlspHas reports whether samlsp's --help lists the flag --name.
func samlspHas(t *testing.T, name string) bool {
	t.Helper()
	exe, _, _ := samlspBinary(t)
	help.once.Do(func() {
		cmd := exec.Command(exe, "--help")
		cmd.Env = samlspbin.Env()
		out, _ := cmd.CombinedOutput() // --help may exit non-zero; the text is what counts
		help.text = string(out)
	})
	return strings.Contains(help.text, "\n  --"+name+" ") || strings.Contains(help.text, "\n  --"+name+"\n")
}

// spOptions configure one samlsp.
type spOptions struct {
	// Store is --store (default memory); StoreURL its --store-url.
	Store, StoreURL string
	// Args are more flags, such as the ones the SP change adds.
	Args []string
}

// samlspProc is a samlsp process serving one test on loopback.
type samlspProc struct {
	ID, URL string
	proc    *localproc.Proc
}

// startSP starts samlsp against idp and waits until it is ready (its IdP
// metadata loaded). A samlsp that refuses its flags (one the SP change has
// not added yet) fails the test with samlsp's own words.
func startSP(t *testing.T, idp *simplesamltest.IdP, o spOptions) *samlspProc {
	t.Helper()
	exe, key, cert := samlspBinary(t)
	for _, a := range o.Args {
		if name, ok := strings.CutPrefix(a, "--"); ok && !samlspHas(t, name) {
			t.Fatalf("samlsp has no --%s flag yet: this test needs the SP change that adds it", name)
		}
	}
	if o.Store == "" {
		o.Store = "memory"
	}
	s := &samlspProc{ID: "sp-1"}
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	p, _, err := localproc.Launch(ctx, 1, 3, func(ports []int) (*localproc.Proc, []string) {
		s.URL = fmt.Sprintf("http://127.0.0.1:%d", ports[0])
		args := []string{"--listen", fmt.Sprintf("127.0.0.1:%d", ports[0]), "--root-url", s.URL, "--instance-id", s.ID,
			"--idp-metadata-url", idp.MetadataURL, "--sp-key", key, "--sp-cert", cert, "--store", o.Store,
			"--log-level", "debug", "--shutdown-grace", "1s",
			// Every test client is 127.0.0.1.
			"--login-rate-per-client", "0", "--login-rate", "0"}
		if o.StoreURL != "" {
			args = append(args, "--store-url", o.StoreURL)
		}
		args = append(args, o.Args...)
		return &localproc.Proc{Name: "samlsp", Path: exe, Args: args, LogPath: filepath.Join(dir, "samlsp.log"), Env: samlspbin.Env()}, nil
	}, func(_ *localproc.Proc, ports []int) func(context.Context) error {
		return localproc.HTTPProbe(nil, fmt.Sprintf("http://127.0.0.1:%d/readyz", ports[0]), sptest.HeaderInstance, s.ID)
	})
	if err != nil {
		t.Fatalf("samlsp %s did not start: %v", strings.Join(o.Args, " "), err)
	}
	s.proc = p
	t.Cleanup(func() {
		p.Stop(5 * time.Second)
		if t.Failed() {
			t.Logf("samlsp at %s, end of its log:\n%s", s.URL, p.LogTail(32<<10))
		}
	})
	return s
}

func (s *samlspProc) metadataURL() string { return s.URL + "/saml/metadata" }

// browser is a scripted browser for one simulated user.
func browser() *sptest.Browser {
	return sptest.NewBrowser(sptest.Options{RequestTimeout: 15 * time.Second})
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return c
}

// describe renders a login's hops for failure messages.
func describe(r *sptest.Result) string {
	s := fmt.Sprintf("ok=%v cause=%q err=%v\n", r.OK, r.Cause, r.Err)
	s += describeHops(r.Hops)
	if r.Final != nil && r.Final.Status >= 400 {
		s += "final page:\n" + pageText(r.Final.Body) + "\n"
	}
	return s
}

func describeHops(hops []sptest.Hop) string {
	var s string
	for _, h := range hops {
		s += fmt.Sprintf("  %s %s -> %d cause=%s form=%s\n", h.Method, h.URL, h.Status, h.Cause, h.Form)
	}
	return s
}

// pageText is a page's body, cut short, for failure messages.
func pageText(b []byte) string {
	const max = 4000
	if len(b) > max {
		return string(b[:max]) + "..."
	}
	return string(b)
}

// session is what samlsp's /whoami says of the browser's session.
type session struct {
	Status     int
	User       string `json:"user"`
	NameID     string `json:"name_id"`
	Attributes []struct {
		Name   string   `json:"name"`
		Values []string `json:"values"`
	} `json:"attributes"`
}

func (s session) attr(name string) []string {
	for _, a := range s.Attributes {
		if a.Name == name {
			return a.Values
		}
	}
	return nil
}

// whoami asks the SP who the browser is (200 with the session, 401
// without one).
func whoami(t *testing.T, b *sptest.Browser, s *samlspProc) session {
	t.Helper()
	page, err := b.Get(ctx(t), s.URL+"/whoami")
	if err != nil {
		t.Fatalf("GET /whoami: %v", err)
	}
	out := session{Status: page.Status}
	if page.Status == http.StatusOK {
		if err := json.Unmarshal(page.Body, &out); err != nil {
			t.Fatalf("/whoami: %v\n%s", err, page.Body)
		}
	}
	return out
}
