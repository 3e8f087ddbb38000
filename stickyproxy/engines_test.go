package stickyproxy_test

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/samlha/samlha/stickyproxy"
)

// outcome is what a client sees of one exchange through the proxy.
type outcome struct {
	Err      string // the request failed before a reply
	Status   int
	Body     string // or its sha256 when long
	BodyErr  bool   // the body was cut short
	Trailers string
	Header   string // the end-to-end headers a client would act on
}

func observe(client *http.Client, req *http.Request) outcome {
	resp, err := client.Do(req)
	if err != nil {
		return outcome{Err: "request failed"}
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	o := outcome{Status: resp.StatusCode, BodyErr: err != nil}
	if d := resp.Header.Get(stickyproxy.HeaderDecision); d == "upstream-error" {
		o.Body = "<the proxy's error text>" // names the engine's error and ports
	} else if len(body) > 200 {
		sum := sha256.Sum256(body)
		o.Body = fmt.Sprintf("%d bytes sha256 %s", len(body), hex.EncodeToString(sum[:8]))
	} else {
		o.Body = string(body)
	}
	var tr []string
	for k, v := range resp.Trailer {
		tr = append(tr, k+"="+strings.Join(v, ","))
	}
	slices.Sort(tr)
	o.Trailers = strings.Join(tr, ";")
	var hs []string
	for _, k := range []string{"Content-Type", "X-Custom", "Link", "Cache-Control", "X-Stickyproxy-Decision"} {
		if v := resp.Header.Values(k); len(v) > 0 {
			hs = append(hs, k+"="+strings.Join(v, ","))
		}
	}
	if resp.ContentLength >= 0 && !(o.Status >= 500 && o.Err == "") {
		hs = append(hs, fmt.Sprintf("length=%d", resp.ContentLength))
	}
	o.Header = strings.Join(hs, ";")
	return o
}

// misbehaving backends, each answering every request on a connection the
// same way; serve returns false to close the connection.
var misbehaving = []struct {
	name   string
	method string
	serve  func(c net.Conn, br *bufio.Reader, req *http.Request) bool
}{
	{"early close", "GET", func(c net.Conn, br *bufio.Reader, req *http.Request) bool { return false }},
	{"reset without reply", "GET", func(c net.Conn, br *bufio.Reader, req *http.Request) bool { reset(c); return false }},
	{"half response", "GET", func(c net.Conn, br *bufio.Reader, req *http.Request) bool {
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 100\r\n\r\nhalf")
		return false
	}},
	{"half head", "GET", func(c net.Conn, br *bufio.Reader, req *http.Request) bool {
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Ty")
		return false
	}},
	{"garbage", "GET", func(c net.Conn, br *bufio.Reader, req *http.Request) bool {
		io.WriteString(c, "SSH-2.0-OpenSSH\r\n\r\n")
		return false
	}},
	{"chunked with trailers", "GET", func(c net.Conn, br *bufio.Reader, req *http.Request) bool {
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\nTrailer: X-Sum\r\n\r\n"+
			"4\r\nbody\r\n6\r\n-more-\r\n0\r\nX-Sum: abc\r\n\r\n")
		return true
	}},
	{"chunked cut short", "GET", func(c net.Conn, br *bufio.Reader, req *http.Request) bool {
		io.WriteString(c, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nbody\r\n10\r\nabc")
		return false
	}},
	{"1xx before the reply", "GET", func(c net.Conn, br *bufio.Reader, req *http.Request) bool {
		io.WriteString(c, "HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n"+
			"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Custom: final\r\n\r\nok")
		return true
	}},
	{"HEAD with a length", "HEAD", func(c net.Conn, br *bufio.Reader, req *http.Request) bool {
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 1234\r\n\r\n")
		return true
	}},
	{"204 with a body", "GET", func(c net.Conn, br *bufio.Reader, req *http.Request) bool {
		io.WriteString(c, "HTTP/1.1 204 No Content\r\nX-Custom: none\r\n\r\nGARBAGE")
		return false
	}},
	{"304 with a body", "GET", func(c net.Conn, br *bufio.Reader, req *http.Request) bool {
		io.WriteString(c, "HTTP/1.1 304 Not Modified\r\nCache-Control: max-age=60\r\n\r\nGARBAGE")
		return false
	}},
	{"close-delimited body", "GET", func(c net.Conn, br *bufio.Reader, req *http.Request) bool {
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\nuntil the end")
		return false
	}},
	{"large headers (200 KB)", "GET", func(c net.Conn, br *bufio.Reader, req *http.Request) bool {
		io.WriteString(c, "HTTP/1.1 200 OK\r\nX-Custom: "+strings.Repeat("a", 200<<10)+"\r\nContent-Length: 2\r\n\r\nok")
		return true
	}},
	{"huge headers (2 MB)", "GET", func(c net.Conn, br *bufio.Reader, req *http.Request) bool {
		io.WriteString(c, "HTTP/1.1 200 OK\r\nX-Custom: "+strings.Repeat("a", 2<<20)+"\r\nContent-Length: 2\r\n\r\nok")
		return false
	}},
	{"slow body", "GET", func(c net.Conn, br *bufio.Reader, req *http.Request) bool {
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 20\r\n\r\n")
		for i := range 20 {
			fmt.Fprintf(c, "%d", i%10)
			time.Sleep(2 * time.Millisecond)
		}
		return true
	}},
	{"hop-by-hop headers", "GET", func(c net.Conn, br *bufio.Reader, req *http.Request) bool {
		io.WriteString(c, "HTTP/1.1 200 OK\r\nConnection: X-Custom\r\nX-Custom: hop\r\nKeep-Alive: timeout=5\r\nContent-Length: 2\r\n\r\nok")
		return true
	}},
}

// strayBytes are the misbehaving replies that leave bytes on the
// connection after their end. The fast engine never reuses such a
// connection; net/http's Transport (the reverseproxy engine) puts it back
// in its pool and drops it when its reader sees the bytes ("Unsolicited
// response received on idle HTTP channel"), but a request that takes it
// first reads them as its reply and is answered 502: a race in net/http
// (seen once in four -race runs), so on the requests after the first only
// the fast engine's outcome is fixed.
var strayBytes = map[string]bool{"204 with a body": true, "304 with a body": true}

// TestEnginesAgree runs the same requests through both engines against the
// same misbehaving backends and requires the same client-visible outcome:
// status, body (or its cut), trailers and end-to-end headers.
func TestEnginesAgree(t *testing.T) {
	t.Parallel()
	for _, mb := range misbehaving {
		t.Run(mb.name, func(t *testing.T) {
			t.Parallel()
			backend := rawServer(t, func(c net.Conn, br *bufio.Reader) {
				for {
					req, err := http.ReadRequest(br)
					if err != nil {
						return
					}
					io.Copy(io.Discard, req.Body)
					if !mb.serve(c, br, req) {
						return
					}
				}
			})
			var got [2][]outcome
			for i, engine := range engines {
				h := newHostile(t, engine, map[string]string{"sp-1": backend}, func(c *stickyproxy.Config) {
					c.Stickiness = stickyproxy.StickinessOff
				})
				client := &http.Client{Timeout: 30 * time.Second}
				for range 3 { // the second and third reuse what the first left in the pool
					req, _ := http.NewRequest(mb.method, h.url+"/x", nil)
					got[i] = append(got[i], observe(client, req))
				}
				client.CloseIdleConnections()
			}
			if strayBytes[mb.name] {
				// See strayBytes: the first requests must agree; after
				// it the fast engine answers as it did the first time,
				// and net/http either does too or loses the race.
				for i := 1; i < len(got[1]); i++ {
					if got[0][i] != got[0][0] {
						t.Errorf("fast engine, request %d: %+v, want what the first got: %+v", i+1, got[0][i], got[0][0])
					}
					if got[1][i] != got[0][i] && got[1][i].Status == http.StatusBadGateway &&
						strings.HasSuffix(got[1][i].Header, "X-Stickyproxy-Decision=upstream-error") && got[1][i].Err == "" && !got[1][i].BodyErr {
						got[1][i] = got[0][i] // net/http took the connection before its reader saw the stray bytes: the proxy's own 502, nothing else
					}
				}
			}
			if diff := cmp.Diff(got[0], got[1]); diff != "" {
				t.Errorf("fast and reverseproxy differ (-fast +reverseproxy):\n%s", diff)
			}
		})
	}
}

// TestEnginesAgreeOnStaleKeepAlive: a backend whose keep-alive timeout is
// shorter than the pool's; every request succeeds with both engines.
func TestEnginesAgreeOnStaleKeepAlive(t *testing.T) {
	t.Parallel()
	backend := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "ok")
	}))
	backend.Config.IdleTimeout = 20 * time.Millisecond
	backend.Start()
	t.Cleanup(backend.Close)
	for _, engine := range engines {
		h := newHostile(t, engine, map[string]string{"sp-1": backend.URL}, func(c *stickyproxy.Config) { c.PassiveFall = 0 })
		for i := range 10 {
			if o := observe(http.DefaultClient, mustReq(http.MethodGet, h.url+"/")); o.Status != 200 || o.Body != "ok" {
				t.Errorf("%s, request %d: %+v", engine, i, o)
			}
			time.Sleep(time.Duration(i%3) * 15 * time.Millisecond) // vary idle time around the backend's timeout; not a synchronisation
		}
	}
}

