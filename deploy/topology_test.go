package deploy

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/mccutchen/go-httpbin/v2/httpbin"

	"github.com/samlha/samlha/deploy/thirdparty"
	"github.com/samlha/samlha/sp/sptest"
	"github.com/samlha/samlha/store/localproc"
	"github.com/samlha/samlha/store/redis/redistest"
)

// A topology is one way to put samlsp in front of an application, with
// the reference config of its proxy (addresses moved, nothing else).
type topology struct {
	name string
	// kind is the proxy in front ("" for none: samlsp itself is the front).
	kind thirdparty.Kind
	// conf is the reference config the proxy runs.
	conf string
	// gateway: samlsp --upstream (else forward-auth: the proxy asks
	// /saml/auth and serves the app itself).
	gateway  bool
	replicas int
	// hostPinned: the front knows the public host (samlsp's --root-url,
	// Caddy's site address), so a client's Host cannot become the app's
	// X-Forwarded-Host. nginx serves any Host on its listener (its config
	// says how to pin it in production).
	hostPinned bool
	// earlyReplyResets: the front answers a request it refuses before
	// reading its body and then closes without draining it (HAProxy before
	// 3.0), so a client still sending a large body may see a reset instead
	// of the answer; the test's client then asks with Expect: 100-continue,
	// as curl does.
	earlyReplyResets bool
}

var topologies = []topology{
	{name: "gateway-direct", gateway: true, replicas: 1, hostPinned: true},
	{name: "gateway-haproxy", kind: thirdparty.HAProxy, conf: "haproxy-gateway.cfg", gateway: true, replicas: 3, hostPinned: true},
	{name: "forward-auth-nginx", kind: thirdparty.Nginx, conf: "nginx-forward-auth.conf", replicas: 3},
	{name: "forward-auth-caddy", kind: thirdparty.Caddy, conf: "Caddyfile.forward-auth", replicas: 3, hostPinned: true},
	{name: "forward-auth-haproxy", kind: thirdparty.HAProxy, conf: "haproxy-forward-auth.cfg", replicas: 3, hostPinned: true, earlyReplyResets: true},
}

// publicPrefix needs no session: samlsp --public-path in gateway mode, the
// /public/ block of the forward-auth configs.
const publicPrefix = "/public/"

// rig is one topology running in front of one application.
type rig struct {
	topo    topology
	rootURL string
	idpURL  string
	bin     *thirdparty.HTTPBin // with app "httpbin"
	echo    *thirdparty.EchoApp // with app "php"
	client  *http.Client        // follows no redirects
	session []*http.Cookie      // alice's, after login
	who     map[string]string   // with php: the identity the app saw for alice, HTTP_* variables
	seq     atomic.Int64
}

func (s *rig) marker(kind string) string {
	return fmt.Sprintf("%s-%d", kind, s.seq.Add(1))
}

// TestTopologies runs each topology with real parts: a private Redis, a
// devidp, samlsp replicas, the proxy on its reference config, and as the
// application go-httpbin (ordinary traffic: every method, a 10 MiB upload,
// streams, a WebSocket) and PHP's built-in server (which reads X_Groups
// and X-Groups as one variable: the spoof matrix).
func TestTopologies(t *testing.T) {
	if testing.Short() {
		t.Skip("starts Redis, devidp, samlsp replicas, proxies and applications (-short)")
	}
	for _, topo := range topologies {
		t.Run(topo.name, func(t *testing.T) {
			t.Run("httpbin", func(t *testing.T) {
				s := startStack(t, topo, "httpbin")
				t.Run("methods", s.testMethods)
				t.Run("upload", s.testUploads)
				t.Run("stream", s.testStreams)
				t.Run("websocket", s.testWebSocket)
			})
			t.Run("php", func(t *testing.T) {
				s := startStack(t, topo, "php")
				t.Run("stream-gated", s.testGatedStream)
				t.Run("spoof", s.testSpoofMatrix)
			})
		})
	}
}

