package identity

import (
	"net/http"

	"github.com/samlha/samlha/stickyproxy/forward"
)

// Protected is the set of header names only the SP may send: the identity
// headers, by prefix and by name. Names are compared normalised (ASCII case
// folded, '_' read as '-': forward.Protected), because CGI, WSGI, Rack and
// PHP read X_Groups, x-groups and X-Groups as one variable
// (HTTP_X_GROUPS): a client copy under any of those spellings would be the
// identity to such an app.
type Protected struct{ p *forward.Protected }

// NewProtected protects every name with one of prefixes, and names. The
// names must be header names (the SP's validator has checked them).
func NewProtected(prefixes, names []string) Protected {
	p, _ := forward.NewProtected(names, prefixes)
	return Protected{p}
}

// normalise is name in lower case with '_' as '-'.
func normalise(name string) string { return forward.Normalize(name) }

// Match reports whether name is protected under any spelling.
func (p Protected) Match(name string) bool { return p.p.Match(name) }

// Strip deletes every protected header from h and returns how many.
func (p Protected) Strip(h http.Header) int { return p.p.Strip(h) }

// Forged returns a header of h that a front proxy could be talked into
// passing to the application as an identity: a protected header under any
// spelling, or a Connection header naming one (a proxy drops the headers
// Connection names, which could drop the real one after it was set).
func (p Protected) Forged(h http.Header) (string, bool) {
	for k := range h {
		if p.p.Match(k) {
			return k, true
		}
	}
	if name, ok := p.p.NamedInConnection(h); ok {
		return "Connection: " + name, true
	}
	return "", false
}
