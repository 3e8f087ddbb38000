package sptest

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// Headers the browser reads from the servers it talks to. They are the
// contract between samlha's servers and its tests and lab.
const (
	// HeaderInstance names the SP replica that served a response.
	HeaderInstance = "X-Samlha-Instance"
	// HeaderCause is the SP's name for why it could not finish a login,
	// such as "state-not-found-cross-instance".
	HeaderCause = "X-Samlha-Cause"
	// HeaderUser is the logged-in user the SP shows at the success page.
	HeaderUser = "X-Samlha-User"
	// HeaderProxyTarget and HeaderProxyDecision are stickyproxy's: which
	// target served a request, and why it was chosen.
	HeaderProxyTarget   = "X-Stickyproxy-Target"
	HeaderProxyDecision = "X-Stickyproxy-Decision"
)

// Causes the browser names itself, when the SP named none (see
// Result.Cause). An HTTP error without a named cause is "http-<status>"
// (see CauseHTTP).
const (
	CauseTooManyHops    = "too-many-hops"    // MaxHops requests without reaching the end
	CauseIdPLoginFailed = "idp-login-failed" // the IdP showed its login form again after the credentials
	CauseTransport      = "transport-error"  // a request failed below HTTP (connection refused, reset, TLS)
	CauseTimeout        = "timeout"          // RequestTimeout or the context's deadline passed
	CauseCanceled       = "canceled"         // the context was canceled
	CauseWrongUser      = "wrong-user"       // the success page shows another user, or none
	CauseUnexpectedPage = "unexpected-page"  // a page with nothing to follow: no redirect, no form to submit
)

// CauseHTTP is the cause of a login that ended on an HTTP error status the
// SP did not explain: "http-403".
func CauseHTTP(status int) string { return "http-" + strconv.Itoa(status) }

// Form kinds recorded in Hop.Form.
const (
	FormLogin        = "login"        // the IdP's login form, filled with user and password
	FormSAMLRequest  = "SAMLRequest"  // an auto-submitted form carrying an AuthnRequest (HTTP-POST binding)
	FormSAMLResponse = "SAMLResponse" // an auto-submitted form carrying a Response to the ACS
)

// maxBody is the most of a response body the browser reads; the rest is
// discarded.
const maxBody = 4 << 20

// Options configure a Browser. The zero value is usable.
type Options struct {
	// Transport sends the requests. Many browsers may share one (the lab
	// does, under load). If nil, each browser gets its own from
	// NewTransport(Resolve, RootCAs).
	Transport http.RoundTripper
	// Resolve and RootCAs configure the default transport (see
	// NewTransport). They are not applied to a Transport you pass: build
	// that one with NewTransport(Resolve, RootCAs).
	Resolve map[string]string
	RootCAs *x509.CertPool

	// DisableSameSite turns off the emulation of Chrome's SameSite rules:
	// every matching cookie is then sent, cross-site or not. By default
	// (false) they are applied (see the package documentation).
	DisableSameSite bool

	// MaxHops bounds the HTTP requests of one Login, Submit or Get
	// (default 20).
	MaxHops int
	// ThinkTime is how long the user "types" at the IdP's login form
	// before submitting it.
	ThinkTime time.Duration
	// RequestTimeout bounds each request, from sending it to reading the
	// body (0: only the context bounds it).
	RequestTimeout time.Duration
	// SuccessPath is the path of the page that ends a successful login
	// (default "/app").
	SuccessPath string
	// Now is the clock of cookie expiry (default time.Now).
	Now func() time.Time
	// LaxPlusPOST emulates Chrome's Lax+POST exception: a cookie set
	// without SameSite and younger than LaxPlusPOSTWindow is still sent on
	// a cross-site top-level POST (see the package documentation). Off by
	// default.
	LaxPlusPOST bool
	// SimulatedThink is think time at the IdP's login form that passes on
	// the browser's clock only: no real wait, but every cookie is that much
	// older when the form is submitted (a slow user, for LaxPlusPOST).
	SimulatedThink time.Duration
	// UserAgent is sent on every request (default: a Chrome on Linux user
	// agent, with "samlha-sptest" appended).
	UserAgent string
}

