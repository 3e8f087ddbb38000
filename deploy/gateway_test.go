package deploy

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/samlha/samlha/sp/sptest"
	"github.com/samlha/samlha/store/redis/redistest"
)

// refApp is the application's address in the forward-auth reference
// configs.
const refApp = "127.0.0.1:3000"

// TestForwardAuthConfigsLogIn runs the nginx and Caddy forward-auth
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
		name, tool, conf string
		start            func(t *testing.T, exe, cfg string)
	}{
		{"nginx", "nginx", "nginx-forward-auth.conf", func(t *testing.T, exe, cfg string) {
			prefix := t.TempDir()
			os.MkdirAll(filepath.Join(prefix, "logs"), 0o755)
			startProc(t, prefix, "nginx", nil, exe, "-p", prefix, "-c", cfg,
				"-g", "pid "+filepath.Join(prefix, "nginx.pid")+"; error_log stderr; daemon off;")
		}},
		{"caddy", "caddy", "Caddyfile.forward-auth", func(t *testing.T, exe, cfg string) {
			home := t.TempDir()
			startProc(t, home, "caddy", []string{"HOME=" + home, "XDG_DATA_HOME=" + home, "XDG_CONFIG_HOME=" + home},
				exe, "run", "--config", cfg, "--adapter", "caddyfile")
		}},
	} {
		t.Run(px.name, func(t *testing.T) {
			exe, ok := findTool(px.tool)
			if !ok {
				skipOrFail(t, "%s is not installed (apt-get install -y %s)", px.tool, px.tool)
			}
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
			replace := map[string]string{refListen: "127.0.0.1:" + proxyPort, refApp: "127.0.0.1:" + appPort}
			for i, addr := range refReplicas {
				port := freePort(t)
				replace[addr] = "127.0.0.1:" + port
				id := "sp-" + strconv.Itoa(i+1)
				startProc(t, dir, id, nil, samlsp, "--instance-id", id, "--listen", "127.0.0.1:"+port, "--root-url", rootURL,
					"--idp-metadata-url", idpURL+"/metadata", "--sp-key", filepath.Join(keys, "sp.key"),
					"--sp-cert", filepath.Join(keys, "sp.crt"), "--store", "redis", "--store-url", redis.URL(),
					"--mode", "forward-auth", "--trusted-proxies", "127.0.0.1", "--pass-attribute", "mail=X-Email",
					"--identity-jwt", "--identity-jwt-key", jwtKeys)
				waitHTTP(t, "http://127.0.0.1:"+port+"/readyz", 30*time.Second)
			}
			text := readConf(t, px.conf)
			for from, to := range replace {
				text = strings.ReplaceAll(text, from, to)
			}
			if px.tool == "caddy" {
				text = strings.Replace(text, "auto_https off", "auto_https off\n\tadmin off", 1)
			}
			cfg := filepath.Join(t.TempDir(), px.conf)
			if err := os.WriteFile(cfg, []byte(text), 0o644); err != nil {
				t.Fatal(err)
			}
			px.start(t, exe, cfg)
			waitHTTP(t, rootURL+"/saml/metadata", 30*time.Second)
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
		if resp.StatusCode != want || resp.Header.Get("X-Demoapp-Jwt") != "" {
			t.Fatalf("API call without a session (forged identity %v): %d (app answered: %q), want %d from samlsp", forged, resp.StatusCode, resp.Header.Get("X-Demoapp-Jwt"), want)
		}
	}

	acs := map[string]int{}
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
		b.CloseIdleConnections()
	}
	t.Logf("ACS per replica: %v", acs)
	if len(acs) < 2 {
		t.Errorf("every ACS was on one replica (%v): the proxy did not balance round robin", acs)
	}
}

