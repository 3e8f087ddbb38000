package stickyproxy

import (
	"bytes"
	"errors"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strings"

	"github.com/samlha/samlha/sp/relaystate"
	"github.com/samlha/samlha/stickyproxy/affinity"
)

// route sets x.t and x.d for r.
func (p *Proxy) route(x *exchange, r *http.Request) {
	f := filter{now: x.start.UnixNano(), balancing: true}
	base, value, found := DecisionNew, "", false
	if p.codec == nil || p.unpinned.Load() {
		// Stickiness off (from the start, or turned off at run time):
		// nothing pins, but SAML-aware routing still applies below.
		base = DecisionBalanced
	} else {
		value, found = cookieValue(r.Header["Cookie"], p.cfg.CookieName)
		if !found && p.twinName != "" {
			value, found = cookieValue(r.Header["Cookie"], p.twinName)
		}
		if p.cfg.Stickiness == StickinessApp {
			_, x.hadApp = cookieValue(r.Header["Cookie"], p.cfg.AppCookie)
			// The proxy's cookie counts only alongside the application's.
			found = found && x.hadApp
		}
	}
	valid := false // an authentic, unexpired cookie naming a known target
	if found {
		var pinned *target
		buf := p.openBufs.Get().(*affinity.Buffer)
		o, err := p.codec.Open(buf, value, x.start.Unix())
		switch {
		case err == nil:
			if pinned = p.byName[string(o.ID)]; pinned == nil {
				base, x.cookieErr = DecisionInvalidCookie, "unknown-target"
			}
		case errors.Is(err, affinity.ErrExpired):
			base, x.cookieErr = DecisionExpired, "expired"
		case errors.Is(err, affinity.ErrForged):
			base, x.cookieErr = DecisionInvalidCookie, "forged"
		default:
			base, x.cookieErr = DecisionInvalidCookie, "malformed"
		}
		p.openBufs.Put(buf)
		if x.cookieErr != "" {
			p.m.invalidCookies.WithLabelValues(x.cookieErr).Inc()
		}
		if pinned != nil {
			valid = true
			f.sticky, f.balancing = true, false
			if p.ok(pinned, &f) {
				x.t, x.d = pinned, DecisionPinned
				return
			}
			f.sticky, f.balancing = false, true
			switch {
			case pinned.up(f.now): // so it is draining, ALB semantics
				base = DecisionRepinnedDraining
			case p.cfg.OnPinnedDown == PinnedDownStrict:
				x.t, x.d = pinned, DecisionStrictRefused
				return
			default:
				base = DecisionRepinnedUnhealthy
			}
		}
	}
	if r.Method == http.MethodPost {
		acs := r.URL.Path == p.cfg.ACSPath
		if !valid && crossSite(r) {
			p.crossSitePOST(r, acs, found)
			x.onlyIfAccepted = true
		}
		if acs && p.cfg.SAMLAware {
			if t := p.relayStateTarget(x, r, &f); t != nil {
				x.t, x.d, x.onlyIfAccepted = t, DecisionRelayState, true
				return
			}
		}
	}
	x.d = base
	p.pickNew(x, &f)
}

// pickNew balances: x.t is the chosen target, or nil with x.d
// target-busy (healthy targets exist, all at their in-flight limit) or
// no-target. Fail-open is for when no target is healthy: it never sends a
// request to a down target because the healthy ones are only busy.
func (p *Proxy) pickNew(x *exchange, f *filter) {
	if x.t = p.pick(f); x.t != nil {
		return
	}
	if g := *f; p.cfg.MaxInFlightPerTarget > 0 {
		g.balancing = false
		if p.anyUsable(&g) {
			x.d = DecisionTargetBusy
			return
		}
	}
	if p.cfg.AllDown == AllDownFailOpen {
		f.ignoreHealth = true
		if x.t = p.pick(f); x.t != nil {
			x.d = DecisionFailOpen
			return
		}
	}
	x.d = DecisionNoTarget
}

// anyUsable says whether some target passes f.
func (p *Proxy) anyUsable(f *filter) bool {
	for _, t := range p.targets {
		if p.ok(t, f) {
			return true
		}
	}
	return false
}

// crossSite says whether r came from another site, by Sec-Fetch-Site or,
// for browsers that do not send it, by Origin against Host.
func crossSite(r *http.Request) bool {
	if s := r.Header["Sec-Fetch-Site"]; len(s) > 0 {
		return s[0] == "cross-site"
	}
	o := r.Header["Origin"]
	if len(o) == 0 {
		return false
	}
	if o[0] == "null" {
		return true
	}
	u, err := url.Parse(o[0])
	return err != nil || !strings.EqualFold(u.Host, r.Host)
}

// crossSitePOST records the SameSite trap: a cross-site POST without a valid
// affinity cookie.
func (p *Proxy) crossSitePOST(r *http.Request, acs, hadCookie bool) {
	label := "false"
	if acs {
		label = "true"
	}
	p.m.crossSitePOST.WithLabelValues(label).Inc()
	p.log.Warn("cross-site POST without a valid affinity cookie: the browser withheld it (SameSite) or never had it; it will be balanced anew",
		"path", r.URL.Path, "acs", acs, "origin", r.Header.Get("Origin"),
		"sec_fetch_site", r.Header.Get("Sec-Fetch-Site"), "had_invalid_cookie", hadCookie,
		"cookie_samesite", sameSiteName(p.cfg.CookieSameSite), "twin_cookie", p.twinName != "",
		"client", r.RemoteAddr)
}

