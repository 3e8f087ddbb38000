package stickyproxy

import (
	"bufio"
	"bytes"
	"io"
	"net/http"
	"net/textproto"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/net/http/httpguts"

	"github.com/samlha/samlha/stickyproxy/httphead"
)

// requestHeads are seeds for FuzzRequestHead and cases for
// TestRequestHeadParse: want is what the in-place parse makes of them
// (refused: the connection goes to net/http).
var requestHeads = []struct {
	head string
	want reqHeadState
}{
	{"GET / HTTP/1.1\r\nHost: a\r\n\r\n", reqParsed},
	{"GET /path?q=1&r=%20x HTTP/1.1\r\nHost: example.com:8080\r\nUser-Agent: x\r\nCookie: AWSALB=abc\r\n\r\n", reqParsed},
	{"POST /saml/acs HTTP/1.1\r\nhost: a\r\ncontent-type: application/x-www-form-urlencoded\r\nContent-Length: 5\r\n\r\nhello", reqParsed},
	{"GET /a? HTTP/1.1\r\nHost: a\r\nX-Empty:\r\nX-Tab:\tv\t\r\nConnection: keep-alive, close\r\n\r\n", reqParsed},
	{"DELETE /x/../y;p=1 HTTP/1.1\r\nHost: [::1]:80\r\nX-Obs: caf\xc3\xa9\r\nContent-Length: 000\r\n\r\n", reqParsed},
	{"GET / HTTP/1.1\r\nHost: a\r\n", reqIncomplete},
	{"GET / HTTP/1.1\r\nHost: a\r", reqIncomplete},
	// Left to net/http.
	{"GET / HTTP/1.1\nHost: a\n\n", reqRefused},
	{"GET / HTTP/1.1\r\nHost: a\nX: 1\r\n\r\n", reqRefused},
	{"GET / HTTP/1.1\r\nHost: a\rX: 1\r\n\r\n", reqRefused},
	{"GET / HTTP/1.0\r\nHost: a\r\n\r\n", reqRefused},
	{"GET / HTTP/2.0\r\nHost: a\r\n\r\n", reqRefused},
	{"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", reqRefused},
	{"CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n", reqRefused},
	{"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n", reqRefused},
	{"GET http://a/ HTTP/1.1\r\nHost: a\r\n\r\n", reqRefused},
	{"GET //a/b HTTP/1.1\r\nHost: a\r\n\r\n", reqRefused},
	{"GET /a%20b HTTP/1.1\r\nHost: a\r\n\r\n", reqRefused},
	{"GET /a#f HTTP/1.1\r\nHost: a\r\n\r\n", reqRefused},
	{"GET /caf\xc3\xa9 HTTP/1.1\r\nHost: a\r\n\r\n", reqRefused},
	{"GET  / HTTP/1.1\r\nHost: a\r\n\r\n", reqRefused},
	{"GET / HTTP/1.1 \r\nHost: a\r\n\r\n", reqRefused},
	{"G(T / HTTP/1.1\r\nHost: a\r\n\r\n", reqRefused},
	{"GET / HTTP/1.1\r\n\r\n", reqRefused},                       // no Host
	{"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", reqRefused}, // two
	{"GET / HTTP/1.1\r\nHost: a b\r\n\r\n", reqRefused},          // invalid
	{"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx", reqRefused},
	{"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1, 1\r\n\r\nx", reqRefused},
	{"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n", reqRefused},
	{"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: +1\r\n\r\nx", reqRefused},
	{"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", reqRefused},
	{"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", reqRefused},
	{"POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n", reqRefused},
	{"GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n", reqRefused},
	{"GET / HTTP/1.1\r\nHost: a\r\nTrailer: X\r\n\r\n", reqRefused},
	{"GET / HTTP/1.1\r\nHost: a\r\nPragma: no-cache\r\n\r\n", reqRefused},
	{"GET / HTTP/1.1\r\nHost: a\r\nX-A: 1\r\n folded\r\n\r\n", reqRefused},
	{"GET / HTTP/1.1\r\nHost: a\r\nX-A : 1\r\n\r\n", reqRefused},
	{"GET / HTTP/1.1\r\nHost: a\r\nX A: 1\r\n\r\n", reqRefused},
	{"GET / HTTP/1.1\r\nHost: a\r\n: 1\r\n\r\n", reqRefused},
	{"GET / HTTP/1.1\r\nHost: a\r\nX-A: a\x00b\r\n\r\n", reqRefused},
	{"GET / HTTP/1.1\r\n Host: a\r\n\r\n", reqRefused},
}

