package walk

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/samlha/samlha/sp/devidp"
	"github.com/samlha/samlha/sp/failure"
	"github.com/samlha/samlha/sp/sptest"
	"github.com/samlha/samlha/sp/sptest/devidptest"
	"github.com/samlha/samlha/sp/sptest/samlspbin"
	"github.com/samlha/samlha/store/localproc"
)

func TestMain(m *testing.M) {
	code := m.Run()
	samlspbin.Remove()
	os.Exit(code)
}

// samlspBinary builds samlsp once per test process (with one key pair
// for every SP).
func samlspBinary(t *testing.T) samlspbin.Binary {
	t.Helper()
	b, err := samlspbin.Build()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// startIdP starts devidp for the test.
func startIdP(t *testing.T) *devidptest.IdP {
	t.Helper()
	return devidptest.Start(t, devidp.Config{})
}

// samlsp is one samlsp process.
type samlsp struct {
	URL  string
	Port int
	proc *localproc.Proc
}

// startSP starts samlsp with args (besides listen, keys, store, rate
// limits) and its IdP metadata at metadataURL. rootURL(port) is its
// --root-url; ready says whether to wait for /readyz (else /healthz). The
// SP is registered at idp when idp is not nil.
func startSP(t *testing.T, idp *devidptest.IdP, metadataURL string, rootURL func(port int) string, ready bool, args ...string) *samlsp {
	t.Helper()
	bin := samlspBinary(t)
	s := &samlsp{}
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	probe := "/readyz"
	if !ready {
		probe = "/healthz"
	}
	p, ports, err := localproc.Launch(ctx, 1, 3, func(ports []int) (*localproc.Proc, []string) {
		s.URL = fmt.Sprintf("http://127.0.0.1:%d", ports[0])
		root := s.URL
		if rootURL != nil {
			root = rootURL(ports[0])
		}
		a := append([]string{"--listen", fmt.Sprintf("127.0.0.1:%d", ports[0]), "--root-url", root, "--instance-id", "sp-1",
			"--idp-metadata-url", metadataURL, "--sp-key", bin.Key, "--sp-cert", bin.Cert, "--store", "memory",
			"--log-level", "debug", "--shutdown-grace", "1s", "--login-rate-per-client", "0", "--login-rate", "0"}, args...)
		return &localproc.Proc{Name: "samlsp", Path: bin.Path, Args: a, LogPath: filepath.Join(dir, "samlsp.log"), Env: samlspbin.Env()}, nil
	}, func(_ *localproc.Proc, ports []int) func(context.Context) error {
		return localproc.HTTPProbe(nil, fmt.Sprintf("http://127.0.0.1:%d%s", ports[0], probe), sptest.HeaderInstance, "sp-1")
	})
	if err != nil {
		t.Fatalf("samlsp %s did not start: %v", strings.Join(args, " "), err)
	}
	s.proc, s.Port = p, ports[0]
	t.Cleanup(func() {
		p.Stop(5 * time.Second)
		if t.Failed() {
			t.Logf("--- samlsp log (tail) ---\n%s", p.LogTail(6000))
		}
	})
	if idp != nil {
		md, err := get(s.URL + "/saml/metadata")
		if err != nil {
			t.Fatal(err)
		}
		if err := idp.RegisterSPMetadata("sp", md); err != nil {
			t.Fatal(err)
		}
	}
	return s
}

// titleOf is the title of cause's page.
func titleOf(c failure.Cause) string {
	return failure.Explain(&failure.Failure{Cause: c}, failure.Context{}).Title
}