// startStack starts topo in front of app ("httpbin" or "php") and logs
// alice in.
func startStack(t *testing.T, topo topology, app string) *rig {
	t.Helper()
	if topo.kind != "" {
		needTool(t, string(topo.kind))
	}
	if app == "php" {
		needTool(t, "php")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	d := loadDockerfile(t)
	spPkg, _ := d.pkgOf("samlsp")
	idpPkg, _ := d.pkgOf("devidp")
	samlsp := bins.path(t, "samlsp", spPkg)
	devidp := bins.path(t, "devidp", idpPkg)

	s := &rig{topo: topo, client: &http.Client{Timeout: time.Minute,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
	t.Cleanup(s.client.CloseIdleConnections)
	dir := t.TempDir()
	var appURL string
	switch app {
	case "httpbin":
		bin, err := thirdparty.StartHTTPBin()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { bin.Close() })
		s.bin, appURL = bin, bin.URL
	case "php":
		echo, err := thirdparty.StartPHPEcho(ctx, filepath.Join(dir, "php"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			echo.Stop()
			if t.Failed() {
				t.Logf("--- php log (tail) ---\n%s", echo.Proc.LogTail(3000))
			}
		})
		s.echo, appURL = echo, echo.URL
	}

	replicaPorts := make([]string, topo.replicas)
	for i := range replicaPorts {
		replicaPorts[i] = freePort(t)
	}
	frontPort := replicaPorts[0]
	if topo.kind != "" {
		frontPort = freePort(t)
	}
	idpPort := freePort(t)
	s.rootURL, s.idpURL = "http://127.0.0.1:"+frontPort, "http://127.0.0.1:"+idpPort
	keys, jwtKeys := filepath.Join(dir, "keys"), filepath.Join(dir, "jwt")
	if err := os.MkdirAll(jwtKeys, 0o700); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"keygen", "--dir", keys}, {"jwtkey", "--out", filepath.Join(jwtKeys, "k1.pem")}} {
		if out, err := exec.Command(samlsp, args...).CombinedOutput(); err != nil {
			t.Fatalf("samlsp %v: %v\n%s", args, err, out)
		}
	}
	redis := redistest.Start(t)
	startProc(t, dir, "devidp", nil, devidp, "--listen", "127.0.0.1:"+idpPort, "--public-url", s.idpURL,
		"--sp-metadata", s.rootURL+"/saml/metadata", "--register-timeout", "0", "--data-dir", filepath.Join(dir, "idp"))

	// The replicas load the IdP's metadata at start (and retry, backing
	// off, while it is not there).
	waitHTTP(t, s.idpURL+"/metadata", 30*time.Second)
	place := map[string]string{}
	for i, port := range replicaPorts {
		id := "sp-" + strconv.Itoa(i+1)
		args := []string{"--instance-id", id, "--listen", "127.0.0.1:" + port, "--root-url", s.rootURL,
			"--idp-metadata-url", s.idpURL + "/metadata", "--sp-key", filepath.Join(keys, "sp.key"),
			"--sp-cert", filepath.Join(keys, "sp.crt"), "--store", "redis", "--store-url", redis.URL(),
			"--pass-attribute", "mail=X-Email", "--pass-attribute", "eduPersonAffiliation=X-Groups",
			"--identity-jwt", "--identity-jwt-key", jwtKeys, "--login-rate-per-client", "0"}
		if topo.gateway {
			args = append(args, "--upstream", appURL, "--public-path", publicPrefix)
		} else {
			args = append(args, "--mode", "forward-auth")
		}
		if topo.kind != "" {
			args = append(args, "--trusted-proxies", "127.0.0.1")
			place[refReplicas[i]] = "127.0.0.1:" + port
		}
		startProc(t, dir, id, nil, samlsp, args...)
	}
	for _, port := range replicaPorts {
		waitHTTP(t, "http://127.0.0.1:"+port+"/readyz", 30*time.Second)
	}
	if topo.kind != "" {
		place[refListen] = "127.0.0.1:" + frontPort
		if !topo.gateway {
			place[refApp] = strings.TrimPrefix(appURL, "http://")
		}
		runReference(t, topo.kind, topo.conf, place, frontPort, s.rootURL+"/saml/metadata")
	}
	// The IdP is ready once it has the SP's metadata, fetched through the
	// front.
	waitHTTP(t, s.idpURL+"/readyz", time.Minute)
	s.login(t, "alice")
	return s
}

