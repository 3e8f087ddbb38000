// Package httphead scans HTTP/1.1 head lines in place, for the fast paths
// that read the common request and reply heads without net/http
// (stickyproxy's serve loop, the upstream hop's reply head). Its checks are
// strict: a line it refuses is left to net/http, which reads it or answers
// it properly; the fuzz targets of its users (FuzzRequestHead,
// FuzzReplyHead) hold what it accepts to what net/http reads.
package httphead

import (
	"bytes"
	"net/http"

	"golang.org/x/net/http/httpguts"
)

// Field is a header field of a head parsed in place.
type Field struct{ Key, Value string }

// Span is where a header line's name (K0:K1) and trimmed value (V0:V1) are
// in the head's bytes.
type Span struct{ K0, K1, V0, V1 int }

// NextLine checks the header line at b[p:] (up to its CRLF, which
// must be there) as checkLine does; next is the offset of the line after.
func NextLine(b []byte, p int) (sp Span, next int, ok bool) {
	e := p + bytes.IndexByte(b[p:], '\n')
	if e < p+2 || b[e-1] != '\r' {
		return Span{}, 0, false
	}
	sp, ok = checkLine(b, p, e-1)
	return sp, e + 1, ok
}

// checkLine checks the header line b[p:e] (without its CRLF): a token name,
// a colon, a value of plain bytes; the span has the name and the value
// with its surrounding blanks trimmed.
func checkLine(b []byte, p, e int) (Span, bool) {
	line := b[p:e]
	colon := bytes.IndexByte(line, ':')
	if colon <= 0 {
		return Span{}, false
	}
	for _, c := range line[:colon] {
		if !httpguts.IsTokenRune(rune(c)) {
			return Span{}, false
		}
	}
	v0, v1 := colon+1, len(line)
	for v0 < v1 && (line[v0] == ' ' || line[v0] == '\t') {
		v0++
	}
	for v1 > v0 && (line[v1-1] == ' ' || line[v1-1] == '\t') {
		v1--
	}
	if !PlainValue(line[v0:v1]) {
		return Span{}, false
	}
	return Span{K0: p, K1: p + colon, V0: p + v0, V1: p + v1}, true
}

// PlainValue says whether v has no control bytes but tabs.
func PlainValue(v []byte) bool {
	for _, c := range v {
		if c < ' ' && c != '\t' || c == 0x7f {
			return false
		}
	}
	return true
}

// ContentLength reads a Content-Length value: 1 to 18 digits.
func ContentLength(v []byte) (int64, bool) {
	if len(v) == 0 || len(v) > 18 {
		return 0, false
	}
	var n int64
	for _, c := range v {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}

// CRLFCRLF ends a head.
var CRLFCRLF = []byte("\r\n\r\n")

// CanonicalKey says whether a token is in net/http's canonical form
// ("Content-Type"): an upper-case letter first and after each '-', lower
// case elsewhere.
func CanonicalKey(k string) bool {
	upper := true
	for i := 0; i < len(k); i++ {
		c := k[i]
		if upper && 'a' <= c && c <= 'z' || !upper && 'A' <= c && c <= 'Z' {
			return false
		}
		upper = c == '-'
	}
	return true
}

// EqualFold is ASCII case-insensitive equality of a header name.
func EqualFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := range b {
		c, d := b[i], s[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if 'A' <= d && d <= 'Z' {
			d += 'a' - 'A'
		}
		if c != d {
			return false
		}
	}
	return true
}

// Fields appends to dst the header fields at spans in s (the head's text,
// whose memory they share), names in net/http's canonical form, and to
// conn the Connection header's values; closing says whether those ask
// for the connection to close.
func Fields(dst []Field, conn []string, s string, spans []Span) (fields []Field, connVals []string, closing bool) {
	for _, sp := range spans {
		key := s[sp.K0:sp.K1]
		if !CanonicalKey(key) {
			key = http.CanonicalHeaderKey(key)
		}
		f := Field{Key: key, Value: s[sp.V0:sp.V1]}
		if f.Key == "Connection" {
			conn = append(conn, f.Value)
		}
		dst = append(dst, f)
	}
	return dst, conn, len(conn) > 0 && httpguts.HeaderValuesContainsToken(conn, "close")
}