// The ingress-nginx overlay protects the app with auth-url pointing at
// samlsp's /saml/auth, signs in through /saml/login, and copies exactly the
// identity headers samlsp sets.
func TestK8sForwardAuthOverlayProtectsTheApp(t *testing.T) {
	t.Parallel()
	r := renderOverlay(t, filepath.Join(overlaysDir, "forward-auth"))
	ing, ok := r.get("Ingress", "app")
	if !ok {
		t.Fatalf("no Ingress/app (%v)", r.kinds())
	}
	a := ing.Metadata.Annotations
	if got := a["nginx.ingress.kubernetes.io/auth-url"]; !strings.HasPrefix(got, "http://samlsp.") || !strings.HasSuffix(got, "/saml/auth") {
		t.Errorf("auth-url %q: want the samlsp Service's /saml/auth", got)
	}
	if got := a["nginx.ingress.kubernetes.io/auth-signin"]; !strings.HasSuffix(got, "/saml/login") {
		t.Errorf("auth-signin %q: want samlsp's /saml/login (ingress-nginx appends rd=)", got)
	}
	for _, h := range []string{"X-Samlha-User", "X-Samlha-Name-Id", "X-Samlha-Jwt-Assertion", "X-Email"} {
		if !strings.Contains(a["nginx.ingress.kubernetes.io/auth-response-headers"], h) {
			t.Errorf("auth-response-headers lacks %s", h)
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
	for _, h := range []string{"X-Samlha-User", "X-Samlha-Name-Id", "X-Samlha-Jwt-Assertion", "X-Email"} {
		if !strings.Contains(strings.Join(fa.AuthResponseHeaders, ","), h) {
			t.Errorf("authResponseHeaders lacks %s", h)
		}
	}
	app := c.HTTP.Routers["app"]
	if len(app.Middlewares) != 1 || app.Middlewares[0] != "samlha-auth" || app.Service != "app" {
		t.Errorf("router app: %+v", app)
	}
	if sp := c.HTTP.Routers["samlsp"]; !strings.Contains(sp.Rule, "/saml/") || len(sp.Middlewares) != 0 {
		t.Errorf("router samlsp: %+v", sp)
	}
	if n := len(c.HTTP.Services["samlsp"].LoadBalancer.Servers); n != len(refReplicas) {
		t.Errorf("samlsp service has %d servers, want %d", n, len(refReplicas))
	}
}

// TestGatewayRoundRobinSurvivesAKilledReplica is the gateway's promise end
// to end, with the real binaries: demoapp (no SAML code, --require-jwt)
// behind three samlsp gateways on one Redis behind a round-robin balancer
// (Caddy, no affinity). Every login succeeds on the first try and the app
// verifies the identity JWT; after one gateway is killed, every session
// keeps working and new logins succeed.
func TestGatewayRoundRobinSurvivesAKilledReplica(t *testing.T) {
	if testing.Short() {
		t.Skip("starts Redis, devidp, three samlsp gateways, demoapp and Caddy (-short)")
	}
	exe, ok := findTool("caddy")
	if !ok {
		skipOrFail(t, "caddy is not installed (apt-get install -y caddy)")
	}
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
	var gws []*exec.Cmd
	var addrs []string
	for i := range 3 {
		port := freePort(t)
		id := "gw-" + strconv.Itoa(i+1)
		gws = append(gws, startProcCmd(t, dir, id, nil, samlsp, "--instance-id", id, "--listen", "127.0.0.1:"+port,
			"--root-url", rootURL, "--idp-metadata-url", idpURL+"/metadata", "--sp-key", filepath.Join(keys, "sp.key"),
			"--sp-cert", filepath.Join(keys, "sp.crt"), "--store", "redis", "--store-url", redis.URL(),
			"--upstream", appURL, "--identity-jwt", "--identity-jwt-key", jwtKeys, "--session-cache-ttl", "1s"))
		addrs = append(addrs, "127.0.0.1:"+port)
		waitHTTP(t, "http://127.0.0.1:"+port+"/readyz", 30*time.Second)
	}
	caddyfile := "{\n\tauto_https off\n\tadmin off\n}\n\nhttp://127.0.0.1:" + lbPort + " {\n\treverse_proxy " + strings.Join(addrs, " ") +
		" {\n\t\tlb_policy round_robin\n\t\tlb_try_duration 2s\n\t\tfail_duration 10s\n\t}\n}\n"
	cfg := filepath.Join(dir, "Caddyfile")
	if err := os.WriteFile(cfg, []byte(caddyfile), 0o644); err != nil {
		t.Fatal(err)
	}
	home := t.TempDir()
	startProc(t, home, "caddy", []string{"HOME=" + home, "XDG_DATA_HOME=" + home, "XDG_CONFIG_HOME=" + home},
		exe, "run", "--config", cfg, "--adapter", "caddyfile")
	waitHTTP(t, rootURL+"/saml/metadata", 30*time.Second)
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