// login logs user in with the scripted browser and keeps the session's
// cookies. go-httpbin does not repeat X-Samlha-User in its answer (the
// browser's success check), so a landing on its page without it is a
// success too; the identity the app received is checked next.
func (s *rig) login(t *testing.T, user string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	landing := "/landing"
	if s.bin != nil {
		landing = "/anything/landing"
	}
	b := sptest.NewBrowser(sptest.Options{RequestTimeout: 20 * time.Second, SuccessPath: landing})
	defer b.CloseIdleConnections()
	res := b.Login(ctx, s.rootURL+landing, user, user+"-password")
	landed := res.Final != nil && res.Final.Status == http.StatusOK && res.Final.URL.Path == landing
	if !res.OK && !(s.bin != nil && landed && res.Cause == sptest.CauseWrongUser) {
		var hops []string
		for _, h := range res.Hops {
			hops = append(hops, fmt.Sprintf("%s %s -> %d %s %s", h.Method, h.URL, h.Status, h.Instance, h.Cause))
		}
		t.Fatalf("login of %s through %s failed: cause %s: %v\n%s", user, s.topo.name, res.Cause, res.Err, strings.Join(hops, "\n"))
	}
	u, _ := url.Parse(s.rootURL)
	s.session = b.Cookies(u)
	if len(s.session) == 0 {
		t.Fatal("the browser holds no cookie after the login")
	}
	if s.bin != nil {
		var rep struct {
			Headers map[string][]string `json:"headers"`
		}
		resp := s.do(t, s.request(t, http.MethodGet, "/anything/whoami", nil, true))
		if err := json.NewDecoder(resp.Body).Decode(&rep); err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("after the login, GET /anything/whoami: %d %v", resp.StatusCode, err)
		}
		resp.Body.Close()
		if got := rep.Headers["X-Samlha-User"]; len(got) != 1 || got[0] != user {
			t.Fatalf("after the login, go-httpbin saw X-Samlha-User %q, want %q", got, user)
		}
		return
	}
	ev, resp := s.echoRequest(t, s.request(t, http.MethodGet, "/whoami", nil, true))
	if ev == nil {
		t.Fatalf("after the login, GET /whoami: %d (the app did not answer)", resp.StatusCode)
	}
	s.who = map[string]string{}
	for _, h := range identityHeaders {
		s.who[cgiName(h)] = ev.Vars[cgiName(h)]
	}
	if s.who["HTTP_X_SAMLHA_USER"] != user || s.who["HTTP_X_EMAIL"] != user+"@example.com" || s.who["HTTP_X_GROUPS"] == "" ||
		s.who["HTTP_X_SAMLHA_NAME_ID"] == "" || s.who["HTTP_X_SAMLHA_JWT_ASSERTION"] == "" {
		t.Fatalf("after the login the app saw the identity %v, want user %s, mail %s@example.com, groups, NameID and JWT", s.who, user, user)
	}
}

// request builds a request to the front; withSession adds alice's cookies.
func (s *rig) request(t *testing.T, method, path string, body io.Reader, withSession bool) *http.Request {
	t.Helper()
	req, err := http.NewRequest(method, s.rootURL+path, body)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", "application/json")
	if withSession {
		for _, c := range s.session {
			req.AddCookie(c)
		}
	}
	return req
}

func (s *rig) do(t *testing.T, req *http.Request) *http.Response {
	t.Helper()
	resp, err := s.client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	return resp
}

