package stickyproxy

import (
	"bytes"
	"net/http"

	"golang.org/x/net/http/httpguts"
)

// The fast engine reads the common reply head itself, in place in the
// connection's read buffer: a whole head already received, HTTP/1.1, a
// final status other than 204 and 304, framed by one Content-Length, every
// line plain (CRLF endings, token names, no folding, no control bytes in
// values). That costs one string for the head and one slice for its values
// where http.ReadResponse builds a Response, a header map, a string per
// value and a body reader. Anything else (a head not yet whole in the
// buffer, 1xx, 101, 204, 304, a HEAD request, chunked or close-delimited
// bodies, Transfer-Encoding, Trailer, Pragma, several Content-Lengths,
// HTTP/1.0, any oddity of syntax) is left in the buffer untouched for
// http.ReadResponse, which either parses it or refuses it as before: the
// fast parse accepts only heads that http.ReadResponse reads the same way
// (FuzzReplyHead checks that).

// maxFastFields bounds the header fields of a head parsed in place; a
// head with more goes to http.ReadResponse.
const maxFastFields = 100

// replyHead is a reply head parsed in place. Its strings share one
// allocation, the head's text.
type replyHead struct {
	status int
	length int64 // Content-Length
	close  bool  // the target asked to close (Connection: close)
	ctype  string
	// conn holds the Connection header's values. Unlike http.ReadResponse,
	// which deletes a Connection header that says close, and with it the
	// other names it lists, it is kept: those names are hop-by-hop too.
	conn   []string
	fields []headField
	spans  []headSpan // scratch: byte offsets found by the first pass
}

type headField struct{ key, value string }

type headSpan struct{ k0, k1, v0, v1 int }

// parse reads the head at the start of b (the bytes buffered so far). ok
// false means "not the common case": nothing is consumed and the head is
// left to http.ReadResponse. On success it returns the head's length in b.
func (rh *replyHead) parse(b []byte) (n int, ok bool) {
	end := bytes.Index(b, crlfcrlf)
	if end < 0 {
		return 0, false
	}
	n = end + 4
	b = b[:n]
	// Status line: "HTTP/1.1 200" then " reason" or nothing.
	const proto = "HTTP/1.1 "
	if len(b) < len(proto)+5 || string(b[:len(proto)]) != proto {
		return 0, false
	}
	d0, d1, d2 := b[9], b[10], b[11]
	if d0 < '2' || d0 > '5' || d1 < '0' || d1 > '9' || d2 < '0' || d2 > '9' {
		return 0, false
	}
	status := int(d0-'0')*100 + int(d1-'0')*10 + int(d2-'0')
	if status == http.StatusNoContent || status == http.StatusNotModified {
		return 0, false
	}
	i := bytes.IndexByte(b, '\n')
	if i < 13 || b[i-1] != '\r' || b[12] != ' ' && i != 13 {
		return 0, false
	}
	for _, c := range b[12 : i-1] {
		if c < ' ' && c != '\t' || c == 0x7f {
			return 0, false
		}
	}
	// Header lines, first pass: check every byte and find the framing.
	spans := rh.spans[:0]
	length := int64(-1)
	for p := i + 1; p < end+2; {
		e := p + bytes.IndexByte(b[p:], '\n')
		if e < p+2 || b[e-1] != '\r' || len(spans) == maxFastFields {
			return 0, false
		}
		line := b[p : e-1]
		colon := bytes.IndexByte(line, ':')
		if colon <= 0 {
			return 0, false
		}
		for _, c := range line[:colon] {
			if !httpguts.IsTokenRune(rune(c)) {
				return 0, false
			}
		}
		v0, v1 := colon+1, len(line)
		for v0 < v1 && (line[v0] == ' ' || line[v0] == '\t') {
			v0++
		}
		for v1 > v0 && (line[v1-1] == ' ' || line[v1-1] == '\t') {
			v1--
		}
		for _, c := range line[v0:v1] {
			if c < ' ' && c != '\t' || c == 0x7f {
				return 0, false
			}
		}
		key := line[:colon]
		switch {
		case equalFoldBytes(key, "Content-Length"):
			if length >= 0 || v1-v0 == 0 || v1-v0 > 18 {
				return 0, false
			}
			length = 0
			for _, c := range line[v0:v1] {
				if c < '0' || c > '9' {
					return 0, false
				}
				length = length*10 + int64(c-'0')
			}
		case equalFoldBytes(key, "Transfer-Encoding"), equalFoldBytes(key, "Trailer"), equalFoldBytes(key, "Pragma"):
			return 0, false
		}
		spans = append(spans, headSpan{p, p + colon, p + v0, p + v1})
		p = e + 1
	}
	rh.spans = spans
	if length < 0 {
		return 0, false
	}
	// Second pass: the strings, all in one.
	s := string(b)
	rh.status, rh.length, rh.close, rh.ctype = status, length, false, ""
	rh.conn = rh.conn[:0]
	rh.fields = rh.fields[:0]
	for _, sp := range spans {
		key := s[sp.k0:sp.k1]
		if !canonicalKey(key) {
			key = http.CanonicalHeaderKey(key)
		}
		f := headField{key, s[sp.v0:sp.v1]}
		switch f.key {
		case "Connection":
			rh.conn = append(rh.conn, f.value)
		case "Content-Type":
			if rh.ctype == "" {
				rh.ctype = f.value
			}
		}
		rh.fields = append(rh.fields, f)
	}
	rh.close = len(rh.conn) > 0 && httpguts.HeaderValuesContainsToken(rh.conn, "close")
	return n, true
}

var crlfcrlf = []byte("\r\n\r\n")

// canonicalKey says whether a token is in net/http's canonical form
// ("Content-Type"): an upper-case letter first and after each '-', lower
// case elsewhere.
func canonicalKey(k string) bool {
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

// equalFoldBytes is ASCII case-insensitive equality of a header name.
func equalFoldBytes(b []byte, s string) bool {
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
