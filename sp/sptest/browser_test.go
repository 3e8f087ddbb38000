package sptest_test

import (
	"bytes"
	"context"
	"fmt"
	"html"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/samlha/samlha/sp/sptest"
)

// seen is a request as a fake server saw it.
type seen struct {
	Method, Path                                string
	SecFetchSite, SecFetchUser, Origin, Referer string
	Cookie                                      string
	Body                                        string
}

// recorder records the requests of fake servers.
type recorder struct {
	mu   sync.Mutex
	reqs []seen
}

func (rec *recorder) wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(bytes.NewReader(body))
		rec.mu.Lock()
		rec.reqs = append(rec.reqs, seen{
			Method: r.Method, Path: r.URL.Path,
			SecFetchSite: r.Header.Get("Sec-Fetch-Site"), SecFetchUser: r.Header.Get("Sec-Fetch-User"),
			Origin: r.Header.Get("Origin"), Referer: r.Header.Get("Referer"),
			Cookie: r.Header.Get("Cookie"), Body: string(body),
		})
		rec.mu.Unlock()
		h.ServeHTTP(w, r)
	})
}

func (rec *recorder) all() []seen {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	return append([]seen(nil), rec.reqs...)
}

// serveAs starts an httptest server for h on 127.0.0.1 and returns its
// URL under host (the browser resolves host to 127.0.0.1).
func serveAs(t *testing.T, host string, h http.Handler) string {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	return "http://" + net.JoinHostPort(host, port)
}

// fakeFlow is a minimal SP and IdP speaking the shape of a SAML login
// without SAML: enough to see what the browser sends at each hop.
type fakeFlow struct {
	sp, idp string
	rec     *recorder
}

func newFakeFlow(t *testing.T) *fakeFlow {
	f := &fakeFlow{rec: &recorder{}}
	spMux := http.NewServeMux()
	spMux.HandleFunc("GET /app", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set(sptest.HeaderInstance, "sp-1")
		w.Header().Set(sptest.HeaderProxyTarget, "sp-1")
		w.Header().Set(sptest.HeaderProxyDecision, "new")
		if c, err := r.Cookie("sid"); err == nil {
			w.Header().Set(sptest.HeaderUser, c.Value)
			io.WriteString(w, "hello")
			return
		}
		http.SetCookie(w, &http.Cookie{Name: "track", Value: "t1", Path: "/acs", HttpOnly: true}) // SameSite unset: Lax
		http.Redirect(w, r, f.idp+"/login?SAMLRequest=req", http.StatusFound)
	})
	spMux.HandleFunc("POST /acs", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set(sptest.HeaderInstance, "sp-2")
		if _, err := r.Cookie("track"); err != nil {
			w.Header().Set(sptest.HeaderCause, "binding-cookie-missing")
			http.Error(w, "no binding cookie", http.StatusForbidden)
			return
		}
		http.SetCookie(w, &http.Cookie{Name: "track", Path: "/acs", MaxAge: -1})
		http.SetCookie(w, &http.Cookie{Name: "sid", Value: r.PostFormValue("SAMLResponse"), Path: "/"})
		http.Redirect(w, r, "/app", http.StatusSeeOther)
	})
	idpMux := http.NewServeMux()
	loginForm := `<form method="post" action="/login"><input name="user"><input type="password" name="password">` +
		`<input type="hidden" name="SAMLRequest" value="req"></form>`
	idpMux.HandleFunc("GET /login", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, loginForm) })
	idpMux.HandleFunc("POST /login", func(w http.ResponseWriter, r *http.Request) {
		if r.PostFormValue("password") != r.PostFormValue("user")+"-password" {
			io.WriteString(w, loginForm)
			return
		}
		fmt.Fprintf(w, `<form method="post" action="%s/acs"><input type="hidden" name="SAMLResponse" value="%s">`+
			`<input type="hidden" name="RelayState" value="rs"></form><script>document.forms[0].submit()</script>`,
			html.EscapeString(f.sp), html.EscapeString(r.PostFormValue("user")))
	})
	f.sp = serveAs(t, "sp.samlha-sp.test", f.rec.wrap(spMux))
	f.idp = serveAs(t, "idp.samlha-idp.test", f.rec.wrap(idpMux))
	return f
}