// echoRequest sends req to the PHP app's stack and returns what the app
// saw, or nil (with the response, its body read) when something else
// answered.
func (s *rig) echoRequest(t *testing.T, req *http.Request) (*thirdparty.EchoVars, *http.Response) {
	t.Helper()
	resp := s.do(t, req)
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		t.Fatalf("%s %s: reading the answer: %v", req.Method, req.URL, err)
	}
	var ev thirdparty.EchoVars
	if resp.StatusCode != http.StatusOK || json.Unmarshal(body, &ev) != nil || ev.Method == "" {
		return nil, resp
	}
	return &ev, resp
}

var allMethods = []string{http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete, http.MethodOptions}

// testMethods: with a session, every method reaches the app; without one,
// a browser navigation (GET or HEAD asking for HTML) is sent to log in and
// anything else gets 401, from samlsp: never the proxy's 405.
func (s *rig) testMethods(t *testing.T) {
	for _, m := range allMethods {
		t.Run("session/"+m, func(t *testing.T) {
			mark := s.marker("method")
			var body io.Reader
			if m != http.MethodGet && m != http.MethodHead && m != http.MethodOptions {
				body = strings.NewReader("a body")
			}
			req := s.request(t, m, "/anything/"+mark, body, true)
			resp := s.do(t, req)
			var rep struct {
				Method string `json:"method"`
			}
			raw, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("%s with a session: %d %s, want 200 from the app", m, resp.StatusCode, truncateBody(raw))
			}
			if m != http.MethodHead && m != http.MethodOptions {
				if err := json.Unmarshal(raw, &rep); err != nil || rep.Method != m {
					t.Errorf("%s with a session: the app answered %s", m, truncateBody(raw))
				}
			}
			s.waitFinished(t, mark, m)
		})
		t.Run("no-session/api/"+m, func(t *testing.T) {
			mark := s.marker("method")
			var body io.Reader
			if m != http.MethodGet && m != http.MethodHead {
				body = strings.NewReader("a body")
			}
			resp := s.do(t, s.request(t, m, "/anything/"+mark, body, false))
			raw, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusUnauthorized || resp.Header.Get("X-Samlha-Instance") == "" {
				t.Errorf("%s without a session: %d (X-Samlha-Instance %q) %s, want samlsp's 401", m, resp.StatusCode,
					resp.Header.Get("X-Samlha-Instance"), truncateBody(raw))
			}
			if got := s.bin.Finished(mark); len(got) > 0 {
				t.Errorf("%s without a session reached the app: %+v", m, got)
			}
		})
		t.Run("no-session/navigation/"+m, func(t *testing.T) {
			mark := s.marker("method")
			var body io.Reader
			if m != http.MethodGet && m != http.MethodHead {
				body = strings.NewReader("field=value")
			}
			req := s.request(t, m, "/anything/"+mark, body, false)
			setNavigation(req)
			if body != nil {
				req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			}
			resp := s.do(t, req)
			raw, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if m == http.MethodGet || m == http.MethodHead {
				if !s.startsLogin(resp) {
					t.Errorf("a %s navigation without a session: %d Location %q %s, want a redirect that starts the login", m,
						resp.StatusCode, resp.Header.Get("Location"), truncateBody(raw))
				}
			} else if resp.StatusCode != http.StatusUnauthorized || resp.Header.Get("X-Samlha-Instance") == "" {
				t.Errorf("a %s form submission without a session: %d %s, want samlsp's 401 (only GET and HEAD navigations log in)",
					m, resp.StatusCode, truncateBody(raw))
			}
			if got := s.bin.Finished(mark); len(got) > 0 {
				t.Errorf("%s without a session reached the app: %+v", m, got)
			}
		})
	}
}

