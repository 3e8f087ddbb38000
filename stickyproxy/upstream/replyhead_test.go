package upstream

import (
	"bufio"
	"bytes"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// replyHeads are seeds for FuzzReplyHead and cases for TestReplyHeadParse:
// want says whether the in-place parse takes the head (else
// http.ReadResponse does).
var replyHeads = []struct {
	head string
	want bool
}{
	{"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello", true},
	{"HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n", true},
	{"HTTP/1.1 302 Found\r\nLocation: /x\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\ncontent-length:  2 \r\n\r\nok", true},
	{"HTTP/1.1 500 Oops\r\nConnection: close, X-Hop\r\nX-Hop: 1\r\nContent-Length: 1\r\n\r\nx", true},
	{"HTTP/1.1 200 OK\r\nETag: \"x\"\r\nX-Obs: caf\xc3\xa9\r\nContent-Length: 0\r\n\r\n", true},
	{"HTTP/1.1 200 OK\r\nContent-Length: 0012\r\n\r\n", true},
	{"HTTP/1.1 200 OK\r\nX-Empty:\r\nContent-Length: 0\r\n\r\n", true},
	// Left to http.ReadResponse.
	{"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n", false},                       // head not whole
	{"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", false}, // chunked
	{"HTTP/1.1 200 OK\r\n\r\nclose-delimited", false},
	{"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n", false},
	{"HTTP/1.1 204 No Content\r\n\r\n", false},
	{"HTTP/1.1 304 Not Modified\r\nContent-Length: 3\r\n\r\n", false},
	{"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", false},
	{"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\n", false},
	{"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx", false},
	{"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nxy", false},
	{"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", false},
	{"HTTP/1.1 200 OK\r\nContent-Length: +1\r\n\r\nx", false},
	{"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n folded\r\n\r\nx", false},
	{"HTTP/1.1 200 OK\r\nX-A: 1\nContent-Length: 1\r\n\r\nx", false},
	{"HTTP/1.1 200 OK\r\nX A: 1\r\nContent-Length: 1\r\n\r\nx", false},
	{"HTTP/1.1 200 OK\r\nX-A: a\x01b\r\nContent-Length: 1\r\n\r\nx", false},
	{"HTTP/1.1 200 OK\r\nX-A : 1\r\nContent-Length: 1\r\n\r\nx", false},
	{"HTTP/1.1 200 OK\r\n: 1\r\nContent-Length: 1\r\n\r\nx", false},
	{"HTTP/1.1 200 OK\r\nPragma: no-cache\r\nContent-Length: 0\r\n\r\n", false},
	{"HTTP/1.1 200 OK\r\nTrailer: X\r\nContent-Length: 0\r\n\r\n", false},
	{"HTTP/1.1  200 OK\r\nContent-Length: 0\r\n\r\n", false},
	{"HTTP/1.1 2000 OK\r\nContent-Length: 0\r\n\r\n", false},
	{"HTTP/1.1 600 X\r\nContent-Length: 0\r\n\r\n", false},
	{"SSH-2.0-OpenSSH\r\n\r\n", false},
}

// FuzzReplyHead: whatever the bytes, a head the in-place parse takes is
// one http.ReadResponse reads alike: status, headers, length, close, and
// where the body starts.
func FuzzReplyHead(f *testing.F) {
	for _, c := range replyHeads {
		f.Add([]byte(c.head))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var rh replyHead
		n, ok := rh.parse(data)
		if !ok {
			return
		}
		resp, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(data)), httptestGET)
		if err != nil {
			t.Fatalf("parsed in place, refused by http.ReadResponse (%v): %q", err, data)
		}
		if resp.StatusCode != rh.status || resp.ContentLength != rh.length || resp.Close != rh.close {
			t.Fatalf("status %d, length %d, close %v; http.ReadResponse: %d, %d, %v: %q",
				rh.status, rh.length, rh.close, resp.StatusCode, resp.ContentLength, resp.Close, data)
		}
		h := http.Header{}
		for _, f := range rh.fields {
			h[f.Key] = append(h[f.Key], f.Value)
		}
		if rh.close {
			// http.ReadResponse drops a Connection header that says close
			// (and so forgets the other names it lists, which are then
			// forwarded); the in-place parse keeps it for the hop-by-hop
			// filter.
			delete(h, "Connection")
		}
		if diff := cmp.Diff(resp.Header, h); diff != "" {
			t.Fatalf("headers differ (-http.ReadResponse +in place): %q\n%s", data, diff)
		}
		if ct := resp.Header["Content-Type"]; len(ct) > 0 && ct[0] != rh.ctype || len(ct) == 0 && rh.ctype != "" {
			t.Fatalf("content type %q, want %q", rh.ctype, ct)
		}
		body, _ := io.ReadAll(resp.Body)
		rest := data[n:]
		if int64(len(rest)) > rh.length {
			rest = rest[:rh.length]
		}
		if !bytes.Equal(body, rest) {
			t.Fatalf("body %q, http.ReadResponse's %q: %q", rest, body, data)
		}
	})
}

var httptestGET, _ = http.NewRequest(http.MethodGet, "http://target/", nil)

func TestReplyHeadParse(t *testing.T) {
	for _, c := range replyHeads {
		var rh replyHead
		if _, ok := rh.parse([]byte(c.head)); ok != c.want {
			t.Errorf("parse(%q) = %v, want %v", c.head, ok, c.want)
		}
	}
	var rh replyHead
	head := "HTTP/1.1 302 Found\r\nLocation: /x\r\ncontent-type: text/html\r\nSet-Cookie: a=1\r\nConnection: close\r\nSet-Cookie: b=2\r\nContent-Length: 2\r\n\r\n"
	n, ok := rh.parse([]byte(head + "ok"))
	if !ok || n != len(head) || rh.status != 302 || rh.length != 2 || !rh.close || rh.ctype != "text/html" {
		t.Fatalf("parse = %d, %v, %+v", n, ok, rh)
	}
	var keys []string
	for _, f := range rh.fields {
		keys = append(keys, f.Key+"="+f.Value)
	}
	if got, want := strings.Join(keys, ";"), "Location=/x;Content-Type=text/html;Set-Cookie=a=1;Connection=close;Set-Cookie=b=2;Content-Length=2"; got != want {
		t.Errorf("fields %s, want %s", got, want)
	}
}