const defaultUserAgent = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36 samlha-sptest"

// Browser is a scripted browser with its own cookie jar: one user's browser
// profile. Its methods may be called from several goroutines, but a login is
// sequential, as in a real tab; use one Browser per simulated user.
type Browser struct {
	opts         Options
	client       *http.Client
	ownTransport *http.Transport // non-nil when the browser made its transport
	jar          *jar
	skew         atomic.Int64 // simulated time passed, in ns (SimulatedThink)
}

// NewBrowser returns a browser with an empty cookie jar.
func NewBrowser(opts Options) *Browser {
	if opts.MaxHops <= 0 {
		opts.MaxHops = 20
	}
	if opts.SuccessPath == "" {
		opts.SuccessPath = "/app"
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.UserAgent == "" {
		opts.UserAgent = defaultUserAgent
	}
	b := &Browser{opts: opts}
	b.jar = newJar(func() time.Time { return opts.Now().Add(time.Duration(b.skew.Load())) }, !opts.DisableSameSite)
	b.jar.laxPlusPOST = opts.LaxPlusPOST
	rt := opts.Transport
	if rt == nil {
		b.ownTransport = NewTransport(opts.Resolve, opts.RootCAs)
		rt = b.ownTransport
	}
	b.client = &http.Client{
		Transport:     rt,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	return b
}

// CloseIdleConnections closes the idle connections of the browser's own
// transport. It does nothing to a Transport passed in Options.
func (b *Browser) CloseIdleConnections() {
	if b.ownTransport != nil {
		b.ownTransport.CloseIdleConnections()
	}
}

// Result is the outcome of a login.
type Result struct {
	// OK: the flow landed on SuccessPath with status 200 and header
	// X-Samlha-User equal to the user, within MaxHops.
	OK   bool
	User string
	// Cause, when not OK: the SP's named cause (header X-Samlha-Cause) on
	// the failing hop or, if that hop named none, the last one named on
	// the way; else one of the browser's own causes (Cause* constants,
	// CauseHTTP).
	Cause string
	// Err describes the failure when not OK; nil when OK.
	Err  error
	Hops []Hop
	// Duration is the wall time of the whole flow, think time included.
	Duration time.Duration
	// StartInstance is the X-Samlha-Instance of the first hop that named
	// one, ACSInstance that of the hop that posted the SAMLResponse, and
	// FinishInstance that of the last hop.
	StartInstance, ACSInstance, FinishInstance string
	// Final is the last page received (nil if no response came back); its
	// body helps explain a failure.
	Final *Page
}

// Hop is one HTTP request of a flow and what came back.
type Hop struct {
	Method string
	URL    string
	Status int // 0 if no response came back
	// Start is when the request was sent; Duration how long until its
	// body was read.
	Start    time.Time
	Duration time.Duration
	// Instance and Cause are the headers X-Samlha-Instance and
	// X-Samlha-Cause of the response.
	Instance, Cause string
	// ProxyTarget and ProxyDecision are X-Stickyproxy-Target and
	// X-Stickyproxy-Decision.
	ProxyTarget, ProxyDecision string
	// CookiesSent names the cookies sent (values are never recorded).
	CookiesSent []string
	// CrossSite: the browser judged the request cross-site, so SameSite
	// rules held some cookies back.
	CrossSite bool
	// Form is what the request submitted: FormLogin, FormSAMLRequest,
	// FormSAMLResponse, or "" for a typed navigation or a redirect.
	Form string
}

// Page is a response the browser landed on.
type Page struct {
	URL    *url.URL
	Status int
	Header http.Header
	Body   []byte // at most 4 MiB
	Hops   []Hop  // the requests that led here, redirects included
}

// PendingForm is an auto-submit form carrying a SAMLResponse, held back
// before it was posted to the ACS (see LoginUntilACS).
type PendingForm struct {
	Action string
	Fields url.Values
	From   string // URL of the page holding the form (the IdP's)
	User   string // the user who logged in at the IdP, expected at the end
}

// Login completes an SP-initiated login as a browser would: it navigates to
// startURL (a protected page of the SP, typically SuccessPath), follows
// redirects, submits auto-POST forms, fills the IdP's login form with user
// and password after ThinkTime, and stops at the success page or at the
// first failure. It never returns nil.
func (b *Browser) Login(ctx context.Context, startURL, user, password string) *Result {
	_, res := b.login(ctx, startURL, user, password, false)
	return res
}

// LoginUntilACS runs Login's flow but stops before posting the SAMLResponse
// form to the ACS, and returns that form. The form can then be posted with
// Submit, from this browser or another one (to transplant a response), or
// posted twice (to replay it). The Result holds the hops so far; when the
// flow ends before such a form (a failure, or an SP session that skipped
// the IdP), the form is nil and the error says why.
func (b *Browser) LoginUntilACS(ctx context.Context, startURL, user, password string) (*PendingForm, *Result, error) {
	pf, res := b.login(ctx, startURL, user, password, true)
	if pf != nil {
		return pf, res, nil
	}
	if res.Err != nil {
		return nil, res, res.Err
	}
	return nil, res, fmt.Errorf("login of %q ended at %s without a SAMLResponse form", user, res.lastURL())
}

// Submit posts f from this browser (with this browser's cookies, as a
// form on the page f.From), then continues the flow as Login does. The
// result is OK if it lands on SuccessPath as f.User.
func (b *Browser) Submit(ctx context.Context, f *PendingForm) *Result {
	start := time.Now()
	fl := &flow{b: b, res: &Result{User: f.User}, start: start}
	action, err := url.Parse(f.Action)
	if err != nil {
		return fl.fail(CauseUnexpectedPage, fmt.Errorf("form action %q: %w", f.Action, err))
	}
	from, err := url.Parse(f.From)
	if err != nil {
		return fl.fail(CauseUnexpectedPage, fmt.Errorf("form page %q: %w", f.From, err))
	}
	rq := navigation{method: http.MethodPost, u: action, body: f.Fields, initiator: from, form: formKind(f.Fields)}
	fl.run(ctx, rq, nil, false)
	return fl.res
}

// Get navigates to rawURL as if the user typed it, following redirects, and
// returns the page it lands on (an HTTP error status is a page, not an
// error; the error is for a request that got no response, or a chain longer
// than MaxHops).
func (b *Browser) Get(ctx context.Context, rawURL string) (*Page, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, err
	}
	fl := &flow{b: b, res: &Result{}, start: time.Now()}
	page, err := fl.navigate(ctx, navigation{method: http.MethodGet, u: u, userActivated: true})
	if page != nil {
		page.Hops = fl.res.Hops
	}
	return page, err
}

// Browse navigates to rawURL as Get does, and also submits the
// auto-submitting forms it lands on (SAML's HTTP-POST binding), as the
// pages' scripts would, until it reaches a page with neither a redirect nor
// such a form, or an error status. It is for flows other than login, such as
// single logout through the IdP.
func (b *Browser) Browse(ctx context.Context, rawURL string) (*Page, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, err
	}
	fl := &flow{b: b, res: &Result{}, start: time.Now()}
	return fl.browse(ctx, navigation{method: http.MethodGet, u: u, userActivated: true})
}