// setNavigation makes req look like a browser's top-level navigation.
func setNavigation(req *http.Request) {
	req.Header.Set("Accept", "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8")
	req.Header.Set("Sec-Fetch-Mode", "navigate")
	req.Header.Set("Sec-Fetch-Dest", "document")
	req.Header.Set("Sec-Fetch-Site", "none")
}

// startsLogin: a redirect to samlsp's /saml/login or to the IdP.
func (s *rig) startsLogin(resp *http.Response) bool {
	if resp.StatusCode != http.StatusFound && resp.StatusCode != http.StatusSeeOther {
		return false
	}
	loc := resp.Header.Get("Location")
	return strings.HasPrefix(loc, s.idpURL+"/") || strings.HasPrefix(loc, s.rootURL+"/saml/login") || strings.HasPrefix(loc, "/saml/login")
}

// waitFinished waits until go-httpbin has finished the request marked
// mark, with method m (the observer runs when the handler returns, which
// may be just after the client read the whole answer).
func (s *rig) waitFinished(t *testing.T, mark, m string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := localproc.Poll(ctx, func(context.Context) error {
		for _, r := range s.bin.Finished(mark) {
			if r.Method == m {
				return nil
			}
		}
		return fmt.Errorf("go-httpbin has not finished a %s %s", m, mark)
	})
	if err != nil {
		t.Error(err)
	}
}

func truncateBody(b []byte) string {
	if len(b) > 300 {
		return string(b[:300]) + "…"
	}
	return string(b)
}

// uploadSize is the upload every config must pass (nginx's default
// client_max_body_size is 1 MiB).
const uploadSize = 10 << 20

// testUploads: a 10 MiB body reaches the app intact, with a length and
// chunked; without a session, the same upload gets 401, not 413.
func (s *rig) testUploads(t *testing.T) {
	raw := make([]byte, uploadSize/2)
	if _, err := rand.Read(raw); err != nil {
		t.Fatal(err)
	}
	// Text, so go-httpbin's JSON echo ("data") is the body byte for byte.
	payload := []byte(hex.EncodeToString(raw))
	sum := sha256.Sum256(payload)
	for _, chunked := range []bool{false, true} {
		name := "content-length"
		if chunked {
			name = "chunked"
		}
		t.Run("session/"+name, func(t *testing.T) {
			var body io.Reader = strings.NewReader(string(payload))
			if chunked {
				body = io.MultiReader(body) // no length known: Go sends it chunked
			}
			req := s.request(t, http.MethodPost, "/anything/"+s.marker("upload"), body, true)
			req.Header.Set("Content-Type", "text/plain")
			resp := s.do(t, req)
			defer resp.Body.Close()
			var rep struct {
				Data string `json:"data"`
			}
			if resp.StatusCode != http.StatusOK {
				b, _ := io.ReadAll(io.LimitReader(resp.Body, 1000))
				t.Fatalf("a %d-byte upload (%s): %d %s, want 200 from the app", len(payload), name, resp.StatusCode, b)
			}
			if err := json.NewDecoder(resp.Body).Decode(&rep); err != nil {
				t.Fatalf("the app's answer: %v", err)
			}
			if got := sha256.Sum256([]byte(rep.Data)); got != sum {
				t.Errorf("the app received %d bytes with another SHA-256 (sent %d bytes)", len(rep.Data), len(payload))
			}
		})
	}
	t.Run("no-session", func(t *testing.T) {
		mark := s.marker("upload")
		req := s.request(t, http.MethodPost, "/anything/"+mark, strings.NewReader(string(payload)), false)
		req.Header.Set("Content-Type", "text/plain")
		if s.topo.earlyReplyResets {
			req.Header.Set("Expect", "100-continue")
		}
		resp := s.do(t, req)
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("a %d-byte upload without a session: %d, want 401 (not 413)", len(payload), resp.StatusCode)
		}
		if got := s.bin.Finished(mark); len(got) > 0 {
			t.Errorf("the upload without a session reached the app: %+v", got)
		}
	})
}

// streamParts is how many pieces /drip and /sse send, one a second.
const streamParts = 20

