package stickyproxy_test

import (
	"context"
	"crypto/rsa"
	"crypto/x509"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/samlha/samlha/sp"
	"github.com/samlha/samlha/sp/devidp"
	"github.com/samlha/samlha/sp/keypair"
	"github.com/samlha/samlha/sp/login"
	"github.com/samlha/samlha/sp/sptest"
	"github.com/samlha/samlha/sp/sptest/devidptest"
	"github.com/samlha/samlha/stickyproxy"
	"github.com/samlha/samlha/store/memory"
)

// TestSAMLAwareRealSPs: samlha's SP (three sp.New replicas, each with its
// own memory store) behind the proxy with --stickiness off, the development
// IdP, and the scripted browser. With --saml-aware every ACS POST reaches
// the replica that began the login and is accepted there; the request after
// it is balanced, so on memory stores the session is (mostly) not there:
// what deploy/README.md says the combination fixes and what it leaves.
// Without --saml-aware the ACS POST is balanced like everything else.
// (Only the test imports the SP; the proxy does not.)
func TestSAMLAwareRealSPs(t *testing.T) {
	t.Parallel()
	idp := devidptest.Start(t, devidp.Config{})
	key, cert, err := keypair.Generate("samlha-proxy-test", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	for _, aware := range []bool{true, false} {
		t.Run(fmt.Sprintf("saml-aware=%v", aware), func(t *testing.T) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			root, _ := url.Parse("http://" + ln.Addr().String())
			targets := startSPs(t, idp, key, cert, root)
			p, err := stickyproxy.New(stickyproxy.Config{
				Targets: targets, Stickiness: stickyproxy.StickinessOff, SAMLAware: aware,
				Logger: slog.New(slog.NewTextHandler(devidptest.LogWriter(t), nil)),
			})
			if err != nil {
				t.Fatal(err)
			}
			srv := p.PublicServer()
			go srv.Serve(p.Listener(ln))
			t.Cleanup(func() { srv.Close(); p.Close() })

			resp, err := http.Get(root.String() + "/saml/metadata")
			if err != nil {
				t.Fatal(err)
			}
			md, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err := idp.RegisterSPMetadata(fmt.Sprintf("samlha-%v", aware), md); err != nil {
				t.Fatal(err)
			}

			const logins = 6
			acsHome, acsAccepted, balancedAfter := 0, 0, 0
			for i := range logins {
				b := sptest.NewBrowser(sptest.Options{RequestTimeout: 10 * time.Second})
				ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
				r := b.Login(ctx, root.String()+"/app", "alice", "alice-password")
				cancel()
				for j, h := range r.Hops {
					if h.Form != sptest.FormSAMLResponse || !strings.HasSuffix(h.URL, "/saml/acs") {
						continue
					}
					if h.Instance == r.StartInstance {
						acsHome++
					}
					if h.Status >= 300 && h.Status < 400 {
						acsAccepted++
					}
					if aware && h.ProxyDecision != "relaystate" {
						t.Errorf("login %d: ACS decision %q, want relaystate", i, h.ProxyDecision)
					}
					if j+1 < len(r.Hops) && r.Hops[j+1].ProxyDecision == "balanced" {
						balancedAfter++
					}
					break // the first ACS POST of the flow
				}
			}
			t.Logf("saml-aware=%v: %d of %d ACS POSTs reached the replica that began the login, %d accepted, %d next requests balanced",
				aware, acsHome, logins, acsAccepted, balancedAfter)
			if aware {
				if acsHome != logins || acsAccepted != logins {
					t.Errorf("with --saml-aware: %d of %d ACS POSTs reached their replica and %d were accepted; want all", acsHome, logins, acsAccepted)
				}
				if balancedAfter != logins {
					t.Errorf("with --saml-aware and stickiness off: %d of %d requests after the ACS balanced; want all", balancedAfter, logins)
				}
			} else if acsHome == logins {
				// Round robin over three replicas sends the ACS POST (the
				// login's third request through the proxy) elsewhere.
				t.Errorf("without --saml-aware every ACS POST reached its replica: the test shows nothing")
			}
		})
	}
}

// startSPs starts three SP replicas, each with its own memory store, as
// the proxy's targets.
func startSPs(t *testing.T, idp *devidptest.IdP, key *rsa.PrivateKey, cert *x509.Certificate, root *url.URL) []stickyproxy.Target {
	var targets []stickyproxy.Target
	for i := range 3 {
		id := fmt.Sprintf("sp-%d", i+1)
		st := memory.New(memory.Options{})
		t.Cleanup(func() { st.Close() })
		s, err := sp.New(sp.Config{
			InstanceID: id, RootURL: root, Store: st, Key: key, Certificate: cert,
			IDP:    &login.IDPMetadata{Static: idp.Metadata()},
			Logger: slog.New(slog.NewTextHandler(devidptest.LogWriter(t), nil)).With("replica", id),
		})
		if err != nil {
			t.Fatal(err)
		}
		if err := s.LoadIDPMetadata(context.Background()); err != nil {
			t.Fatal(err)
		}
		srv := httptest.NewServer(s)
		t.Cleanup(srv.Close)
		targets = append(targets, stickyproxy.Target{Name: id, URL: mustURL(srv.URL)})
	}
	return targets
}
