// Package chromium drives logins through a real headless Chromium
// (chromedp), the same way the lab's scripted browser does, and reports
// what the ACS POST looked like, so the lab can check that its scripted
// browser and a real browser agree.
package chromium

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
)

// Find returns the path of Chromium (or Chrome) on PATH, or "".
func Find() string {
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

// Options say how to reach the topology.
type Options struct {
	// ExecPath is the Chromium binary.
	ExecPath string
	// Resolve maps host names to addresses (Chromium's host resolver
	// rules), as the scripted browser's Resolve does.
	Resolve map[string]string
	// Timeout bounds one login (default 45s, plus ThinkTime).
	Timeout time.Duration
	// ThinkTime is really waited at the IdP's login form before
	// submitting it (the cookies age in Chromium's own clock).
	ThinkTime time.Duration
	// AgeFirst, if set, makes Login first open the app's /healthz
	// (through the balancer, which sets its affinity cookie) and wait that
	// long before the login begins: cookies older than the IdP's own
	// limit on a pending request (crewjam's IdP refuses a request issued
	// more than 90 s ago) would allow at its form.
	AgeFirst time.Duration
	// Logf, if set, receives a line per request Chromium makes.
	Logf func(format string, args ...any)
}

// ProbeCookie is the cookie without SameSite that Login sets with
// AgeFirst, from the page itself, and that nothing overwrites later.
const ProbeCookie = "samllab_probe"

// Result is what one Chromium login saw.
type Result struct {
	// OK: the app page showed the user.
	OK bool
	// Cause is the SP's X-Samlha-Cause on the ACS's answer ("" if none).
	Cause string
	// Decision is the proxy's X-Stickyproxy-Decision on the ACS POST.
	Decision string
	// StartInstance is the replica that began the login (the first
	// response's X-Samlha-Instance); ACSInstance the one that got the
	// ACS POST.
	StartInstance, ACSInstance string
	// CookiesSent are the cookies Chromium sent with the ACS POST.
	CookiesSent []string
	// CookiesBlocked are the cookies it withheld, with Chromium's reasons.
	CookiesBlocked map[string][]string
}

// Login logs in at appURL as user with password in a fresh headless
// Chromium profile (userDataDir, which it removes afterwards).
func Login(ctx context.Context, o Options, appURL, user, password string) (Result, error) {
	if o.Timeout <= 0 {
		o.Timeout = 45 * time.Second
	}
	logf := o.Logf
	if logf == nil {
		logf = func(string, ...any) {}
	}
	dir, err := os.MkdirTemp("", "samllab-chromium-")
	if err != nil {
		return Result{}, err
	}
	defer os.RemoveAll(dir)
	actx, cancel := chromedp.NewExecAllocator(ctx, allocatorOptions(o, dir)...)
	defer cancel()
	tctx, cancel := chromedp.NewContext(actx)
	defer cancel()
	tctx, cancel = context.WithTimeout(tctx, o.Timeout+o.ThinkTime+o.AgeFirst)
	defer cancel()

	rec := &recorder{appURL: appURL, logf: logf, res: Result{CookiesBlocked: map[string][]string{}},
		acsRequests: map[network.RequestID]bool{}, extraSeen: map[network.RequestID]bool{}}
	// The listener runs in the tab's event loop: record, return at once.
	if err := chromedp.Listen(tctx, rec.event); err != nil {
		return rec.result(), fmt.Errorf("start Chromium: %w", err)
	}
	if o.AgeFirst > 0 {
		if err := ageFirst(tctx, appURL, o.AgeFirst); err != nil {
			return rec.result(), err
		}
	}
	err = chromedp.Do(tctx,
		chromedp.Navigate(appURL),
		chromedp.WaitVisible(chromedp.CSS(`input[name="user"]`)),
		chromedp.SendKeys(chromedp.CSS(`input[name="user"]`), user),
		chromedp.SendKeys(chromedp.CSS(`input[name="password"]`), password),
		chromedp.Sleep(o.ThinkTime),
		chromedp.Submit(chromedp.CSS(`input[name="password"]`)),
		// Either the app (login finished) or the SP's error page.
		chromedp.WaitVisible(chromedp.CSS(`#user, #cause`)),
	)
	var shown string
	if err == nil {
		shown, _ = chromedp.Run(tctx, chromedp.Evaluate[string](`(document.querySelector('#user')||{}).textContent||''`))
	}
	res := rec.result()
	if err != nil {
		return res, fmt.Errorf("Chromium login: %w", err)
	}
	res.OK = strings.TrimSpace(shown) == user && res.Cause == ""
	if res.Decision == "" && res.ACSInstance == "" {
		return res, errors.New("Chromium's ACS POST was not seen")
	}
	return res, nil
}

// allocatorOptions are Chromium's flags for one login in profile dir.
func allocatorOptions(o Options, dir string) []chromedp.ExecAllocatorOption {
	var rules []string
	for host, addr := range o.Resolve {
		rules = append(rules, "MAP "+host+" "+addr)
	}
	return append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(o.ExecPath),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("no-first-run", true),
		chromedp.Flag("host-resolver-rules", strings.Join(rules, ", ")),
		// The lab's throwaway CA is not in Chromium's store.
		chromedp.Flag("ignore-certificate-errors", true),
		chromedp.UserDataDir(dir),
	)
}

