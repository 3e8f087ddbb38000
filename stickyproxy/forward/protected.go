package forward

import (
	"errors"
	"fmt"
	"net/http"

	"golang.org/x/net/http/httpguts"
)

// Protected is a set of request header names that only the proxy may set
// (identity headers such as X-Samlha-User, X-Email, X-Groups): a client's
// copies are stripped before anything else reads the request.
//
// Names are compared normalised: case-insensitively, with '_' and '-' the
// same, because WSGI, CGI, Rack and PHP turn X-Groups, x-groups and
// X_Groups into one variable (HTTP_X_GROUPS), so a client's "X_Groups"
// would otherwise reach the application as the real header. A name matches
// an exact name, or starts with a prefix.
type Protected struct {
	names    []string // normalised
	prefixes []string // normalised
}

// NewProtected returns the set of the exact names and the prefixes
// ("X-Samlha-"). Each must be a valid header name (a prefix may end in
// '-'); an empty set is valid and matches nothing.
func NewProtected(names, prefixes []string) (*Protected, error) {
	p := &Protected{}
	var errs []error
	for _, n := range names {
		if !httpguts.ValidHeaderFieldName(n) {
			errs = append(errs, fmt.Errorf("%q is not a header name", n))
			continue
		}
		p.names = append(p.names, Normalize(n))
	}
	for _, n := range prefixes {
		if !httpguts.ValidHeaderFieldName(n) {
			errs = append(errs, fmt.Errorf("header prefix %q is not a header name", n))
			continue
		}
		p.prefixes = append(p.prefixes, Normalize(n))
	}
	return p, errors.Join(errs...)
}

// Normalize is the form names are compared in: lower case, '_' as '-'.
func Normalize(name string) string {
	b := []byte(name)
	for i, c := range b {
		b[i] = norm(c)
	}
	return string(b)
}

func norm(c byte) byte {
	if c == '_' {
		return '-'
	}
	return lower(c)
}

// hasNormPrefix reports whether name, normalised, starts with prefix
// (normalised already).
func hasNormPrefix(name, prefix string) bool {
	if len(name) < len(prefix) {
		return false
	}
	for i := 0; i < len(prefix); i++ {
		if norm(name[i]) != prefix[i] {
			return false
		}
	}
	return true
}

// Empty reports whether the set matches nothing.
func (p *Protected) Empty() bool { return p == nil || len(p.names)+len(p.prefixes) == 0 }

// Match reports whether name is protected. It does not allocate.
func (p *Protected) Match(name string) bool {
	if p == nil {
		return false
	}
	for _, n := range p.names {
		if len(n) == len(name) && hasNormPrefix(name, n) {
			return true
		}
	}
	for _, pre := range p.prefixes {
		if hasNormPrefix(name, pre) {
			return true
		}
	}
	return false
}

// Strip deletes every protected header from h and returns how many
// header names it deleted.
func (p *Protected) Strip(h http.Header) int {
	if p.Empty() {
		return 0
	}
	n := 0
	for k := range h {
		if p.Match(k) {
			delete(h, k)
			n++
		}
	}
	return n
}

// NamedInConnection returns the first protected name that h's Connection
// header names. Some proxies delete the headers a Connection header names
// after a gateway has set them, so a client's "Connection: X-Samlha-User"
// could remove the real identity header on the way: a gateway refuses
// such a request.
func (p *Protected) NamedInConnection(h http.Header) (string, bool) {
	if p.Empty() {
		return "", false
	}
	var found string
	for _, v := range h["Connection"] {
		eachToken(v, func(tok string) bool {
			if p.Match(tok) {
				found = tok
			}
			return found == ""
		})
		if found != "" {
			return found, true
		}
	}
	return "", false
}