// testStreams: a streamed answer (go-httpbin's /drip with a length, /sse
// without) reaches the client as the app writes it. Asserted by order,
// not by time: the client reads the first piece and hangs up; the app
// must then stop early, having written only part of the answer. A front
// that holds the answer back shows the client its first byte only after
// the app has written all of it.
func (s *rig) testStreams(t *testing.T) {
	for _, path := range []string{"/drip?duration=20s&delay=0&numbytes=", "/sse?duration=20s&delay=0&count="} {
		name := strings.TrimPrefix(path[:strings.Index(path, "?")], "/")
		t.Run(name, func(t *testing.T) {
			mark := s.marker("stream")
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			req := s.request(t, http.MethodGet, path+strconv.Itoa(streamParts)+"&m="+mark, nil, true).WithContext(ctx)
			resp := s.do(t, req)
			if resp.StatusCode != http.StatusOK {
				resp.Body.Close()
				t.Fatalf("GET %s: %d", path, resp.StatusCode)
			}
			// The first piece: a byte of /drip, an event of /sse; the most
			// a whole answer can be (each piece at least as long as the
			// first).
			br := bufio.NewReader(resp.Body)
			var first string
			var err error
			if name == "drip" {
				var c byte
				c, err = br.ReadByte()
				first = string(c)
			} else {
				for line := ""; err == nil && line != "\n"; {
					line, err = br.ReadString('\n')
					first += line
				}
			}
			cancel()
			resp.Body.Close()
			if err != nil {
				t.Fatalf("reading the first piece of %s: %q %v", name, first, err)
			}
			whole := int64(streamParts * len(first))
			pctx, pcancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer pcancel()
			var done []httpbin.Result
			if err := localproc.Poll(pctx, func(context.Context) error {
				if done = s.bin.Finished(mark); len(done) == 0 {
					return errors.New("go-httpbin has not finished the stream after the client left")
				}
				return nil
			}); err != nil {
				t.Fatal(err)
			}
			if done[0].Size >= whole {
				t.Errorf("go-httpbin wrote the whole %s answer (%d bytes) before the client saw its first piece: the front held it back", name, done[0].Size)
			}
		})
	}
}

// testGatedStream: the PHP app writes one line and waits until the test
// has read it (the gate) before it writes the next: an answer held back
// until the end can never be read this way, whatever the timing.
func (s *rig) testGatedStream(t *testing.T) {
	gate := s.marker("gate")
	req := s.request(t, http.MethodGet, "/stream?gate="+gate, nil, true)
	resp := s.do(t, req)
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /stream: %d", resp.StatusCode)
	}
	r := bufio.NewReader(resp.Body)
	line, err := r.ReadString('\n')
	if err != nil || line != "first\n" {
		t.Fatalf("first line %q, %v", line, err)
	}
	if err := s.echo.OpenGate(gate); err != nil {
		t.Fatal(err)
	}
	rest, _ := io.ReadAll(r)
	if string(rest) != "opened\n" {
		t.Errorf("after the gate: %q, want \"opened\\n\" (\"gate-timeout\": the first line was held back until the app gave up)", rest)
	}
}