// SubmitForm submits the form on page whose action is the path action (as
// the user would by pressing its button), then goes on as Browse does. It
// fails if the page has no such form.
func (b *Browser) SubmitForm(ctx context.Context, page *Page, action string) (*Page, error) {
	f := findForm(parseForms(page.URL, page.Body), func(f *form) bool { return f.action != nil && f.action.Path == action })
	if f == nil {
		return nil, fmt.Errorf("%s has no form with action %s", page.URL, action)
	}
	fl := &flow{b: b, res: &Result{}, start: time.Now()}
	return fl.browse(ctx, navigation{method: f.method, u: f.action, body: f.fields, initiator: page.URL, userActivated: true})
}

// browse is Browse from the navigation rq.
func (fl *flow) browse(ctx context.Context, rq navigation) (*Page, error) {
	for {
		page, err := fl.navigate(ctx, rq)
		if page != nil {
			page.Hops = fl.res.Hops
		}
		if err != nil || page.Status >= 400 {
			return page, err
		}
		af := findForm(parseForms(page.URL, page.Body), func(f *form) bool { return f.autoSubmits })
		if af == nil {
			return page, nil
		}
		rq = navigation{method: af.method, u: af.action, body: af.fields, initiator: page.URL, form: formKind(af.fields)}
	}
}

