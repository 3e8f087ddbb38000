package deploy

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/samlha/samlha/deploy/thirdparty"
	"github.com/samlha/samlha/sp/sptest"
	"github.com/samlha/samlha/store/redis/redistest"
)

// refApp is the application's address in the forward-auth reference
// configs.
const refApp = "127.0.0.1:3000"

// TestForwardAuthConfigsLogIn runs the nginx, Caddy and HAProxy forward-auth
// reference configs in front of demoapp (no SAML code, --require-jwt), with
// three samlsp replicas on a private Redis balanced round robin, and a real
// devidp: every login succeeds on the first try (the app answers with the
// user only when the identity JWT verifies against /saml/jwks.json), client
// copies of the identity headers never reach the app, and API calls without
// a session get 401 without reaching it. The configs' addresses are
// rewritten to free ports; nothing else is changed.
func TestForwardAuthConfigsLogIn(t *testing.T) {
	if testing.Short() {
		t.Skip("starts Redis, devidp, three samlsp replicas, demoapp and each proxy (-short)")
	}
	d := loadDockerfile(t)
	spPkg, _ := d.pkgOf("samlsp")
	idpPkg, _ := d.pkgOf("devidp")
	samlsp := bins.path(t, "samlsp", spPkg)
	devidp := bins.path(t, "devidp", idpPkg)
	demoapp := bins.path(t, "demoapp", "./cmd/demoapp")

	for _, px := range []struct {
		kind thirdparty.Kind
		conf string
	}{
		{thirdparty.Nginx, "nginx-forward-auth.conf"},
		{thirdparty.Caddy, "Caddyfile.forward-auth"},
		{thirdparty.HAProxy, "haproxy-forward-auth.cfg"},
	} {
		t.Run(string(px.kind), func(t *testing.T) {
			needTool(t, string(px.kind))
			dir := t.TempDir()
			proxyPort, idpPort, appPort := freePort(t), freePort(t), freePort(t)
			rootURL := "http://127.0.0.1:" + proxyPort
			idpURL := "http://127.0.0.1:" + idpPort
			keys, jwtKeys := filepath.Join(dir, "keys"), filepath.Join(dir, "jwt")
			os.MkdirAll(jwtKeys, 0o700)
			for _, args := range [][]string{{"keygen", "--dir", keys}, {"jwtkey", "--out", filepath.Join(jwtKeys, "2026-11-30.pem")}} {
				if out, err := exec.Command(samlsp, args...).CombinedOutput(); err != nil {
					t.Fatalf("samlsp %v: %v\n%s", args, err, out)
				}
			}
			redis := redistest.Start(t)
			startProc(t, dir, "devidp", nil, devidp, "--listen", "127.0.0.1:"+idpPort, "--public-url", idpURL,
				"--sp-metadata", rootURL+"/saml/metadata", "--register-timeout", "0", "--data-dir", filepath.Join(dir, "idp"))
			startProc(t, dir, "demoapp", nil, demoapp, "--listen", "127.0.0.1:"+appPort, "--require-jwt",
				"--jwks-url", rootURL+"/saml/jwks.json", "--issuer", rootURL, "--audience", rootURL, "--show-header", "X-Email")
			place := map[string]string{refListen: "127.0.0.1:" + proxyPort, refApp: "127.0.0.1:" + appPort}
			waitHTTP(t, idpURL+"/metadata", 30*time.Second)
			for i, addr := range refReplicas {
				port := freePort(t)
				place[addr] = "127.0.0.1:" + port
				id := "sp-" + strconv.Itoa(i+1)
				startProc(t, dir, id, nil, samlsp, "--instance-id", id, "--listen", "127.0.0.1:"+port, "--root-url", rootURL,
					"--idp-metadata-url", idpURL+"/metadata", "--sp-key", filepath.Join(keys, "sp.key"),
					"--sp-cert", filepath.Join(keys, "sp.crt"), "--store", "redis", "--store-url", redis.URL(),
					"--mode", "forward-auth", "--trusted-proxies", "127.0.0.1", "--pass-attribute", "mail=X-Email",
					"--identity-jwt", "--identity-jwt-key", jwtKeys)
				waitHTTP(t, "http://127.0.0.1:"+port+"/readyz", 30*time.Second)
			}
			runReference(t, px.kind, px.conf, place, proxyPort, rootURL+"/saml/metadata")
			waitHTTP(t, idpURL+"/readyz", 60*time.Second)
			waitHTTP(t, "http://127.0.0.1:"+appPort+"/healthz", 30*time.Second)
			driveForwardAuth(t, rootURL)
		})
	}
}