var resolveFake = map[string]string{"sp.samlha-sp.test": "127.0.0.1", "idp.samlha-idp.test": "127.0.0.1"}

var ignoreDuration = cmpopts.IgnoreFields(sptest.Hop{}, "Start", "Duration")

func TestLoginRecordsHopsAndHeaders(t *testing.T) {
	t.Parallel()
	f := newFakeFlow(t)
	b := sptest.NewBrowser(sptest.Options{Resolve: resolveFake, DisableSameSite: true})
	defer b.CloseIdleConnections()
	res := b.Login(ctxFor(t), f.sp+"/app", "alice", "alice-password")
	if !res.OK {
		t.Fatalf("cause %q err %v%s", res.Cause, res.Err, describe(res.Hops))
	}
	wantHops := []sptest.Hop{
		{Method: "GET", URL: f.sp + "/app", Status: 302, Instance: "sp-1", ProxyTarget: "sp-1", ProxyDecision: "new"},
		{Method: "GET", URL: f.idp + "/login?SAMLRequest=req", Status: 200, CrossSite: true},
		{Method: "POST", URL: f.idp + "/login", Status: 200, Form: sptest.FormLogin},
		{Method: "POST", URL: f.sp + "/acs", Status: 303, Instance: "sp-2", CookiesSent: []string{"track"}, CrossSite: true, Form: sptest.FormSAMLResponse},
		{Method: "GET", URL: f.sp + "/app", Status: 200, Instance: "sp-1", ProxyTarget: "sp-1", ProxyDecision: "new", CookiesSent: []string{"sid"}, CrossSite: true},
	}
	if diff := cmp.Diff(wantHops, res.Hops, ignoreDuration); diff != "" {
		t.Errorf("hops (-want +got):\n%s", diff)
	}
	if res.StartInstance != "sp-1" || res.ACSInstance != "sp-2" || res.FinishInstance != "sp-1" {
		t.Errorf("instances start=%q acs=%q finish=%q", res.StartInstance, res.ACSInstance, res.FinishInstance)
	}

	idpOrigin := f.idp
	wantSeen := []seen{
		{Method: "GET", Path: "/app", SecFetchSite: "none", SecFetchUser: "?1"},
		{Method: "GET", Path: "/login", SecFetchSite: "none", SecFetchUser: "?1"},
		{Method: "POST", Path: "/login", SecFetchSite: "same-origin", SecFetchUser: "?1", Origin: idpOrigin,
			Referer: f.idp + "/login?SAMLRequest=req", Body: "SAMLRequest=req&password=alice-password&user=alice"},
		{Method: "POST", Path: "/acs", SecFetchSite: "cross-site", Origin: idpOrigin, Referer: idpOrigin + "/",
			Cookie: "track=t1", Body: "RelayState=rs&SAMLResponse=alice"},
		{Method: "GET", Path: "/app", SecFetchSite: "cross-site", Referer: idpOrigin + "/", Cookie: "sid=alice"},
	}
	if diff := cmp.Diff(wantSeen, f.rec.all()); diff != "" {
		t.Errorf("requests as the servers saw them (-want +got):\n%s", diff)
	}
}

// With SameSite emulated, the fake flow fails as the real one does, and the
// SP's named cause is the result's.
func TestLoginSameSiteCauseFromSP(t *testing.T) {
	t.Parallel()
	f := newFakeFlow(t)
	b := sptest.NewBrowser(sptest.Options{Resolve: resolveFake})
	defer b.CloseIdleConnections()
	res := b.Login(ctxFor(t), f.sp+"/app", "alice", "alice-password")
	if res.OK || res.Cause != "binding-cookie-missing" || res.Err == nil {
		t.Fatalf("ok=%v cause=%q err=%v%s", res.OK, res.Cause, res.Err, describe(res.Hops))
	}
	if res.Final == nil || res.Final.Status != http.StatusForbidden {
		t.Errorf("final page %+v", res.Final)
	}
	if res.ACSInstance != "sp-2" || res.FinishInstance != "sp-2" {
		t.Errorf("instances acs=%q finish=%q", res.ACSInstance, res.FinishInstance)
	}
}