func sameSiteName(s http.SameSite) string {
	switch s {
	case http.SameSiteLaxMode:
		return "lax"
	case http.SameSiteStrictMode:
		return "strict"
	case http.SameSiteNoneMode:
		return "none"
	}
	return "default"
}

// cookieValue finds cookie name in Cookie header lines without allocating.
// It stays rather than http.ParseCookie, which runs on every request here:
// ParseCookie allocates every cookie of the header (BenchmarkRoute: from 0
// to several allocations per request) and fails the whole header on one
// malformed pair, so a stray third-party cookie would cost a client its
// affinity.
func cookieValue(lines []string, name string) (string, bool) {
	for _, line := range lines {
		for line != "" {
			var part string
			part, line, _ = strings.Cut(line, ";")
			part = strings.TrimLeft(part, " \t")
			if len(part) > len(name) && part[len(name)] == '=' && part[:len(name)] == name {
				v := strings.TrimRight(part[len(name)+1:], " \t")
				if len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' {
					v = v[1 : len(v)-1]
				}
				return v, true
			}
		}
	}
	return "", false
}

// formBody says whether r's body is application/x-www-form-urlencoded.
func formBody(r *http.Request) bool {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	return err == nil && mt == "application/x-www-form-urlencoded"
}

// peeks says whether routing will peek into r's body for a RelayState.
func (p *Proxy) peeks(r *http.Request) bool {
	return p.cfg.SAMLAware && r.Method == http.MethodPost && r.URL.Path == p.cfg.ACSPath && formBody(r)
}

// relayStateTarget reads at most RelayStatePeek bytes of a form-encoded
// body, finds RelayState, and returns the usable target named by its
// instance part (see the package doc for the format). The body is put back
// whole: the peeked prefix followed by the rest.
func (p *Proxy) relayStateTarget(x *exchange, r *http.Request, f *filter) *target {
	if r.Body == nil || r.Body == http.NoBody || !formBody(r) {
		return nil
	}
	var (
		prefix   []byte
		complete bool
	)
	if x.buffered != nil {
		prefix, complete = x.buffered.buf, true
	} else {
		var err error
		prefix, complete, err = peek(r.Body, p.cfg.RelayStatePeek, r.ContentLength)
		r.Body = &peekedBody{Reader: io.MultiReader(bytes.NewReader(prefix), r.Body), Closer: r.Body}
		if err != nil {
			return nil // the client's body failed; forwarding will say so
		}
	}
	instance, ok := RelayStateInstance(prefix, complete)
	if !ok {
		return nil
	}
	x.relayState = instance
	t := p.byName[instance]
	if t == nil {
		return nil
	}
	g := *f
	g.sticky, g.balancing = true, false // the login started there: like a pinned client
	if !p.ok(t, &g) {
		return nil
	}
	return t
}

// peekStart is the peek buffer's first size; it doubles as data arrives, up
// to the limit. A client's Content-Length never sizes it: a client that
// announces a large body and sends nothing costs peekStart bytes.
const peekStart = 2 << 10

// peek reads from body until limit bytes, the body's end or an error, into
// a buffer that grows with what arrived. complete says the prefix is the
// whole body (EOF, or the declared length reached); err is a read error
// other than the body's end.
func peek(body io.Reader, limit, contentLength int64) (prefix []byte, complete bool, err error) {
	if contentLength >= 0 && contentLength < limit {
		limit = contentLength
	}
	buf := make([]byte, 0, min(limit, peekStart))
	for int64(len(buf)) < limit {
		if len(buf) == cap(buf) {
			grown := make([]byte, len(buf), min(2*int64(cap(buf)), limit))
			copy(grown, buf)
			buf = grown
		}
		n, rerr := body.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if rerr == io.EOF {
			return buf, true, nil
		}
		if rerr != nil {
			return buf, false, rerr
		}
	}
	return buf, contentLength >= 0 && int64(len(buf)) >= contentLength, nil
}

type peekedBody struct {
	io.Reader
	io.Closer
}

// RelayStateInstance finds the RelayState field in a prefix of an
// application/x-www-form-urlencoded body and returns its instance part. Only
// a RelayState of exactly the form the SP issues (relaystate.Parse) counts. complete says whether the prefix is the whole
// body; if not, a field cut off at the end of the prefix is not trusted.
func RelayStateInstance(form []byte, complete bool) (string, bool) {
	for len(form) > 0 {
		var pair []byte
		i := bytes.IndexByte(form, '&')
		if i < 0 {
			if !complete {
				return "", false
			}
			pair, form = form, nil
		} else {
			pair, form = form[:i], form[i+1:]
		}
		k, v, ok := bytes.Cut(pair, []byte("="))
		if !ok || string(k) != "RelayState" {
			continue
		}
		val, err := url.QueryUnescape(string(v))
		if err != nil {
			return "", false
		}
		inst, _, err := relaystate.Parse(val)
		if err != nil {
			return "", false
		}
		return inst, true
	}
	return "", false
}