// Cookies returns the cookies the browser would send to u on a same-site
// GET (SameSite does not hold any back), without their attributes other
// than Domain (empty for a host-only cookie), Path, Secure, HttpOnly,
// SameSite (an unset one reads as Lax) and Expires.
func (b *Browser) Cookies(u *url.URL) []*http.Cookie {
	stored := b.jar.cookiesFor(u, sendContext{method: http.MethodGet})
	out := make([]*http.Cookie, len(stored))
	for i, c := range stored {
		out[i] = c.httpCookie()
	}
	return out
}

// SetCookie stores c as if a response from u had set it, under the same
// rules (a Secure cookie from an http URL, SameSite=None without Secure, a
// Domain that u's host does not match: each is rejected with an error). A
// cookie with MaxAge < 0 or an Expires in the past deletes the stored one.
// It is meant for tests that tamper with cookies.
func (b *Browser) SetCookie(u *url.URL, c *http.Cookie) error {
	return b.jar.set(u, c)
}

// navigation is one top-level navigation request, before redirects.
type navigation struct {
	method        string
	u             *url.URL
	body          url.Values // POST form body
	initiator     *url.URL   // the page that submitted the form; nil when typed
	userActivated bool       // the user clicked or typed (Sec-Fetch-User)
	form          string     // Hop.Form
}

// flow is the state of one Login, Submit or Get.
type flow struct {
	b     *Browser
	res   *Result
	start time.Time
}

// errTooManyHops ends a flow that reached MaxHops.
var errTooManyHops = errors.New("too many hops")

// credentials fill the IdP's login form.
type credentials struct{ user, password string }