func TestLoginFailures(t *testing.T) {
	t.Parallel()
	mux := http.NewServeMux()
	mux.HandleFunc("/loop", func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, "/loop", http.StatusFound) })
	mux.HandleFunc("/named-then-500", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set(sptest.HeaderCause, "session-not-found-cross-instance")
		http.Redirect(w, r, "/500", http.StatusFound)
	})
	mux.HandleFunc("/500", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusInternalServerError) })
	mux.HandleFunc("/503-named", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set(sptest.HeaderCause, "store-unavailable")
		w.WriteHeader(http.StatusServiceUnavailable)
	})
	mux.HandleFunc("/app", func(w http.ResponseWriter, _ *http.Request) { w.Header().Set(sptest.HeaderUser, "bob") })
	mux.HandleFunc("/plain", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "<p>nothing to do</p>") })
	mux.HandleFunc("/slow", func(_ http.ResponseWriter, r *http.Request) { <-r.Context().Done() })
	mux.HandleFunc("/login-form", func(w http.ResponseWriter, _ *http.Request) {
		io.WriteString(w, `<form method="post" action="/login-form"><input name="user"><input type="password" name="password"></form>`)
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	closed := httptest.NewServer(mux)
	closed.Close()

	cases := []struct {
		path     string
		base     string
		opts     sptest.Options
		want     string
		wantHops int
	}{
		{path: "/loop", opts: sptest.Options{MaxHops: 5}, want: sptest.CauseTooManyHops, wantHops: 5},
		{path: "/named-then-500", want: "session-not-found-cross-instance", wantHops: 2},
		{path: "/503-named", want: "store-unavailable", wantHops: 1},
		{path: "/500", want: "http-500", wantHops: 1},
		{path: "/app", want: sptest.CauseWrongUser, wantHops: 1},
		{path: "/plain", want: sptest.CauseUnexpectedPage, wantHops: 1},
		{path: "/login-form", want: sptest.CauseIdPLoginFailed, wantHops: 2},
		{path: "/slow", opts: sptest.Options{RequestTimeout: 50 * time.Millisecond}, want: sptest.CauseTimeout, wantHops: 1},
		{path: "/app", base: closed.URL, want: sptest.CauseTransport, wantHops: 1},
		{path: "/app", base: "http://unresolved.samlha.test", want: sptest.CauseTransport, wantHops: 1}, // never asks DNS
	}
	for _, tc := range cases {
		t.Run(tc.path+"/"+tc.want, func(t *testing.T) {
			t.Parallel()
			base := srv.URL
			if tc.base != "" {
				base = tc.base
			}
			b := sptest.NewBrowser(tc.opts)
			defer b.CloseIdleConnections()
			res := b.Login(ctxFor(t), base+tc.path, "alice", "alice-password")
			if res.OK || res.Cause != tc.want || res.Err == nil || len(res.Hops) != tc.wantHops {
				t.Errorf("ok=%v cause=%q (want %q) hops=%d (want %d) err=%v", res.OK, res.Cause, tc.want, len(res.Hops), tc.wantHops, res.Err)
			}
		})
	}

	t.Run("canceled", func(t *testing.T) {
		t.Parallel()
		ctx, cancel := context.WithCancel(t.Context())
		b := sptest.NewBrowser(sptest.Options{})
		defer b.CloseIdleConnections()
		done := make(chan *sptest.Result)
		go func() { done <- b.Login(ctx, srv.URL+"/slow", "alice", "x") }()
		cancel()
		if res := <-done; res.Cause != sptest.CauseCanceled {
			t.Errorf("cause %q, err %v", res.Cause, res.Err)
		}
	})
}

// Redirects: 301 and 302 turn a POST into a GET, 303 too, 307 and 308 keep
// the method and body.
func TestRedirectMethods(t *testing.T) {
	t.Parallel()
	rec := &recorder{}
	mux := http.NewServeMux()
	for _, code := range []int{301, 302, 303, 307, 308} {
		mux.HandleFunc(fmt.Sprintf("/r%d", code), func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, "/landing", code)
		})
	}
	mux.HandleFunc("/landing", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "landed") })
	base := serveAs(t, "127.0.0.1", rec.wrap(mux))
	for _, tc := range []struct {
		code                int
		wantMethod, wantBod string
	}{
		{301, "GET", ""}, {302, "GET", ""}, {303, "GET", ""}, {307, "POST", "SAMLResponse=r"}, {308, "POST", "SAMLResponse=r"},
	} {
		b := sptest.NewBrowser(sptest.Options{})
		res := b.Submit(ctxFor(t), &sptest.PendingForm{
			Action: fmt.Sprintf("%s/r%d", base, tc.code), Fields: url.Values{"SAMLResponse": {"r"}}, From: base + "/idp",
		})
		b.CloseIdleConnections()
		if len(res.Hops) != 2 || res.Hops[1].Method != tc.wantMethod {
			t.Errorf("%d: hops %s", tc.code, describe(res.Hops))
			continue
		}
		all := rec.all()
		last := all[len(all)-1]
		if last.Method != tc.wantMethod || last.Body != tc.wantBod {
			t.Errorf("%d: landing saw %s with body %q, want %s %q", tc.code, last.Method, last.Body, tc.wantMethod, tc.wantBod)
		}
		if tc.wantMethod == "POST" && last.Origin != base {
			t.Errorf("%d: Origin %q after a same-origin redirect, want %q", tc.code, last.Origin, base)
		}
	}
}

