package stickyproxy

import (
	"bytes"
	"net/http"
	"strings"

	"golang.org/x/net/http/httpguts"

	"github.com/samlha/samlha/stickyproxy/httphead"
)

// The fast serve loop (serveloop.go) reads the common request head itself,
// in place in the connection's read buffer: a whole head received, the
// request line "METHOD /origin-form HTTP/1.1" with single spaces, every
// header line plain (CRLF endings, a token name right before its colon,
// no folding, no control bytes in values), exactly one valid Host, at most
// one Content-Length of digits, and none of what needs net/http's
// server: Transfer-Encoding, Expect, Upgrade, Trailer, Pragma (net/http
// adds a Cache-Control for it), CONNECT, PRI (HTTP/2's preface), a request
// target that is not a plain path (a '%' or "//" in the path, '#', control
// or non-ASCII bytes, an absolute URI, '*'). Any other head, malformed or
// merely unusual, is left in the buffer untouched and the connection is
// handed to net/http, which answers it (400, 431, 505...) or serves it as
// before. FuzzRequestHead checks that every head taken here is one
// http.ReadRequest (and net/http's server checks) reads the same way.

// maxReqFields bounds the header fields of a request head parsed in place;
// a head with more goes to net/http.
const maxReqFields = 100

// reqHead is a request head parsed in place. Its strings share one
// allocation, the head's text.
type reqHead struct {
	method, uri string
	path, query string
	forceQuery  bool // "?" with nothing after it
	host        string
	length      int64 // Content-Length; 0 when absent
	close       bool  // Connection: close
	fields      []httphead.Field
	spans       []httphead.Span // scratch
	conn        []string        // scratch: Connection values
}

// reqHeadState is what scanning the buffered bytes found.
type reqHeadState int

const (
	reqIncomplete reqHeadState = iota // no whole head yet and nothing wrong so far
	reqParsed                         // parsed; the head is n bytes
	reqRefused                        // not for the fast loop: net/http's
)

// parse reads the request head at the start of b (the bytes buffered so
// far).
func (rq *reqHead) parse(b []byte) (n int, st reqHeadState) {
	end := bytes.Index(b, httphead.CRLFCRLF)
	if end < 0 {
		// A line ending in a bare LF, or a CR not before an LF, will never
		// make a head of ours: hand it on now rather than wait for more.
		if bareLineBreak(b) {
			return 0, reqRefused
		}
		return 0, reqIncomplete
	}
	n = end + 4
	b = b[:n]
	i, ok := rq.requestLine(b)
	if !ok {
		return 0, reqRefused
	}
	spans := rq.spans[:0]
	hostAt, length := -1, int64(0)
	haveLength := false
	for p := i + 1; p < end+2; {
		sp, next, ok := httphead.NextLine(b, p)
		if !ok || len(spans) == maxReqFields {
			return 0, reqRefused
		}
		key, value := b[sp.K0:sp.K1], b[sp.V0:sp.V1]
		switch {
		case httphead.EqualFold(key, "Host"):
			if hostAt >= 0 || !httpguts.ValidHostHeader(string(value)) {
				return 0, reqRefused
			}
			hostAt = len(spans)
		case httphead.EqualFold(key, "Content-Length"):
			if haveLength {
				return 0, reqRefused
			}
			if length, ok = httphead.ContentLength(value); !ok {
				return 0, reqRefused
			}
			haveLength = true
		case httphead.EqualFold(key, "Transfer-Encoding"), httphead.EqualFold(key, "Expect"), httphead.EqualFold(key, "Upgrade"),
			httphead.EqualFold(key, "Trailer"), httphead.EqualFold(key, "Pragma"):
			return 0, reqRefused
		}
		spans = append(spans, sp)
		p = next
	}
	rq.spans = spans
	if hostAt < 0 {
		return 0, reqRefused
	}
	rq.fill(string(b), i, hostAt, length)
	return n, reqParsed
}

// bareLineBreak says whether b has an LF not after a CR, or a CR not
// before an LF (a CR at the very end may yet be followed by one).
func bareLineBreak(b []byte) bool {
	for i, c := range b {
		switch c {
		case '\n':
			if i == 0 || b[i-1] != '\r' {
				return true
			}
		case '\r':
			if i+1 < len(b) && b[i+1] != '\n' {
				return true
			}
		}
	}
	return false
}

// requestLine checks "METHOD /path?query HTTP/1.1\r\n" at the start of b
// and records its spans; i is the offset of its '\n'.
func (rq *reqHead) requestLine(b []byte) (i int, ok bool) {
	i = bytes.IndexByte(b, '\n')
	if i < 2 || b[i-1] != '\r' {
		return 0, false
	}
	line := b[:i-1]
	sp := bytes.IndexByte(line, ' ')
	if sp <= 0 {
		return 0, false
	}
	for _, c := range line[:sp] {
		if !httpguts.IsTokenRune(rune(c)) {
			return 0, false
		}
	}
	method := line[:sp]
	if string(method) == http.MethodConnect || string(method) == "PRI" {
		return 0, false
	}
	const proto = " HTTP/1.1"
	if len(line) < sp+1+len(proto) || string(line[len(line)-len(proto):]) != proto {
		return 0, false
	}
	uri := line[sp+1 : len(line)-len(proto)]
	return i, originForm(uri)
}

// originForm says whether uri is an origin-form request target that
// url.ParseRequestURI reads as its path and query unchanged, with no
// RawPath: the path's bytes are unreserved, "$&+,;=:@/" (not "//" first;
// url.URL escapes the other sub-delims); the query's may also be
// "!'()*%?".
func originForm(uri []byte) bool {
	if len(uri) == 0 || uri[0] != '/' || len(uri) > 1 && uri[1] == '/' {
		return false
	}
	inQuery := false
	for _, c := range uri {
		switch {
		case pathByte(c):
		case c == '?':
			inQuery = true
		case inQuery && strings.IndexByte("!'()*%", c) >= 0:
		default:
			return false
		}
	}
	return true
}

// pathByte: unreserved and "$&+,;=:@/".
func pathByte(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	switch c {
	case '-', '.', '_', '~', '$', '&', '+', ',', ';', '=', ':', '@', '/':
		return true
	}
	return false
}

// fill makes the head's strings, all sharing s (the head's text).
func (rq *reqHead) fill(s string, eol, hostAt int, length int64) {
	line := s[:eol-1]
	sp := 0
	for line[sp] != ' ' {
		sp++
	}
	rq.method = line[:sp]
	rq.uri = line[sp+1 : len(line)-len(" HTTP/1.1")]
	rq.path, rq.query, rq.forceQuery = rq.uri, "", false
	for i := 0; i < len(rq.uri); i++ {
		if rq.uri[i] == '?' {
			rq.path, rq.query = rq.uri[:i], rq.uri[i+1:]
			rq.forceQuery = rq.query == ""
			break
		}
	}
	rq.length = length
	rq.fields, rq.conn, rq.close = httphead.Fields(rq.fields[:0], rq.conn[:0], s, rq.spans)
	rq.host = rq.fields[hostAt].Value
}