// run drives the flow from the navigation rq until success or failure.
// With creds it fills the IdP's login form once; without, a login form ends
// the flow. With stopAtACS it returns the SAMLResponse form instead of
// posting it.
func (fl *flow) run(ctx context.Context, rq navigation, creds *credentials, stopAtACS bool) *PendingForm {
	b := fl.b
	res := fl.res
	credentialsSent := false
	for {
		page, err := fl.navigate(ctx, rq)
		if err != nil {
			fl.failErr(ctx, err)
			return nil
		}
		res.Final = page
		if page.Status >= 400 {
			method := rq.method
			if n := len(res.Hops); n > 0 {
				method = res.Hops[n-1].Method // after redirects, the last request's
			}
			fl.fail(CauseHTTP(page.Status), fmt.Errorf("%s %s answered %d", method, page.URL, page.Status))
			return nil
		}
		atSuccess := page.Status == http.StatusOK && page.URL.Path == b.opts.SuccessPath
		if atSuccess {
			// A page at SuccessPath without a user is not a landing if it
			// has a form to go on with: crewjam serves its HTTP-POST
			// AuthnRequest form at the protected URL itself.
			switch got := page.Header.Get(HeaderUser); {
			case got == res.User:
				res.OK = true
				fl.finish()
				return nil
			case got != "":
				fl.fail(CauseWrongUser, fmt.Errorf("%s shows user %q (header %s), want %q", page.URL, got, HeaderUser, res.User))
				return nil
			}
		}
		forms := parseForms(page.URL, page.Body)
		if lf := findForm(forms, func(f *form) bool { return f.password }); lf != nil {
			if creds == nil {
				fl.fail(CauseIdPLoginFailed, fmt.Errorf("the IdP at %s asks for credentials, and this flow has none", page.URL))
				return nil
			}
			if credentialsSent {
				fl.fail(CauseIdPLoginFailed, fmt.Errorf("the IdP at %s asked for credentials again: login of %q failed", page.URL, creds.user))
				return nil
			}
			lf.fields.Set(loginField(lf, "user", "username"), creds.user)
			lf.fields.Set(loginField(lf, "password"), creds.password)
			if err := sleep(ctx, b.opts.ThinkTime); err != nil {
				fl.failErr(ctx, err)
				return nil
			}
			b.skew.Add(int64(b.opts.SimulatedThink))
			credentialsSent = true
			rq = navigation{method: lf.method, u: lf.action, body: lf.fields, initiator: page.URL, userActivated: true, form: FormLogin}
			continue
		}
		if af := findForm(forms, func(f *form) bool { return f.autoSubmits }); af != nil {
			kind := formKind(af.fields)
			if stopAtACS && kind == FormSAMLResponse {
				fl.finish()
				return &PendingForm{Action: af.action.String(), Fields: af.fields, From: page.URL.String(), User: res.User}
			}
			rq = navigation{method: af.method, u: af.action, body: af.fields, initiator: page.URL, form: kind}
			continue
		}
		if atSuccess {
			fl.fail(CauseWrongUser, fmt.Errorf("%s shows no user (no header %s), want %q", page.URL, HeaderUser, res.User))
			return nil
		}
		fl.fail(CauseUnexpectedPage, fmt.Errorf("%s (status %d) has no redirect and no form to submit", page.URL, page.Status))
		return nil
	}
}

func (b *Browser) login(ctx context.Context, startURL, user, password string, stopAtACS bool) (*PendingForm, *Result) {
	fl := &flow{b: b, res: &Result{User: user}, start: time.Now()}
	u, err := url.Parse(startURL)
	if err != nil {
		return nil, fl.fail(CauseUnexpectedPage, fmt.Errorf("start URL %q: %w", startURL, err))
	}
	pf := fl.run(ctx, navigation{method: http.MethodGet, u: u, userActivated: true}, &credentials{user: user, password: password}, stopAtACS)
	return pf, fl.res
}

// navigate sends rq and follows its redirects, recording every hop, and
// returns the page it lands on.
func (fl *flow) navigate(ctx context.Context, rq navigation) (*Page, error) {
	b := fl.b
	var chain []*url.URL // the URLs requested before this hop, in this navigation
	method, u, body, form := rq.method, rq.u, rq.body, rq.form
	for {
		if len(fl.res.Hops) >= b.opts.MaxHops {
			return nil, fmt.Errorf("%w: %d requests without reaching the end (next: %s %s)", errTooManyHops, len(fl.res.Hops), method, u)
		}
		crossSite := isCrossSite(rq.initiator, chain, u)
		req, cancel, err := b.newRequest(ctx, method, u, body)
		if err != nil {
			return nil, err
		}
		setNavigationHeaders(req.Header, rq, chain, u, method)
		cookies := b.jar.cookiesFor(u, sendContext{method: method, crossSite: crossSite})
		if len(cookies) > 0 {
			req.Header.Set("Cookie", cookieHeader(cookies))
		}
		hop := Hop{Method: method, URL: u.String(), CrossSite: crossSite, Form: form}
		for _, c := range cookies {
			hop.CookiesSent = append(hop.CookiesSent, c.name)
		}

		t0 := time.Now()
		hop.Start = t0
		resp, err := b.client.Do(req)
		var respBody []byte
		if err == nil {
			respBody, err = io.ReadAll(io.LimitReader(resp.Body, maxBody))
			_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxBody)) // let the connection be reused
			resp.Body.Close()
		}
		cancel()
		hop.Duration = time.Since(t0)
		if resp != nil {
			hop.Status = resp.StatusCode
			hop.Instance = resp.Header.Get(HeaderInstance)
			hop.Cause = resp.Header.Get(HeaderCause)
			hop.ProxyTarget = resp.Header.Get(HeaderProxyTarget)
			hop.ProxyDecision = resp.Header.Get(HeaderProxyDecision)
		}
		fl.res.Hops = append(fl.res.Hops, hop)
		if err != nil {
			return nil, fmt.Errorf("%s %s: %w", method, u.Redacted(), err)
		}
		b.jar.setFromHeader(u, resp.Header)

		next, nextMethod, ok := redirect(resp, u, method)
		if !ok {
			return &Page{URL: u, Status: resp.StatusCode, Header: resp.Header, Body: respBody}, nil
		}
		chain = append(chain, u)
		if nextMethod != method {
			body = nil
		}
		method, u, form = nextMethod, next, ""
	}
}

