package topo

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/samlha/samlha/deploy"
	"github.com/samlha/samlha/store/localproc"
)

// The addresses of deploy/nginx-forward-auth.conf, rewritten to the
// topology's own.
const (
	refNginxListen = "127.0.0.1:8080"
	refNginxApp    = "127.0.0.1:3000"
)

var refNginxReplicas = []string{"127.0.0.1:8081", "127.0.0.1:8082", "127.0.0.1:8083"}

// jwtKeyDir returns the run's identity JWT key ring, shared by every
// replica of every gateway topology (samlsp jwtkey makes its one key on
// first use).
func (e *Env) jwtKeyDir() (string, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.jwtKeys != "" {
		return e.jwtKeys, nil
	}
	dir := filepath.Join(e.Dir, "keys", "jwt")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", err
	}
	cmd := exec.Command(e.Bins.SP, "jwtkey", "--out", filepath.Join(dir, "lab.pem"))
	cmd.Env = childEnv()
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("samlsp jwtkey: %v\n%s", err, out)
	}
	e.jwtKeys = dir
	return dir, nil
}

// startApp starts demoapp, the application the gateway protects, and
// returns the samlsp flags of the topology's gateway mode. demoapp checks
// every identity JWT against the key set it fetches through the public
// entry (so a killed replica does not take the keys with it), trusting
// the lab's CA for it.
func (t *Topology) startApp() ([]string, error) {
	keys, err := t.env.jwtKeyDir()
	if err != nil {
		return nil, err
	}
	t.JWTKeyDir = keys
	scheme := "http"
	if t.Spec.TLS {
		scheme = "https"
	}
	// 127.0.0.1, not the lab's host name: demoapp resolves names with the
	// system's resolver. The lab's certificate names 127.0.0.1 too.
	jwks := fmt.Sprintf("%s://127.0.0.1:%d/saml/jwks.json", scheme, t.ports.proxy)
	// The JWT's audience: the --upstream URL in gateway mode; the root URL
	// in forward-auth mode, where samlsp knows no upstream.
	audience := t.AppURL
	gw := []string{"--identity-jwt", "--identity-jwt-key", keys, "--pass-attribute", "mail=X-Email"}
	switch t.Spec.Gateway {
	case GatewayProxy:
		// A session read from Redis is served from memory for a second,
		// as the gateway's documentation suggests.
		gw = append(gw, "--upstream", t.AppURL, "--session-cache-ttl", "1s")
	case GatewayForwardAuth:
		audience = t.PublicURL
		// nginx's X-Original-URI and X-Forwarded-Proto are believed from
		// loopback only.
		gw = append(gw, "--mode", "forward-auth", "--trusted-proxies", "127.0.0.1/32")
	}
	t.App = t.proc("demoapp", t.env.Bins.DemoApp, []string{"--listen", fmt.Sprintf("127.0.0.1:%d", t.ports.app),
		"--require-jwt", "--jwks-url", jwks, "--issuer", t.PublicURL, "--audience", audience,
		"--show-header", "X-Email", "--log-format", "json"})
	t.App.Env = append(t.App.Env, "SSL_CERT_FILE="+t.env.CA.CAFile)
	if err := t.App.Start(); err != nil {
		return nil, err
	}
	return gw, nil
}

// nginxConfig is conf (deploy/nginx-forward-auth.conf) with the
// topology's addresses (and, with TLS, the lab's certificate on the
// listener). A conf without one of the addresses the lab moves is refused:
// run half-placed, nginx would send requests to the reference ports.
func (t *Topology) nginxConfig(conf string) (string, error) {
	listen := "listen " + refNginxListen + ";"
	need := []string{listen, "server " + refNginxApp + ";"}
	for _, a := range refNginxReplicas {
		need = append(need, "server "+a+" ")
	}
	for _, n := range need {
		if !strings.Contains(conf, n) {
			return "", fmt.Errorf("deploy/nginx-forward-auth.conf has no %q any more: the lab cannot place it on its ports", n)
		}
	}
	newListen := fmt.Sprintf("listen 127.0.0.1:%d;", t.ports.proxy)
	if t.Spec.TLS {
		newListen = fmt.Sprintf("listen 127.0.0.1:%d ssl;\n        ssl_certificate %s;\n        ssl_certificate_key %s;",
			t.ports.proxy, t.env.CA.CertFile, t.env.CA.KeyFile)
	}
	// One pass, so that no address is moved twice: the listener moved to
	// 127.0.0.1:3000x, say, must not then be taken for the app's
	// 127.0.0.1:3000 (nginx refused "127.0.0.1:226652").
	pairs := []string{listen, newListen, refNginxApp, fmt.Sprintf("127.0.0.1:%d", t.ports.app)}
	for i, a := range refNginxReplicas {
		pairs = append(pairs, a, fmt.Sprintf("127.0.0.1:%d", t.Replicas[i].Port))
	}
	return strings.NewReplacer(pairs...).Replace(conf), nil
}

// startNginx starts nginx on the forward-auth reference config and waits
// until it serves the SP's metadata through its /saml/ location.
func (t *Topology) startNginx(ctx context.Context) error {
	conf, err := t.nginxConfig(deploy.NginxForwardAuth)
	if err != nil {
		return err
	}
	prefix := filepath.Join(t.Dir, "nginx")
	if err := os.MkdirAll(filepath.Join(prefix, "logs"), 0o755); err != nil {
		return err
	}
	cfg := filepath.Join(prefix, "nginx.conf")
	if err := os.WriteFile(cfg, []byte(conf), 0o644); err != nil {
		return err
	}
	t.Proxy = t.proc("nginx", t.env.Bins.Nginx, []string{"-p", prefix, "-c", cfg, "-e", "stderr",
		"-g", "pid " + filepath.Join(prefix, "nginx.pid") + "; error_log stderr; daemon off;"})
	if err := t.Proxy.Start(); err != nil {
		return err
	}
	if err := t.replicasAndIdPReady(ctx); err != nil {
		return err
	}
	scheme := "http"
	client := &http.Client{Timeout: time.Second}
	if t.Spec.TLS {
		scheme = "https"
		client.Transport = &http.Transport{TLSClientConfig: &tls.Config{RootCAs: t.env.CA.Pool}}
		defer client.CloseIdleConnections()
	}
	return localproc.Ready(ctx, t.Proxy, []int{t.ports.proxy},
		localproc.HTTPProbe(client, fmt.Sprintf("%s://127.0.0.1:%d/saml/metadata", scheme, t.ports.proxy)))
}

var errNoAdmin = errors.New("this topology has no stickyproxy (nginx is its front), so no admin API")