// testWebSocket: a round trip through go-httpbin's /websocket/echo with a
// session; without one, the upgrade gets 401.
func (s *rig) testWebSocket(t *testing.T) {
	wsURL := "ws" + strings.TrimPrefix(s.rootURL, "http") + "/websocket/echo"
	t.Run("session", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		h := http.Header{}
		for _, c := range s.session {
			h.Add("Cookie", c.String())
		}
		c, resp, err := websocket.Dial(ctx, wsURL, &websocket.DialOptions{HTTPHeader: h})
		if err != nil {
			status := 0
			if resp != nil {
				status = resp.StatusCode
			}
			t.Fatalf("WebSocket to %s with a session: %v (status %d)", wsURL, err, status)
		}
		defer c.CloseNow()
		for i := range 3 {
			msg := fmt.Sprintf("hello %d through %s", i, s.topo.name)
			if err := c.Write(ctx, websocket.MessageText, []byte(msg)); err != nil {
				t.Fatal(err)
			}
			typ, got, err := c.Read(ctx)
			if err != nil || typ != websocket.MessageText || string(got) != msg {
				t.Fatalf("echo %d: %v %q %v, want %q", i, typ, got, err, msg)
			}
		}
		c.Close(websocket.StatusNormalClosure, "")
	})
	t.Run("no-session", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		c, resp, err := websocket.Dial(ctx, wsURL, nil)
		if err == nil {
			c.CloseNow()
			t.Fatal("a WebSocket without a session was let through")
		}
		if resp == nil || resp.StatusCode != http.StatusUnauthorized {
			status := 0
			if resp != nil {
				status = resp.StatusCode
			}
			t.Errorf("a WebSocket without a session: %d (%v), want 401", status, err)
		}
	})
}

// forgedPrefix marks every value a test client forges: the app must never
// see one.
const forgedPrefix = "forged-"

// spoofContext is where a forged header is sent.
type spoofContext struct {
	name        string
	path        string // under the front
	withSession bool
	// appAllowed: the app may answer (protected with a session, public).
	appAllowed bool
	public     bool
}

var spoofContexts = []spoofContext{
	{name: "protected-with-session", path: "/spoof/", withSession: true, appAllowed: true},
	{name: "protected-without-session", path: "/spoof/"},
	// With the session cookie, which must not reach the app either.
	{name: "public", path: publicPrefix + "spoof/", withSession: true, appAllowed: true, public: true},
}

// testSpoofMatrix sends forged identity headers under every spelling, and
// Connection headers naming them, to every context; the PHP app (which
// reads X_Groups as X-Groups) must never see a value the IdP did not
// assert. Apart from those: samlsp's session cookie never reaches the app,
// nor does a forged X-Forwarded-Host, Host or X-Real-IP.
func (s *rig) testSpoofMatrix(t *testing.T) {
	for _, sc := range spoofContexts {
		t.Run(sc.name, func(t *testing.T) {
			for _, h := range identityHeaders {
				for _, sp := range spellings(h) {
					t.Run(h+"/"+sp, func(t *testing.T) {
						req := s.request(t, http.MethodGet, sc.path+s.marker("spoof"), nil, sc.withSession)
						req.Header[sp] = []string{forgedPrefix + sp}
						s.checkSpoof(t, sc, req, checkIdentity)
					})
				}
				// A proxy drops the headers Connection names: naming the
				// real one after it was set leaves an underscore copy.
				t.Run(h+"/connection", func(t *testing.T) {
					req := s.request(t, http.MethodGet, sc.path+s.marker("spoof"), nil, sc.withSession)
					under := strings.ReplaceAll(h, "-", "_")
					req.Header["Connection"] = []string{h}
					req.Header[under] = []string{forgedPrefix + under}
					s.checkSpoof(t, sc, req, checkIdentity)
				})
			}
			if !sc.appAllowed {
				return
			}
			t.Run("session-cookie", func(t *testing.T) {
				req := s.request(t, http.MethodGet, sc.path+s.marker("spoof"), nil, true)
				s.checkSpoof(t, sc, req, checkCookie)
			})
			t.Run("forwarded-headers", func(t *testing.T) {
				req := s.request(t, http.MethodGet, sc.path+s.marker("spoof"), nil, sc.withSession)
				for _, h := range []string{"X-Forwarded-Host", "X_Forwarded_Host", "x-forwarded-host", "X-Real-IP", "X_Real_IP", "x-real-ip"} {
					req.Header[h] = []string{forgedPrefix + strings.ToLower(h)}
				}
				s.checkSpoof(t, sc, req, checkForwarded)
			})
			t.Run("host", func(t *testing.T) {
				req := s.request(t, http.MethodGet, sc.path+s.marker("spoof"), nil, sc.withSession)
				req.Host = forgedPrefix + "host.example"
				if !s.topo.hostPinned {
					// nginx serves any Host; the app then sees it as its
					// Host and X-Forwarded-Host alike (the config says
					// how to pin the host in production).
					ev, _ := s.echoRequest(t, req)
					if ev != nil && ev.Vars["HTTP_X_FORWARDED_HOST"] != ev.Vars["HTTP_HOST"] {
						t.Errorf("X-Forwarded-Host %q is not the Host %q the app was reached with", ev.Vars["HTTP_X_FORWARDED_HOST"], ev.Vars["HTTP_HOST"])
					}
					return
				}
				s.checkSpoof(t, sc, req, checkForwarded)
			})
		})
	}
}