// newRequest builds a request bounded by RequestTimeout.
func (b *Browser) newRequest(ctx context.Context, method string, u *url.URL, form url.Values) (*http.Request, context.CancelFunc, error) {
	cancel := context.CancelFunc(func() {})
	if b.opts.RequestTimeout > 0 {
		ctx, cancel = context.WithTimeout(ctx, b.opts.RequestTimeout)
	}
	var body io.Reader
	if method == http.MethodPost {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), body)
	if err != nil {
		cancel()
		return nil, nil, err
	}
	req.Header.Set("User-Agent", b.opts.UserAgent)
	if method == http.MethodPost {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	return req, cancel, nil
}

// setNavigationHeaders sets the headers Chrome sends on a top-level
// navigation: Accept, Upgrade-Insecure-Requests, the Sec-Fetch-* metadata,
// Origin on a POST, and Referer under the default policy
// strict-origin-when-cross-origin.
func setNavigationHeaders(h http.Header, rq navigation, chain []*url.URL, target *url.URL, method string) {
	h.Set("Accept", "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8")
	h.Set("Accept-Language", "en-US,en;q=0.9")
	h.Set("Upgrade-Insecure-Requests", "1")
	h.Set("Sec-Fetch-Site", fetchSite(rq.initiator, chain, target))
	h.Set("Sec-Fetch-Mode", "navigate")
	h.Set("Sec-Fetch-Dest", "document")
	if rq.userActivated {
		h.Set("Sec-Fetch-User", "?1")
	}
	if method != http.MethodGet && method != http.MethodHead {
		h.Set("Origin", originHeader(rq.initiator, chain, target))
	}
	if ref := referrer(rq.initiator, target); ref != "" {
		h.Set("Referer", ref)
	}
}

// originHeader is the Origin of a non-GET navigation: the initiator's
// origin, or "null" when there is none or a redirect crossed origins
// ("redirect-tainted origin" in the Fetch spec).
func originHeader(initiator *url.URL, chain []*url.URL, target *url.URL) string {
	if initiator == nil {
		return "null"
	}
	own := origin(initiator)
	list := append(append([]*url.URL{}, chain...), target)
	for i := 1; i < len(list); i++ {
		last := origin(list[i-1])
		if origin(list[i]) != last && own != last {
			return "null"
		}
	}
	return own
}

// referrer is the Referer under strict-origin-when-cross-origin: the full
// URL (without fragment and credentials) to the same origin, the origin
// alone to another origin, nothing from https to http or when typed.
func referrer(initiator, target *url.URL) string {
	if initiator == nil {
		return ""
	}
	if isSecureScheme(initiator) && !isSecureScheme(target) {
		return ""
	}
	if origin(initiator) == origin(target) {
		r := *initiator
		r.User, r.Fragment, r.RawFragment = nil, "", ""
		return r.String()
	}
	return origin(initiator) + "/"
}

