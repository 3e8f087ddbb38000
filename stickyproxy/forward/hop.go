// Package forward holds the rules every samlha component that forwards an
// HTTP request follows: which headers are hop-by-hop, which peers are
// trusted and who the client is, what X-Forwarded-*, Forwarded and
// X-Real-IP say, and which client headers a gateway strips because only it
// may set them. stickyproxy's two engines and the SP's gateway use it, so
// the three read a request alike.
//
// It is a leaf: it imports the standard library and golang.org/x/net only.
// The functions on the request path of stickyproxy's fast engine
// (Forwardable, Policy.Append, Protected.Match) do not allocate.
package forward

import (
	"net/http"
	"net/textproto"

	"golang.org/x/net/http/httpguts"
)

// hopByHop are the hop-by-hop headers of RFC 9110 section 7.6.1, with the
// older Keep-Alive and Proxy-Connection, in canonical form. TE is listed
// as net/http canonicalises it ("Te").
var hopByHop = [...]string{
	"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate",
	"Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade",
}

// IsHopByHop reports whether name (any case) is a hop-by-hop header by
// definition. Headers named in a message's Connection header are hop-by-hop
// too; Forwardable checks both.
func IsHopByHop(name string) bool {
	for _, h := range hopByHop {
		if len(h) == len(name) && equalFold(h, name) {
			return true
		}
	}
	return false
}

// Forwardable reports whether the header name, a key of h, may be passed
// on to the next hop: it is not hop-by-hop and h's Connection header does
// not name it. It does not allocate.
func Forwardable(h http.Header, name string) bool {
	return ForwardableWith(h["Connection"], name)
}

// ForwardableWith is Forwardable for a message whose Connection header
// has the values connection, for a proxy that holds a message's headers
// other than in an http.Header. It does not allocate.
func ForwardableWith(connection []string, name string) bool {
	if IsHopByHop(name) {
		return false
	}
	return len(connection) == 0 || !httpguts.HeaderValuesContainsToken(connection, name)
}

// UpgradeType returns the protocol a request asks to switch to (the
// Upgrade header, when Connection names "upgrade"), or "".
func UpgradeType(h http.Header) string {
	if !httpguts.HeaderValuesContainsToken(h["Connection"], "Upgrade") {
		return ""
	}
	return h.Get("Upgrade")
}

// RemoveHopByHop deletes from h every hop-by-hop header and every header
// its Connection header names. A protocol upgrade (WebSocket) survives: if
// h asked for one, "Connection: Upgrade" and its Upgrade header are set
// again, as the next hop must see them. Calling it twice changes nothing
// more.
func RemoveHopByHop(h http.Header) {
	up := UpgradeType(h)
	for _, v := range h["Connection"] {
		eachToken(v, func(tok string) bool {
			delete(h, textproto.CanonicalMIMEHeaderKey(tok))
			return true
		})
	}
	for _, k := range hopByHop {
		delete(h, k)
	}
	if up != "" {
		h["Connection"] = []string{"Upgrade"}
		h["Upgrade"] = []string{up}
	}
}

// eachToken calls f with each trimmed, non-empty token of a
// comma-separated header value until f returns false.
func eachToken(v string, f func(tok string) bool) {
	for v != "" {
		i := 0
		for i < len(v) && v[i] != ',' {
			i++
		}
		if tok := trimOWS(v[:i]); tok != "" && !f(tok) {
			return
		}
		if i == len(v) {
			return
		}
		v = v[i+1:]
	}
}

func trimOWS(s string) string {
	for s != "" && (s[0] == ' ' || s[0] == '\t') {
		s = s[1:]
	}
	for s != "" && (s[len(s)-1] == ' ' || s[len(s)-1] == '\t') {
		s = s[:len(s)-1]
	}
	return s
}

// equalFold is ASCII case-insensitive equality (header names are ASCII).
func equalFold(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		if lower(a[i]) != lower(b[i]) {
			return false
		}
	}
	return true
}

func lower(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}