func TestThinkTime(t *testing.T) {
	t.Parallel()
	f := newFakeFlow(t)
	const think = 150 * time.Millisecond
	b := sptest.NewBrowser(sptest.Options{Resolve: resolveFake, DisableSameSite: true, ThinkTime: think})
	defer b.CloseIdleConnections()
	res := b.Login(ctxFor(t), f.sp+"/app", "alice", "alice-password")
	if !res.OK || res.Duration < think {
		t.Errorf("ok=%v duration %s, want at least the think time %s", res.OK, res.Duration, think)
	}
}

func TestCookiesAndSetCookie(t *testing.T) {
	t.Parallel()
	b := sptest.NewBrowser(sptest.Options{})
	u := mustURL(t, "http://sp.test/app")
	if err := b.SetCookie(u, &http.Cookie{Name: "token", Value: "forged", Path: "/"}); err != nil {
		t.Fatal(err)
	}
	if err := b.SetCookie(u, &http.Cookie{Name: "s", Value: "1", Secure: true}); err == nil {
		t.Error("a Secure cookie from http was accepted")
	}
	if err := b.SetCookie(u, &http.Cookie{Name: "n", Value: "1", SameSite: http.SameSiteNoneMode}); err == nil {
		t.Error("SameSite=None without Secure was accepted")
	}
	got := b.Cookies(u)
	want := []*http.Cookie{{Name: "token", Value: "forged", Path: "/", SameSite: http.SameSiteLaxMode}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Cookies (-want +got):\n%s", diff)
	}
	if err := b.SetCookie(u, &http.Cookie{Name: "token", Path: "/", MaxAge: -1}); err != nil {
		t.Fatal(err)
	}
	if got := b.Cookies(u); len(got) != 0 {
		t.Errorf("after deletion: %v", got)
	}
}

func TestGet(t *testing.T) {
	t.Parallel()
	mux := http.NewServeMux()
	mux.HandleFunc("/a", func(w http.ResponseWriter, r *http.Request) {
		http.SetCookie(w, &http.Cookie{Name: "a", Value: "1", Path: "/"})
		http.Redirect(w, r, "/b", http.StatusFound)
	})
	mux.HandleFunc("/b", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Got-Cookie", r.Header.Get("Cookie"))
		w.WriteHeader(http.StatusTeapot)
		io.WriteString(w, "body")
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	b := sptest.NewBrowser(sptest.Options{})
	defer b.CloseIdleConnections()
	page, err := b.Get(ctxFor(t), srv.URL+"/a")
	if err != nil {
		t.Fatal(err)
	}
	if page.URL.Path != "/b" || page.Status != http.StatusTeapot || string(page.Body) != "body" ||
		page.Header.Get("X-Got-Cookie") != "a=1" || len(page.Hops) != 2 {
		t.Errorf("page %s %d %q cookie %q hops %d", page.URL, page.Status, page.Body, page.Header.Get("X-Got-Cookie"), len(page.Hops))
	}
	if _, err := b.Get(ctxFor(t), "http://127.0.0.1:1/"); err == nil {
		t.Error("Get of a closed port: no error")
	}
}