// redirect returns where resp redirects to and with which method, if it is
// a redirect with a usable Location: 301 and 302 turn a POST into a GET,
// 303 turns anything but HEAD into a GET, 307 and 308 keep the method and
// body.
func redirect(resp *http.Response, from *url.URL, method string) (*url.URL, string, bool) {
	switch resp.StatusCode {
	case http.StatusMovedPermanently, http.StatusFound, http.StatusSeeOther,
		http.StatusTemporaryRedirect, http.StatusPermanentRedirect:
	default:
		return nil, "", false
	}
	loc := resp.Header.Get("Location")
	if loc == "" {
		return nil, "", false
	}
	next, err := from.Parse(loc)
	if err != nil || (next.Scheme != "http" && next.Scheme != "https") {
		return nil, "", false
	}
	next.Fragment, next.RawFragment = "", ""
	switch resp.StatusCode {
	case http.StatusMovedPermanently, http.StatusFound:
		if method == http.MethodPost {
			method = http.MethodGet
		}
	case http.StatusSeeOther:
		if method != http.MethodHead {
			method = http.MethodGet
		}
	}
	return next, method, true
}

// fail ends the flow as failed with cause (unless a hop named one: the SP's
// cause wins) and err.
func (fl *flow) fail(cause string, err error) *Result {
	res := fl.res
	res.OK = false
	res.Cause = cause
	if n := len(res.Hops); n > 0 && res.Hops[n-1].Cause != "" {
		res.Cause = res.Hops[n-1].Cause
	} else {
		for i := n - 1; i >= 0; i-- {
			if res.Hops[i].Cause != "" {
				res.Cause = res.Hops[i].Cause
				break
			}
		}
	}
	if res.Cause != cause {
		err = fmt.Errorf("%s (SP cause %s): %w", cause, res.Cause, err)
	}
	res.Err = err
	fl.finish()
	return res
}

// failErr ends the flow on an error from navigate or the context.
func (fl *flow) failErr(ctx context.Context, err error) {
	var ne net.Error
	switch {
	case errors.Is(err, errTooManyHops):
		fl.fail(CauseTooManyHops, err)
	case errors.Is(err, context.Canceled) && ctx.Err() != nil:
		fl.fail(CauseCanceled, err)
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		fl.fail(CauseTimeout, err)
	default:
		fl.fail(CauseTransport, err)
	}
}

// finish fills the fields computed from the hops.
func (fl *flow) finish() {
	res := fl.res
	res.Duration = time.Since(fl.start)
	res.StartInstance, res.ACSInstance, res.FinishInstance = "", "", ""
	for _, h := range res.Hops {
		if res.StartInstance == "" {
			res.StartInstance = h.Instance
		}
		if h.Form == FormSAMLResponse {
			res.ACSInstance = h.Instance
		}
	}
	if n := len(res.Hops); n > 0 {
		res.FinishInstance = res.Hops[n-1].Instance
	}
}

func (r *Result) lastURL() string {
	if n := len(r.Hops); n > 0 {
		return r.Hops[n-1].URL
	}
	return "(no request)"
}

// findForm returns the first form for which match is true.
func findForm(forms []*form, match func(*form) bool) *form {
	for _, f := range forms {
		if f.action != nil && match(f) {
			return f
		}
	}
	return nil
}

// loginField returns the first of names the form has (the first name if it
// has none).
func loginField(f *form, names ...string) string {
	for _, n := range names {
		if f.has(n) {
			return n
		}
	}
	return names[0]
}

// formKind tells which SAML message, if any, fields carry.
func formKind(fields url.Values) string {
	switch {
	case fields.Has("SAMLResponse"):
		return FormSAMLResponse
	case fields.Has("SAMLRequest"):
		return FormSAMLRequest
	default:
		return ""
	}
}

// sleep waits d, or until ctx is done.
func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