// ageFirst sets a cookie of the page's own (no SameSite), which nothing
// refreshes afterwards, and lets it age beside the balancer's for d.
func ageFirst(tctx context.Context, appURL string, d time.Duration) error {
	u := strings.TrimSuffix(appURL, "/app") + "/healthz"
	err := chromedp.Do(tctx, chromedp.Navigate(u))
	if err == nil {
		_, err = chromedp.Run(tctx, chromedp.Evaluate[any](`document.cookie = "`+ProbeCookie+`=1; path=/; max-age=600; secure"`))
	}
	if err == nil {
		err = chromedp.Do(tctx, chromedp.Sleep(d))
	}
	if err != nil {
		return fmt.Errorf("Chromium at %s: %w", u, err)
	}
	return nil
}

// recorder keeps what Chromium's network events say about the login: the
// replica that began it, and the ACS POST's cookies and answer.
//
// A redirect keeps the request ID: the ACS POST and the GET it is
// redirected to share one. The ACS's own cookies are in the first
// ExtraInfo of the ID; its response comes as the next request's
// RedirectResponse, or as ResponseReceived when it does not redirect.
type recorder struct {
	appURL string
	logf   func(string, ...any)

	mu          sync.Mutex
	res         Result
	acsRequests map[network.RequestID]bool
	extraSeen   map[network.RequestID]bool
}

// result is a copy of what has been recorded so far.
func (r *recorder) result() Result {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.res
}

// event records one of Chromium's events.
func (r *recorder) event(ev any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	switch e := ev.(type) {
	case *network.EventRequestWillBeSent:
		r.onRequest(e)
	case network.EventRequestWillBeSent:
		r.onRequest(&e)
	case *network.EventRequestWillBeSentExtraInfo:
		r.onExtra(e)
	case network.EventRequestWillBeSentExtraInfo:
		r.onExtra(&e)
	case *network.EventResponseReceived:
		r.onResponse(e)
	case network.EventResponseReceived:
		r.onResponse(&e)
	}
}

func (r *recorder) acsHeaders(h network.Headers) {
	for k, v := range h {
		s, _ := v.(string)
		switch strings.ToLower(k) {
		case "x-stickyproxy-decision":
			r.res.Decision = s
		case "x-samlha-instance":
			r.res.ACSInstance = s
		case "x-samlha-cause":
			r.res.Cause = s
		}
	}
}

func (r *recorder) firstHeaders(h network.Headers) {
	for k, v := range h {
		if s, _ := v.(string); strings.EqualFold(k, "x-samlha-instance") && r.res.StartInstance == "" {
			r.res.StartInstance = s
		}
	}
}

func (r *recorder) onRequest(e *network.EventRequestWillBeSent) {
	r.logf("chromium: %s %s", e.Request.Method, e.Request.URL)
	if e.RedirectResponse != nil {
		if r.acsRequests[e.RequestID] && strings.HasSuffix(e.RedirectResponse.URL, "/saml/acs") {
			r.acsHeaders(e.RedirectResponse.Headers)
		} else if strings.HasPrefix(e.RedirectResponse.URL, r.appURL) {
			r.firstHeaders(e.RedirectResponse.Headers)
		}
	}
	if e.Request.Method == "POST" && strings.HasSuffix(e.Request.URL, "/saml/acs") {
		r.acsRequests[e.RequestID] = true
	}
}

func (r *recorder) onExtra(e *network.EventRequestWillBeSentExtraInfo) {
	if !r.acsRequests[e.RequestID] || r.extraSeen[e.RequestID] {
		return
	}
	r.extraSeen[e.RequestID] = true
	for _, c := range e.AssociatedCookies {
		if len(c.BlockedReasons) == 0 {
			r.res.CookiesSent = append(r.res.CookiesSent, c.Cookie.Name)
			continue
		}
		for _, why := range c.BlockedReasons {
			r.res.CookiesBlocked[c.Cookie.Name] = append(r.res.CookiesBlocked[c.Cookie.Name], why.String())
		}
	}
}

func (r *recorder) onResponse(e *network.EventResponseReceived) {
	if r.acsRequests[e.RequestID] && strings.HasSuffix(e.Response.URL, "/saml/acs") {
		r.acsHeaders(e.Response.Headers)
	}
}