// What checkSpoof judges, beyond "nothing forged reached the app".
type spoofCheck int

const (
	checkIdentity  spoofCheck = iota // the identity headers are the IdP's (or absent on a public path)
	checkCookie                      // samlsp's session cookie is not in the app's Cookie header
	checkForwarded                   // X-Forwarded-Host is the public host, X-Real-IP the client's address
)

// checkSpoof sends req and judges what the app saw: never a value a
// client forged, and what check names.
func (s *rig) checkSpoof(t *testing.T, sc spoofContext, req *http.Request, check spoofCheck) {
	t.Helper()
	ev, resp := s.echoRequest(t, req)
	if ev == nil {
		switch {
		case resp.StatusCode == http.StatusForbidden && resp.Header.Get("X-Samlha-Cause") == "identity-header-forged":
			// samlsp refused the forged header: nothing reached the app.
		case !sc.appAllowed && resp.StatusCode == http.StatusUnauthorized:
		case req.Host != "" && (resp.StatusCode == http.StatusMisdirectedRequest ||
			s.topo.kind == thirdparty.Caddy && resp.StatusCode == http.StatusOK):
			// The front refused the host (HAProxy: 421; Caddy, which has
			// no site for it: an empty answer).
		default:
			t.Errorf("%s: %d (cause %q), want the app's answer%s", sc.name, resp.StatusCode, resp.Header.Get("X-Samlha-Cause"),
				map[bool]string{true: "", false: " or 401"}[sc.appAllowed])
		}
		return
	}
	if !sc.appAllowed {
		t.Fatalf("%s: the request reached the app (it saw %v)", sc.name, ev.Vars)
	}
	for k, v := range ev.Vars {
		if strings.Contains(v, forgedPrefix) {
			t.Errorf("the app saw %s = %q: a value the client forged", k, v)
		}
	}
	switch check {
	case checkIdentity:
		for _, h := range identityHeaders {
			k := cgiName(h)
			got, ok := ev.Vars[k]
			switch {
			case sc.public && ok && got != "":
				t.Errorf("on a public path the app saw %s = %q: no identity belongs there", k, got)
			case !sc.public && h != "X-Samlha-Jwt-Assertion" && got != s.who[k]:
				t.Errorf("the app saw %s = %q, want the IdP's %q", k, got, s.who[k])
			}
		}
	case checkCookie:
		if c := ev.Vars["HTTP_COOKIE"]; strings.Contains(c, "samlha_session=") {
			t.Errorf("samlsp's session cookie reached the app: HTTP_COOKIE = %q", c)
		}
	case checkForwarded:
		if xfh, ok := ev.Vars["HTTP_X_FORWARDED_HOST"]; ok {
			if pub := strings.TrimPrefix(s.rootURL, "http://"); xfh != pub {
				t.Errorf("the app saw X-Forwarded-Host %q, want the public host %q", xfh, pub)
			}
		}
		if ip, ok := ev.Vars["HTTP_X_REAL_IP"]; ok && ip != "127.0.0.1" {
			t.Errorf("the app saw X-Real-IP %q, want the client's address 127.0.0.1", ip)
		}
	}
}
