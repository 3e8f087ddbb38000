package upstream

import (
	"bytes"
	"net/http"

	"github.com/samlha/samlha/stickyproxy/httphead"
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
	fields []httphead.Field
	spans  []httphead.Span // scratch: byte offsets found by the first pass
}

// parse reads the head at the start of b (the bytes buffered so far). ok
// false means "not the common case": nothing is consumed and the head is
// left to http.ReadResponse. On success it returns the head's length in b.
func (rh *replyHead) parse(b []byte) (n int, ok bool) {
	end := bytes.Index(b, httphead.CRLFCRLF)
	if end < 0 {
		return 0, false
	}
	n = end + 4
	b = b[:n]
	status, i, ok := statusLine(b)
	if !ok {
		return 0, false
	}
	// Header lines, first pass: check every byte and find the framing.
	spans := rh.spans[:0]
	length := int64(-1)
	for p := i + 1; p < end+2; {
		sp, next, ok := httphead.NextLine(b, p)
		if !ok || len(spans) == maxFastFields {
			return 0, false
		}
		key, value := b[sp.K0:sp.K1], b[sp.V0:sp.V1]
		switch {
		case httphead.EqualFold(key, "Content-Length"):
			if length >= 0 {
				return 0, false
			}
			if length, ok = httphead.ContentLength(value); !ok {
				return 0, false
			}
		case httphead.EqualFold(key, "Transfer-Encoding"), httphead.EqualFold(key, "Trailer"), httphead.EqualFold(key, "Pragma"):
			return 0, false
		}
		spans = append(spans, sp)
		p = next
	}
	rh.spans = spans
	if length < 0 {
		return 0, false
	}
	rh.fill(string(b), status, length)
	return n, true
}

// statusLine reads "HTTP/1.1 200" then " reason" or nothing, at the start
// of the head b; i is the offset of its '\n'. ok is false for anything
// else, and for 1xx, 204 and 304.
func statusLine(b []byte) (status, i int, ok bool) {
	const proto = "HTTP/1.1 "
	if len(b) < len(proto)+5 || string(b[:len(proto)]) != proto {
		return 0, 0, false
	}
	d0, d1, d2 := b[9], b[10], b[11]
	if d0 < '2' || d0 > '5' || d1 < '0' || d1 > '9' || d2 < '0' || d2 > '9' {
		return 0, 0, false
	}
	status = int(d0-'0')*100 + int(d1-'0')*10 + int(d2-'0')
	if status == http.StatusNoContent || status == http.StatusNotModified {
		return 0, 0, false
	}
	i = bytes.IndexByte(b, '\n')
	if i < 13 || b[i-1] != '\r' || b[12] != ' ' && i != 13 || !httphead.PlainValue(b[12:i-1]) {
		return 0, 0, false
	}
	return status, i, true
}

// fill makes the head's strings, all sharing s (the head's text), from
// the spans the first pass found.
func (rh *replyHead) fill(s string, status int, length int64) {
	rh.status, rh.length, rh.close, rh.ctype = status, length, false, ""
	rh.fields, rh.conn, rh.close = httphead.Fields(rh.fields[:0], rh.conn[:0], s, rh.spans)
	for _, f := range rh.fields {
		if f.Key == "Content-Type" {
			rh.ctype = f.Value
			break
		}
	}
}
