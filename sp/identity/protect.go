package identity

import (
	"net/http"
	"strings"
)

// Protected is the set of header names only the SP may send: the identity
// headers, by prefix and by name. Names are compared normalised (ASCII
// case folded, '_' read as '-'), because CGI, WSGI, Rack and PHP read
// X_Groups, x-groups and X-Groups as one variable (HTTP_X_GROUPS): a client
// copy under any of those spellings would be the identity to such an app.
type Protected struct {
	prefixes []string        // normalised
	names    map[string]bool // normalised
}

// NewProtected protects every name with one of prefixes, and names.
func NewProtected(prefixes, names []string) Protected {
	p := Protected{names: map[string]bool{}}
	for _, pre := range prefixes {
		p.prefixes = append(p.prefixes, normalise(pre))
	}
	for _, n := range names {
		p.names[normalise(n)] = true
	}
	return p
}

// normalise is name in lower case with '_' as '-'.
func normalise(name string) string {
	return strings.ReplaceAll(strings.ToLower(name), "_", "-")
}

// Match reports whether name is protected under any spelling.
func (p Protected) Match(name string) bool {
	n := normalise(name)
	if p.names[n] {
		return true
	}
	for _, pre := range p.prefixes {
		if strings.HasPrefix(n, pre) {
			return true
		}
	}
	return false
}

// Strip deletes every protected header from h and returns their names.
func (p Protected) Strip(h http.Header) []string {
	var removed []string
	for k := range h {
		if p.Match(k) {
			removed = append(removed, k)
			delete(h, k)
		}
	}
	return removed
}

// Forged returns a header of h that a front proxy could be talked into
// passing to the application as an identity: a protected header under any
// spelling, or a Connection header naming one (a proxy drops the headers
// Connection names, which could drop the real one after it was set).
func (p Protected) Forged(h http.Header) (string, bool) {
	for k, vs := range h {
		if p.Match(k) {
			return k, true
		}
		if !strings.EqualFold(k, "Connection") {
			continue
		}
		for _, v := range vs {
			for _, tok := range strings.Split(v, ",") {
				if tok = strings.TrimSpace(tok); tok != "" && p.Match(tok) {
					return "Connection: " + tok, true
				}
			}
		}
	}
	return "", false
}