func mustReq(method, u string) *http.Request {
	r, err := http.NewRequest(method, u, nil)
	if err != nil {
		panic(err)
	}
	return r
}

// echoBackend answers with what it received, for the fuzz target.
func echoBackend(t testing.TB) string {
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		var hs []string
		for k, v := range r.Header {
			if strings.HasPrefix(k, "X-Fuzz") {
				hs = append(hs, k+"="+strings.Join(v, ","))
			}
		}
		slices.Sort(hs)
		w.Header().Set("Content-Type", "text/plain")
		fmt.Fprintf(w, "%s %s\n%s\n%d %x", r.Method, r.URL.RequestURI(), strings.Join(hs, ";"), len(body), sha256.Sum256(body))
	}))
	t.Cleanup(s.Close)
	return s.URL
}

// FuzzEnginesAgree sends requests of fuzzed shape (method, path and query,
// a header, a body, a declared length) through both engines to the same
// echo backend and requires the same outcome. `go test` runs the seeds;
// `go test -fuzz FuzzEnginesAgree ./stickyproxy/` explores.
func FuzzEnginesAgree(f *testing.F) {
	f.Add("GET", "/", "X-Fuzz-A", "1", []byte(nil), false)
	f.Add("POST", "/saml/acs?x=1", "X-Fuzz-B", "v", []byte("SAMLResponse=a&RelayState=sp-1~AAAABBBBCCCCDDDDEEEEFFFFGGGGHHHH"), false)
	f.Add("PUT", "/a%20b", "X-Fuzz-C", "", []byte("chunked body"), true)
	f.Add("DELETE", "/x/../y", "Connection", "X-Fuzz-D", []byte("z"), false)
	f.Add("OPTIONS", "/*", "Te", "trailers", []byte(nil), false)
	f.Add("PATCH", "/", "Expect", "100-continue", []byte(strings.Repeat("p", 5000)), false)
	backend := echoBackend(f)
	var hs [2]*hostile
	for i, engine := range engines {
		hs[i] = newHostile(f, engine, map[string]string{"sp-1": backend}, func(c *stickyproxy.Config) {
			c.Stickiness, c.SAMLAware = stickyproxy.StickinessOff, true
		})
	}
	f.Fuzz(func(t *testing.T, method, path, hk, hv string, body []byte, chunked bool) {
		var got [2]outcome
		for i, h := range hs {
			var rd io.Reader
			if body != nil {
				rd = strings.NewReader(string(body))
			}
			req, err := http.NewRequest(method, h.url+path, rd)
			if err != nil || !strings.HasPrefix(req.URL.String(), h.url) {
				t.Skip("not a request")
			}
			if hk != "" {
				req.Header.Set(hk, hv)
			}
			if chunked && body != nil {
				req.ContentLength = -1
			}
			got[i] = observe(http.DefaultClient, req)
		}
		if diff := cmp.Diff(got[0], got[1]); diff != "" {
			t.Errorf("%s %q %s: %q: fast and reverseproxy differ (-fast +reverseproxy):\n%s", method, path, hk, hv, diff)
		}
	})
}

// TestNoContentTypeSniffed: a reply without a Content-Type reaches the
// client without one, from both engines; net/http would otherwise sniff
// one from the body (here text/html, from a target that never said so).
func TestNoContentTypeSniffed(t *testing.T) {
	t.Parallel()
	backend := rawServer(t, func(c net.Conn, br *bufio.Reader) {
		if _, err := http.ReadRequest(br); err != nil {
			return
		}
		const body = "<html><script>x()</script></html>"
		fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s", len(body), body)
	})
	for _, engine := range engines {
		h := newHostile(t, engine, map[string]string{"sp-1": backend}, nil)
		resp, err := http.Get(h.url + "/")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if ct, ok := resp.Header["Content-Type"]; ok {
			t.Errorf("%s: Content-Type %q added to a reply that had none", engine, ct)
		}
	}
}
