package walk

import (
	"encoding/json"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/samlha/samlha/sp/failure"
)

// site is one mode as a person meets it.
type site struct {
	// Root is the URL the browser opens (samlsp, or nginx before it).
	Root string
	// Protected is the page asked for; LogoutPath the mode's logout page.
	Protected, LogoutPath string
	// App: the page is samlsp's own app page (else go-httpbin's JSON).
	App bool
}

// waitPath waits until the tab is at path (path and query).
func waitPath(t *testing.T, b *tab, path string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		loc, err := chromedp.Run(b.ctx, chromedp.Location())
		if u, _ := url.Parse(loc); err == nil && u != nil && samePath(u, path) {
			ready, _ := chromedp.Run(b.ctx, chromedp.Evaluate[string](`document.readyState`))
			if ready == "complete" {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the browser is at %s, want %s", loc, path)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// samePath: u is at path (with its query, if path has one).
func samePath(u *url.URL, path string) bool {
	if strings.Contains(path, "?") {
		return u.RequestURI() == path
	}
	return u.Path == path
}

// logIn opens the protected page, logs in at the IdP's form as alice and
// checks that the browser lands on the page asked for, as alice. It
// returns the ACS POST's form.
func logIn(t *testing.T, b *tab, s site) url.Values {
	t.Helper()
	b.reset()
	b.do(t, "open "+s.Protected, chromedp.Navigate(s.Root+s.Protected), chromedp.WaitVisible(chromedp.CSS(`input[name="user"]`)))
	b.reset()
	b.do(t, "log in at the IdP",
		chromedp.SendKeys(chromedp.CSS(`input[name="user"]`), "alice"),
		chromedp.SendKeys(chromedp.CSS(`input[name="password"]`), "alice-password"),
		chromedp.Submit(chromedp.CSS(`input[name="password"]`)))
	waitPath(t, b, s.Protected)
	var acs url.Values
	for _, r := range b.requests() {
		if r.method == "POST" && strings.HasSuffix(strings.SplitN(r.url, "?", 2)[0], "/saml/acs") {
			acs, _ = url.ParseQuery(r.postData)
		}
	}
	if acs.Get("SAMLResponse") == "" {
		t.Fatalf("no ACS POST with a SAMLResponse seen")
	}
	if s.App {
		mustLookRight(t, b, want{Name: "app", Status: 200, Title: "App", H1: "Hello, alice", Path: s.Protected})
		if u := eval[string](t, b, `document.querySelector('#user').textContent`); u != "alice" {
			t.Errorf("the app shows user %q, want alice", u)
		}
	} else {
		text := eval[string](t, b, `document.body.innerText`)
		var got struct {
			Headers map[string][]string `json:"headers"`
		}
		if err := json.Unmarshal([]byte(text), &got); err != nil || len(got.Headers["X-Samlha-User"]) != 1 || got.Headers["X-Samlha-User"][0] != "alice" {
			t.Errorf("go-httpbin's %s shows %s (%v), want X-Samlha-User: alice", s.Protected, text, err)
		}
	}
	return acs
}

// replay posts the ACS form again from the tab: the SP's page for a
// response already used.
func replay(t *testing.T, b *tab, s site, acs url.Values) {
	t.Helper()
	fields, _ := json.Marshal(map[string]string{"SAMLResponse": acs.Get("SAMLResponse"), "RelayState": acs.Get("RelayState")})
	b.reset()
	_ = eval[any](t, b, `(() => { const f = document.createElement('form'); f.method = 'POST';
		f.action = `+jsString(s.Root+"/saml/acs")+`; const v = `+string(fields)+`;
		for (const k in v) { const i = document.createElement('input'); i.type = 'hidden'; i.name = k; i.value = v[k]; f.appendChild(i); }
		document.body.appendChild(f); f.submit(); return 1; })()`)
	waitPath(t, b, "/saml/acs")
	b.do(t, "the replay's page", chromedp.WaitReady(chromedp.CSS("#cause")))
	mustLookRight(t, b, want{Name: "replay", Status: 409, Cause: string(failure.CauseStateAlreadyUsed),
		Title: titleOf(failure.CauseStateAlreadyUsed), Path: "/saml/acs"})
}

func jsString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// logOut walks the logout of tab b: the logout page (through the app's
// link in app mode), its button, the signed-out page (which starts no
// navigation for 2 s), "Log in again" (the IdP asks for the password:
// single logout ended its session); then the stale tab's button is
// refused.
func logOut(t *testing.T, b, stale *tab, s site) {
	t.Helper()
	b.reset()
	if s.App {
		b.do(t, "the app's Log out link", chromedp.Navigate(s.Root+s.Protected), chromedp.WaitVisible(chromedp.CSS(`a[href="`+s.LogoutPath+`"]`)))
		b.reset()
		b.do(t, "click Log out", chromedp.Click(chromedp.CSS(`a[href="`+s.LogoutPath+`"]`)))
	} else {
		b.do(t, "open the logout page", chromedp.Navigate(s.Root+s.LogoutPath))
	}
	waitPath(t, b, s.LogoutPath)
	mustLookRight(t, b, want{Name: "logout", Status: 200, Title: "Log out", Path: s.LogoutPath})
	b.reset()
	b.do(t, "click the logout button", chromedp.Click(chromedp.CSS(`#logout`)))
	waitPath(t, b, "/saml/signed-out")
	mustLookRight(t, b, want{Name: "signed-out", Status: 200, Title: "Signed out", H1: "You are signed out", Path: "/saml/signed-out"})
	var logout string
	for _, r := range b.requests() {
		if strings.HasPrefix(r.url, s.Root+"/saml/signed-out") {
			logout = header(r.headers, "X-Samlha-Logout")
		}
	}
	if logout != "confirmed" {
		t.Errorf("the signed-out page's X-Samlha-Logout is %q, want confirmed", logout)
	}
	n := len(b.requests())
	time.Sleep(2 * time.Second)
	for _, r := range b.requests()[n:] {
		if r.kind == "Document" {
			t.Errorf("the signed-out page started a navigation by itself: %s %s", r.method, r.url)
		}
	}
	b.reset()
	b.do(t, "Log in again", chromedp.Click(chromedp.CSS(`#login-again`)), chromedp.WaitVisible(chromedp.CSS(`input[name="password"]`)))
	// Logged in again, the browser has a new session: the stale tab's
	// token is the old session's.
	b.do(t, "log in again at the IdP",
		chromedp.SendKeys(chromedp.CSS(`input[name="user"]`), "alice"),
		chromedp.SendKeys(chromedp.CSS(`input[name="password"]`), "alice-password"),
		chromedp.Submit(chromedp.CSS(`input[name="password"]`)))
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		loc, _ := chromedp.Run(b.ctx, chromedp.Location())
		if strings.HasPrefix(loc, s.Root+"/") && !strings.HasPrefix(loc, s.Root+"/saml/acs") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("logging in again ended at %s", loc)
		}
	}

	stale.reset()
	// A script's click: Chromium's synthetic mouse events wait for a frame
	// a tab that was in the background may never draw.
	stale.front(t)
	_ = eval[any](t, stale, `document.querySelector('#logout').click(), 1`)
	deadline := time.Now().Add(15 * time.Second)
	for {
		if got, err := chromedp.Run(stale.ctx, chromedp.Evaluate[bool](`!!document.querySelector('#cause')`)); err == nil && got {
			break
		}
		if time.Now().After(deadline) {
			var seen []string
			for _, r := range stale.requests() {
				seen = append(seen, r.method+" "+r.url+" "+strconv.Itoa(int(r.status))+" "+r.failed)
			}
			loc, _ := chromedp.Run(stale.ctx, chromedp.Location())
			t.Fatalf("the stale tab's button led to no error page (at %s); requests:\n%s", loc, strings.Join(seen, "\n"))
		}
		time.Sleep(100 * time.Millisecond)
	}
	mustLookRight(t, stale, want{Name: "stale-logout", Status: 403, Cause: string(failure.CauseLogoutTokenInvalid),
		Title: titleOf(failure.CauseLogoutTokenInvalid), Path: "/saml/logout"})
}

// walk is the whole walk of one mode, in tab b of a new browser;
// refusals, if not nil, walks the mode's refusals while alice is logged in.
func walk(t *testing.T, b *tab, s site, refusals func(t *testing.T, b *tab)) {
	acs := logIn(t, b, s)
	replay(t, b, s, acs)
	if refusals != nil {
		refusals(t, b)
	}
	stale := b.newTab(t)
	stale.do(t, "the second tab's logout page", chromedp.Navigate(s.Root+s.LogoutPath), chromedp.WaitVisible(chromedp.CSS(`#logout`)))
	logOut(t, b, stale, s)
}

// TestWalkApp walks app mode: /app, the IdP, back on /app as alice, the
// replayed ACS POST, the Log out link, its button, the signed-out page,
// logging in again, and a stale logout tab.
func TestWalkApp(t *testing.T) {
	t.Parallel()
	if findChromium() == "" {
		skipOrFail(t, "no Chromium on PATH (apt-get install chromium)")
	}
	idp := startIdP(t)
	sp := startSP(t, idp, idp.URL+"/metadata", nil, true, "--mode", "app")
	walk(t, newBrowser(t), site{Root: sp.URL, Protected: "/app", LogoutPath: "/logout", App: true}, nil)
}