func driveForwardAuth(t *testing.T, rootURL string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	client := &http.Client{Timeout: 10 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

	// An API call without a session: 401, and the app is not reached (it
	// would answer 200 JSON). With forged identity headers: 403
	// (identity-header-forged), the app not reached either.
	for _, forged := range []bool{false, true} {
		req, _ := http.NewRequest(http.MethodGet, rootURL+"/api/items", nil)
		req.Header.Set("Accept", "application/json")
		want := http.StatusUnauthorized
		if forged {
			req.Header.Set("X-Samlha-User", "mallory")
			req.Header.Set("X-Samlha-Jwt-Assertion", "forged")
			want = http.StatusForbidden
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		// Caddy and HAProxy delete the forged headers before they ask
		// samlsp (then it is 401); nginx cannot, and samlsp refuses them.
		if (resp.StatusCode != want && (!forged || resp.StatusCode != http.StatusUnauthorized)) || resp.Header.Get("X-Demoapp-Jwt") != "" {
			t.Fatalf("API call without a session (forged identity %v): %d (app answered: %q), want %d from samlsp", forged, resp.StatusCode, resp.Header.Get("X-Demoapp-Jwt"), want)
		}
	}

	acs := map[string]int{}
	crossed := 0 // logins that finished on a replica other than the one that began them
	for i := range 6 {
		user := []string{"alice", "bob"}[i%2]
		b := sptest.NewBrowser(sptest.Options{RequestTimeout: 10 * time.Second, SuccessPath: "/app"})
		res := b.Login(ctx, rootURL+"/app?n="+strconv.Itoa(i), user, user+"-password")
		if !res.OK {
			var hops []string
			for _, h := range res.Hops {
				hops = append(hops, h.Method+" "+h.URL+" -> "+strconv.Itoa(h.Status)+" "+h.Instance+" "+h.Cause)
			}
			t.Fatalf("login %d (%s) through the proxy failed: cause %s: %v\n%s", i, user, res.Cause, res.Err, strings.Join(hops, "\n"))
		}
		acs[res.ACSInstance]++
		if res.StartInstance != "" && res.ACSInstance != "" && res.StartInstance != res.ACSInstance {
			crossed++
		}
		// With the session, a forged identity header never reaches the
		// app: samlsp refuses it (403), or the proxy drops it first (nginx
		// drops every header with an underscore) and the app gets
		// samlsp's identity.
		forged, _ := http.NewRequest(http.MethodGet, rootURL+"/api/items", nil)
		forged.Header.Set("Accept", "application/json")
		forged.Header.Set("X_Email", "mallory@evil.test")
		for _, c := range b.Cookies(forged.URL) {
			forged.AddCookie(c)
		}
		fresp, err := client.Do(forged)
		if err != nil {
			t.Fatal(err)
		}
		fbody, _ := io.ReadAll(fresp.Body)
		fresp.Body.Close()
		if fresp.StatusCode != http.StatusForbidden && (fresp.StatusCode != http.StatusOK || strings.Contains(string(fbody), "mallory")) {
			t.Fatalf("login %d: a forged X_Email with a session: %d %s; want 403, or the app without the forgery", i, fresp.StatusCode, fbody)
		}
		req, _ := http.NewRequest(http.MethodGet, rootURL+"/api/items", nil)
		req.Header.Set("Accept", "application/json")
		u := req.URL
		for _, c := range b.Cookies(u) {
			req.AddCookie(c)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var rep struct {
			User    string            `json:"user"`
			JWT     string            `json:"jwt"`
			Headers map[string]string `json:"headers"`
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		_ = json.Unmarshal(body, &rep)
		if resp.StatusCode != 200 || rep.User != user || rep.JWT != "verified" || rep.Headers["X-Email"] != user+"@example.com" {
			t.Fatalf("login %d: the app got %d %s", i, resp.StatusCode, body)
		}
		if i == 0 {
			pageOfRefusal(t, client, b, rootURL)
		}
		b.CloseIdleConnections()
	}
	t.Logf("ACS per replica: %v; %d of 6 logins finished on another replica than the one that began them", acs, crossed)
	// Round robin over shared state: a login can finish on a replica other
	// than the one that began it. (How the ACS POSTs spread is the
	// proxy's business, and with several workers not a fixed rotation.)
	if crossed == 0 {
		t.Errorf("no login finished on another replica than the one that began it (ACS per replica %v): the proxy did not balance, or the test cannot tell", acs)
	}
}

// pageOfRefusal checks that samlsp's refusal of a browser's request
// reaches the browser as samlsp's own page, with its status and cause, and
// not as a proxy's fixed answer (nginx's auth_request drops the
// subrequest's body: the config asks samlsp again).
func pageOfRefusal(t *testing.T, client *http.Client, b *sptest.Browser, rootURL string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, rootURL+"/docs;jsessionid=0123", nil)
	req.Header.Set("Accept", "text/html,application/xhtml+xml")
	req.Header.Set("Sec-Fetch-Mode", "navigate")
	req.Header.Set("Sec-Fetch-Dest", "document")
	for _, c := range b.Cookies(req.URL) {
		req.AddCookie(c)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest || resp.Header.Get("X-Samlha-Cause") != "path-not-canonical" ||
		!strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") || !strings.Contains(string(body), `id="cause">path-not-canonical<`) {
		t.Errorf("a path that is not canonical, with a session: %d %q %q\n%s\nwant samlsp's 400 page, path-not-canonical",
			resp.StatusCode, resp.Header.Get("X-Samlha-Cause"), resp.Header.Get("Content-Type"), failureBody(body))
	}
}

func failureBody(b []byte) string {
	if len(b) > 600 {
		return string(b[:600]) + "..."
	}
	return string(b)
}

// The ingress-nginx overlay protects the app with auth-url pointing at
// samlsp's /saml/auth, signs in through /saml/login, copies exactly the
// identity headers samlsp sets (which replaces the client's copies), sets
// the auth request's path headers itself, and lets ordinary traffic
// through: bodies of any size, streamed both ways.
func TestK8sForwardAuthOverlayProtectsTheApp(t *testing.T) {
	t.Parallel()
	r := renderOverlay(t, filepath.Join(overlaysDir, "forward-auth"))
	ing, ok := r.get("Ingress", "app")
	if !ok {
		t.Fatalf("no Ingress/app (%v)", r.kinds())
	}
	a := ing.Metadata.Annotations
	const ann = "nginx.ingress.kubernetes.io/"
	if got := a[ann+"auth-url"]; !strings.HasPrefix(got, "http://samlsp.") || !strings.HasSuffix(got, "/saml/auth") {
		t.Errorf("auth-url %q: want the samlsp Service's /saml/auth", got)
	}
	if got := a[ann+"auth-signin"]; !strings.HasSuffix(got, "/saml/login") {
		t.Errorf("auth-signin %q: want samlsp's /saml/login (ingress-nginx appends rd=)", got)
	}
	got := strings.Split(a[ann+"auth-response-headers"], ",")
	if !slices.Equal(got, identityHeaders) {
		t.Errorf("auth-response-headers %q, want every identity header samlsp sets: %q", got, identityHeaders)
	}
	for k, want := range map[string]string{"proxy-body-size": "0", "proxy-request-buffering": "off", "proxy-buffering": "off"} {
		if a[ann+k] != want {
			t.Errorf("annotation %s = %q, want %q", k, a[ann+k], want)
		}
	}
	// The auth request's X-Original-URI is the controller's, and a
	// client's X-Forwarded-Uri (which samlsp reads first) is emptied.
	ns, name, _ := strings.Cut(a[ann+"auth-proxy-set-headers"], "/")
	cm, ok := r.get("ConfigMap", name)
	if !ok || ns != ing.Metadata.Namespace {
		t.Fatalf("auth-proxy-set-headers %q names no ConfigMap of the overlay's namespace %q", a[ann+"auth-proxy-set-headers"], ing.Metadata.Namespace)
	}
	want := map[string]string{"X-Original-URI": "$request_uri", "X-Forwarded-Uri": "", "X-Forwarded-Method": ""}
	if fmt.Sprint(cm.Data) != fmt.Sprint(want) {
		t.Errorf("ConfigMap %s = %v, want %v", name, cm.Data, want)
	}
	var pass []string
	var passAttr string
	for _, o := range r.objs {
		if o.Kind == "ConfigMap" && strings.HasPrefix(o.Metadata.Name, "samlsp-env") {
			passAttr = o.Data["SAMLHA_PASS_ATTRIBUTE"]
		}
	}
	if passAttr == "" {
		t.Fatal("samlsp-env sets no SAMLHA_PASS_ATTRIBUTE")
	}
	for _, p := range strings.Split(passAttr, ",") {
		_, h, _ := strings.Cut(p, "=")
		pass = append(pass, h)
	}
	for _, h := range pass {
		if !slices.Contains(got, h) {
			t.Errorf("SAMLHA_PASS_ATTRIBUTE sends %s, which auth-response-headers does not copy (a client's copy would pass)", h)
		}
	}
	sp, _ := r.get("Ingress", "samlha")
	spec := decodeSpec[k8sIngress](t, sp)
	if p := spec.Rules[0].HTTP.Paths[0].Path; p != "/saml/" {
		t.Errorf("Ingress samlha serves %q on the shared host, want only /saml/", p)
	}
}

// The Traefik config is rendered and checked, not run (Traefik is not
// installable here).
func TestTraefikForwardAuthConfig(t *testing.T) {
	t.Parallel()
	var c struct {
		HTTP struct {
			Routers map[string]struct {
				EntryPoints []string `json:"entryPoints"`
				Rule        string   `json:"rule"`
				Middlewares []string `json:"middlewares"`
				Service     string   `json:"service"`
			} `json:"routers"`
			Middlewares map[string]struct {
				Headers *struct {
					CustomRequestHeaders map[string]string `json:"customRequestHeaders"`
				} `json:"headers"`
				ForwardAuth *struct {
					Address             string   `json:"address"`
					TrustForwardHeader  bool     `json:"trustForwardHeader"`
					AuthResponseHeaders []string `json:"authResponseHeaders"`
				} `json:"forwardAuth"`
			} `json:"middlewares"`
			Services map[string]struct {
				LoadBalancer struct {
					Servers []struct {
						URL string `json:"url"`
					} `json:"servers"`
					HealthCheck *struct {
						Path     string `json:"path"`
						Interval string `json:"interval"`
					} `json:"healthCheck"`
					ResponseForwarding *struct {
						FlushInterval string `json:"flushInterval"`
					} `json:"responseForwarding"`
				} `json:"loadBalancer"`
			} `json:"services"`
		} `json:"http"`
	}
	if err := yaml.UnmarshalStrict([]byte(readConf(t, "traefik-forward-auth.yml")), &c); err != nil {
		t.Fatal(err)
	}
	fa := c.HTTP.Middlewares["samlha-auth"].ForwardAuth
	if fa == nil || !strings.HasSuffix(fa.Address, "/saml/auth") || fa.TrustForwardHeader {
		t.Fatalf("forwardAuth middleware: %+v", fa)
	}
	if !slices.Equal(fa.AuthResponseHeaders, identityHeaders) {
		t.Errorf("authResponseHeaders %q, want every identity header samlsp sets: %q", fa.AuthResponseHeaders, identityHeaders)
	}
	// Every underscore spelling of an identity or forwarding header is
	// deleted before forwardAuth runs.
	strip := c.HTTP.Middlewares["samlha-strip"].Headers
	if strip == nil {
		t.Fatal("no samlha-strip headers middleware")
	}
	for _, h := range append(slices.Clone(identityHeaders), "X-Real-Ip", "X-Forwarded-Host") {
		for _, sp := range separatorSpellings(h) {
			if v, ok := strip.CustomRequestHeaders[sp]; !ok || v != "" {
				t.Errorf("samlha-strip does not delete %s", sp)
			}
		}
	}
	app := c.HTTP.Routers["app"]
	if !slices.Equal(app.Middlewares, []string{"samlha-strip", "samlha-auth"}) || app.Service != "app" {
		t.Errorf("router app: %+v, want middlewares samlha-strip then samlha-auth", app)
	}
	if sp := c.HTTP.Routers["samlsp"]; !strings.Contains(sp.Rule, "/saml/") || len(sp.Middlewares) != 0 {
		t.Errorf("router samlsp: %+v", sp)
	}
	lb := c.HTTP.Services["samlsp"].LoadBalancer
	if n := len(lb.Servers); n != len(refReplicas) {
		t.Errorf("samlsp service has %d servers, want %d", n, len(refReplicas))
	}
	if lb.HealthCheck == nil || lb.HealthCheck.Path != "/readyz" {
		t.Errorf("samlsp health check %+v, want /readyz (readiness, not liveness)", lb.HealthCheck)
	}
	if rf := c.HTTP.Services["app"].LoadBalancer.ResponseForwarding; rf == nil || rf.FlushInterval == "" {
		t.Error("the app service sets no responseForwarding.flushInterval")
	}
}

// TestGatewayRoundRobinSurvivesAKilledReplica is the gateway's promise end
// to end, with the real binaries: demoapp (no SAML code, --require-jwt)
// behind three samlsp gateways on one Redis behind HAProxy on its
// reference config (haproxy-gateway.cfg: round robin, no affinity,
// readiness checks). Every login succeeds on the first try and the app
// verifies the identity JWT; after one gateway is killed, every session
// keeps working and new logins succeed.
func TestGatewayRoundRobinSurvivesAKilledReplica(t *testing.T) {
	if testing.Short() {
		t.Skip("starts Redis, devidp, three samlsp gateways, demoapp and HAProxy (-short)")
	}
	needTool(t, "haproxy")
	d := loadDockerfile(t)
	spPkg, _ := d.pkgOf("samlsp")
	idpPkg, _ := d.pkgOf("devidp")
	samlsp := bins.path(t, "samlsp", spPkg)
	devidp := bins.path(t, "devidp", idpPkg)
	demoapp := bins.path(t, "demoapp", "./cmd/demoapp")

	dir := t.TempDir()
	lbPort, idpPort, appPort := freePort(t), freePort(t), freePort(t)
	rootURL, idpURL, appURL := "http://127.0.0.1:"+lbPort, "http://127.0.0.1:"+idpPort, "http://127.0.0.1:"+appPort
	keys, jwtKeys := filepath.Join(dir, "keys"), filepath.Join(dir, "jwt")
	os.MkdirAll(jwtKeys, 0o700)
	for _, args := range [][]string{{"keygen", "--dir", keys}, {"jwtkey", "--out", filepath.Join(jwtKeys, "k1.pem"), "--alg", "EdDSA"}} {
		if out, err := exec.Command(samlsp, args...).CombinedOutput(); err != nil {
			t.Fatalf("samlsp %v: %v\n%s", args, err, out)
		}
	}
	redis := redistest.Start(t)
	startProc(t, dir, "devidp", nil, devidp, "--listen", "127.0.0.1:"+idpPort, "--public-url", idpURL,
		"--sp-metadata", rootURL+"/saml/metadata", "--register-timeout", "0", "--data-dir", filepath.Join(dir, "idp"))
	startProc(t, dir, "demoapp", nil, demoapp, "--listen", "127.0.0.1:"+appPort, "--require-jwt",
		"--jwks-url", rootURL+"/saml/jwks.json", "--issuer", rootURL, "--audience", appURL)
	waitHTTP(t, idpURL+"/metadata", 30*time.Second)
	var gws []*exec.Cmd
	place := map[string]string{refListen: "127.0.0.1:" + lbPort}
	for i, addr := range refReplicas {
		port := freePort(t)
		place[addr] = "127.0.0.1:" + port
		id := "gw-" + strconv.Itoa(i+1)
		gws = append(gws, startProcCmd(t, dir, id, nil, samlsp, "--instance-id", id, "--listen", "127.0.0.1:"+port,
			"--root-url", rootURL, "--idp-metadata-url", idpURL+"/metadata", "--sp-key", filepath.Join(keys, "sp.key"),
			"--sp-cert", filepath.Join(keys, "sp.crt"), "--store", "redis", "--store-url", redis.URL(),
			"--upstream", appURL, "--identity-jwt", "--identity-jwt-key", jwtKeys, "--session-cache-ttl", "1s",
			"--trusted-proxies", "127.0.0.1"))
		waitHTTP(t, "http://127.0.0.1:"+port+"/readyz", 30*time.Second)
	}
	runReference(t, thirdparty.HAProxy, "haproxy-gateway.cfg", place, lbPort, rootURL+"/saml/metadata")
	waitHTTP(t, idpURL+"/readyz", 60*time.Second)

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	login := func(i int) *sptest.Browser {
		user := []string{"alice", "bob"}[i%2]
		b := sptest.NewBrowser(sptest.Options{RequestTimeout: 10 * time.Second, SuccessPath: "/app"})
		res := b.Login(ctx, rootURL+"/app", user, user+"-password")
		if !res.OK {
			t.Fatalf("login %d (%s) failed: cause %s: %v", i, user, res.Cause, res.Err)
		}
		return b
	}
	var browsers []*sptest.Browser
	for i := range 6 {
		browsers = append(browsers, login(i))
	}
	// Kill one gateway, hard.
	if err := gws[1].Process.Kill(); err != nil {
		t.Fatal(err)
	}
	for i, b := range browsers {
		for j := range 3 {
			page, err := b.Get(ctx, rootURL+"/app")
			if err != nil {
				t.Fatalf("browser %d, request %d after the kill: %v", i, j, err)
			}
			if page.Status != 200 || page.Header.Get("X-Samlha-User") == "" || page.Header.Get("X-Demoapp-Jwt") != "verified" {
				t.Fatalf("browser %d, request %d after the kill: %d user %q jwt %q", i, j, page.Status,
					page.Header.Get("X-Samlha-User"), page.Header.Get("X-Demoapp-Jwt"))
			}
		}
	}
	for i := 6; i < 9; i++ {
		login(i)
	}
}

// TestGatewayReferenceConfigs checks what each forward-auth and gateway
// reference config promises, in its text and with the proxy's own check
// (TestTopologies runs them).
func TestGatewayReferenceConfigs(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		kind thirdparty.Kind
		conf string
		want []string // active lines that must be there
	}{
		{thirdparty.Nginx, "nginx-forward-auth.conf", []string{
			"underscores_in_headers off;", "client_max_body_size 0;", "proxy_request_buffering off;", "proxy_buffering off;",
			"map $http_upgrade $connection_upgrade {", "proxy_set_header Connection $connection_upgrade;",
			"proxy_set_header Upgrade $http_upgrade;", `proxy_set_header X-Forwarded-Uri "";`, "proxy_method GET;",
			"proxy_set_header Cookie $app_cookie;", "proxy_set_header X-Real-IP $remote_addr;",
			"proxy_set_header X-Forwarded-Host $http_host;", "error_page 401 = @samlha_login;",
		}},
		{thirdparty.Caddy, "Caddyfile.forward-auth", []string{
			"admin off", "bind 127.0.0.1", "request_header -X-Samlha-*", "request_header -*_*", "flush_interval -1",
			"health_uri /readyz", "request_header @not_upgrade -Connection",
			"copy_headers " + strings.Join(identityHeaders, " "),
		}},
		{thirdparty.HAProxy, "haproxy-forward-auth.cfg", []string{
			"default-path config", "lua-load haproxy-forward-auth.lua", "http-check send meth GET uri /readyz",
			"http-request del-header _ -m sub", "http-request del-header x-samlha- -m beg",
			"http-request lua.samlha_auth abns@samlha-auth " + strings.Join(identityHeaders, ",") + " unless samlsp_path || public_path",
		}},
		{thirdparty.HAProxy, "haproxy-gateway.cfg", []string{
			"balance roundrobin", "http-check send meth GET uri /readyz", "http-request del-header _ -m sub",
			"http-request del-header x-samlha- -m beg", "http-request set-header X-Real-IP %[src]",
		}},
	} {
		t.Run(c.conf, func(t *testing.T) {
			t.Parallel()
			text := readConf(t, c.conf)
			active := activeLines(text)
			for _, w := range c.want {
				if !slices.Contains(active, w) {
					t.Errorf("%s lacks the line %q", c.conf, w)
				}
			}
			if c.kind == thirdparty.Nginx {
				// Every identity header is set from samlsp's answer where
				// the app is protected, and emptied where it is public.
				for _, h := range identityHeaders {
					v := "$samlha_" + strings.ReplaceAll(strings.ToLower(strings.TrimPrefix(strings.TrimPrefix(h, "X-Samlha-"), "X-")), "-", "_")
					if h == "X-Samlha-Jwt-Assertion" {
						v = "$samlha_jwt"
					}
					for _, w := range []string{"proxy_set_header " + h + " " + v + ";", "proxy_set_header " + h + ` "";`} {
						if !slices.Contains(active, w) {
							t.Errorf("%s lacks the line %q", c.conf, w)
						}
					}
				}
			}
			needTool(t, string(c.kind))
			if _, err := (thirdparty.ProxyConfig{Kind: c.kind, Dir: t.TempDir(), Text: text, Files: filesOf(t, c.conf)}).Check(); err != nil {
				t.Error(err)
			}
		})
	}
}