func TestRequestHeadParse(t *testing.T) {
	for _, c := range requestHeads {
		var rq reqHead
		if _, st := rq.parse([]byte(c.head)); st != c.want {
			t.Errorf("parse(%q) = %v, want %v", c.head, st, c.want)
		}
	}
	var rq reqHead
	head := "POST /saml/acs?a=1 HTTP/1.1\r\nhost: idp.example\r\ncookie: a=1\r\nCookie: b=2\r\nContent-Length: 2\r\nConnection: close\r\n\r\n"
	n, st := rq.parse([]byte(head + "ok"))
	if st != reqParsed || n != len(head) || rq.method != "POST" || rq.uri != "/saml/acs?a=1" || rq.path != "/saml/acs" ||
		rq.query != "a=1" || rq.host != "idp.example" || rq.length != 2 || !rq.close {
		t.Fatalf("parse = %d, %v, %+v", n, st, rq)
	}
	var keys []string
	for _, f := range rq.fields {
		keys = append(keys, f.Key+"="+f.Value)
	}
	if got, want := strings.Join(keys, ";"), "Host=idp.example;Cookie=a=1;Cookie=b=2;Content-Length=2;Connection=close"; got != want {
		t.Errorf("fields %s, want %s", got, want)
	}
}

// FuzzRequestHead: whatever the bytes, a head the in-place parse takes is
// one http.ReadRequest reads alike and net/http's server would serve
// (one valid Host, valid names and values): method, target, path and
// query, Host, headers, length, close, and where the body starts. A head
// it says is incomplete has no end yet. `go test` runs the seeds;
// `go test -run '^$' -fuzz FuzzRequestHead ./stickyproxy/` explores.
func FuzzRequestHead(f *testing.F) {
	for _, c := range requestHeads {
		f.Add([]byte(c.head))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var rq reqHead
		n, st := rq.parse(data)
		switch st {
		case reqIncomplete:
			if bytes.Contains(data, httphead.CRLFCRLF) {
				t.Fatalf("incomplete, but the head has its end: %q", data)
			}
			return
		case reqRefused:
			return
		}
		req, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(data)))
		if err != nil {
			t.Fatalf("parsed in place, refused by http.ReadRequest (%v): %q", err, data)
		}
		// What net/http's server checks beyond http.ReadRequest (which
		// keeps Host only in req.Host): one valid Host.
		tp := textproto.NewReader(bufio.NewReader(bytes.NewReader(data)))
		_, _ = tp.ReadLine()
		mh, err := tp.ReadMIMEHeader()
		if hosts := mh["Host"]; err != nil || len(hosts) != 1 || !httpguts.ValidHostHeader(hosts[0]) {
			t.Fatalf("parsed in place, Host %q (%v) refused by net/http's server: %q", hosts, err, data)
		}
		for k, vv := range req.Header {
			if !httpguts.ValidHeaderFieldName(k) {
				t.Fatalf("parsed in place, header name %q refused by net/http's server: %q", k, data)
			}
			for _, v := range vv {
				if !httpguts.ValidHeaderFieldValue(v) {
					t.Fatalf("parsed in place, header value %q refused by net/http's server: %q", v, data)
				}
			}
		}
		type parsed struct {
			Method, RequestURI, Path, RawPath, RawQuery, Host, Proto string
			ForceQuery, Close                                        bool
			ContentLength                                            int64
			TransferEncoding                                         []string
			Header                                                   http.Header
		}
		got := parsed{Method: rq.method, RequestURI: rq.uri, Path: rq.path, RawQuery: rq.query, Host: rq.host, Proto: "HTTP/1.1",
			ForceQuery: rq.forceQuery, Close: rq.close, ContentLength: rq.length, Header: http.Header{}}
		for _, f := range rq.fields {
			if f.Key != "Host" { // as net/http: only in Host (fillRequest)
				got.Header[f.Key] = append(got.Header[f.Key], f.Value)
			}
		}
		want := parsed{Method: req.Method, RequestURI: req.RequestURI, Path: req.URL.Path, RawPath: req.URL.RawPath,
			RawQuery: req.URL.RawQuery, Host: req.Host, Proto: req.Proto, ForceQuery: req.URL.ForceQuery, Close: req.Close,
			ContentLength: req.ContentLength, TransferEncoding: req.TransferEncoding, Header: req.Header}
		if req.URL.Scheme != "" || req.URL.Host != "" || req.URL.Opaque != "" || req.URL.Fragment != "" || req.URL.User != nil {
			t.Fatalf("parsed in place as a path, http.ReadRequest's URL %#v: %q", req.URL, data)
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Fatalf("differs from http.ReadRequest (-http.ReadRequest +in place): %q\n%s", data, diff)
		}
		if rest := data[n:]; int64(len(rest)) >= rq.length {
			body, err := io.ReadAll(req.Body)
			if err != nil || !bytes.Equal(body, rest[:rq.length]) {
				t.Fatalf("body %q, http.ReadRequest's %q (%v): %q", rest[:rq.length], body, err, data)
			}
		}
	})
}
