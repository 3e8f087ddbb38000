package topo

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/samlha/samlha/sp/keypair"
	"github.com/samlha/samlha/stickyproxy"
)

// Host names of the lab's two sites. Their registrable domains differ
// (samlha.test, samlha-idp.test), so the IdP is cross-site to the SP, as in
// production, and the browser's SameSite rules apply. The lab's browser
// resolves both to 127.0.0.1.
const (
	SPHost  = "sp.samlha.test"
	IdPHost = "idp.samlha-idp.test"
)

// Env is what the topologies of one run share: binaries, the run
// directory, the throwaway CA, the SP key pairs and the IdP's data.
type Env struct {
	Bins Binaries
	Dir  string
	CA   *CA
	// RedisURL, if set, is an existing Redis the SPs use instead of a
	// private redis-server (faults that stop Redis then cannot run).
	RedisURL string
	Logger   *slog.Logger

	spKey, spCert string
	distinct      [][2]string
	cookieKeyFile string
	mu            sync.Mutex
}

// NewEnv prepares a run directory: the CA, the shared SP key pair and a
// cookie key for the proxy.
func NewEnv(dir string, bins Binaries, redisURL string, logger *slog.Logger) (*Env, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	e := &Env{Bins: bins, Dir: dir, RedisURL: redisURL, Logger: logger}
	ca, err := NewCA(filepath.Join(dir, "tls"), SPHost, "localhost", "127.0.0.1")
	if err != nil {
		return nil, fmt.Errorf("lab CA: %w", err)
	}
	e.CA = ca
	if e.spKey, e.spCert, err = writeKeyPair(filepath.Join(dir, "keys", "shared")); err != nil {
		return nil, err
	}
	// The proxy's cookie key goes in a file, not on a command line that
	// ps and the logs would show.
	k := make([]byte, 32)
	_, _ = rand.Read(k)
	e.cookieKeyFile = filepath.Join(dir, "keys", "proxy-cookie.key")
	if err := os.WriteFile(e.cookieKeyFile, []byte(hex.EncodeToString(k)+"\n"), 0o600); err != nil {
		return nil, err
	}
	return e, nil
}

func writeKeyPair(dir string) (key, cert string, err error) {
	k, c, err := keypair.Generate("samllab-sp", time.Now())
	if err != nil {
		return "", "", err
	}
	key, cert = filepath.Join(dir, "sp.key"), filepath.Join(dir, "sp.crt")
	return key, cert, keypair.Write(key, cert, k, c)
}

// keyPair returns replica i's key pair: the shared one, or one of its own.
func (e *Env) keyPair(i int, distinct bool) (string, string, error) {
	if !distinct {
		return e.spKey, e.spCert, nil
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	for len(e.distinct) <= i {
		k, c, err := writeKeyPair(filepath.Join(e.Dir, "keys", fmt.Sprintf("replica-%d", len(e.distinct)+1)))
		if err != nil {
			return "", "", err
		}
		e.distinct = append(e.distinct, [2]string{k, c})
	}
	return e.distinct[i][0], e.distinct[i][1], nil
}

// Spec describes one topology.
type Spec struct {
	// Name names the topology's directory and logs.
	Name     string
	Replicas int
	// Store is memory, redis or stateless.
	Store string
	// DistinctKeys gives each replica a key pair of its own.
	DistinctKeys bool
	// Stickiness is the proxy's: off or duration.
	Stickiness string
	// CookieSameSite is the SameSite of the proxy's affinity cookie (lax
	// by default); Twin adds the ALB-style <name>CORS twin with
	// SameSite=None; Secure.
	CookieSameSite string
	Twin           bool
	SAMLAware      bool
	// DrainMode is the proxy's: alb (default) or haproxy.
	DrainMode string
	// TLS serves the proxy over https with the lab CA.
	TLS bool
	// CrossSite puts the SP and the IdP on different sites (SPHost,
	// IdPHost) instead of both on 127.0.0.1.
	CrossSite bool
	// FixedPorts uses the usual local ports (IdP 9000, proxy 8080, admin
	// 8090, replicas 8081...) instead of free ones.
	FixedPorts bool
	// SPArgs are extra samlsp flags.
	SPArgs []string
}

// Replica is one running samlsp.
type Replica struct {
	ID   string
	Port int
	URL  string // http://127.0.0.1:port, direct, not through the proxy
	Proc *Proc
}

// Topology is a running topology.
type Topology struct {
	Spec     Spec
	Dir      string
	env      *Env
	IdP      *Proc
	Proxy    *Proc
	Redis    *Proc
	Replicas []*Replica

	// PublicURL is the service's URL through the proxy (the SPs' root URL).
	PublicURL string
	// IdPURL is the IdP's public URL.
	IdPURL string
	// AdminURL is the proxy's admin API.
	AdminURL string
	// StoreURL is the store URL the replicas use ("" for stateless).
	StoreURL string
	// Resolve maps the lab's host names to loopback, for the browser.
	Resolve map[string]string
	// RootCAs trusts the lab CA.
	RootCAs *x509.CertPool

	redisPort int
}

// Start starts a topology and waits until every part of it is ready. On
// failure it stops what it started and says which part failed, with the
// end of its log. Free ports are found by binding and releasing them, so
// another process can take one in between: a start that fails with
// "address already in use" is tried again, up to three times, on new
// ports.
func Start(ctx context.Context, env *Env, spec Spec) (*Topology, error) {
	var err error
	for attempt := 1; attempt <= 3; attempt++ {
		var top *Topology
		top, err = start(ctx, env, spec)
		if err == nil {
			return top, nil
		}
		if spec.FixedPorts || !strings.Contains(err.Error(), "address already in use") {
			break
		}
		env.Logger.Warn("a port was taken before a child could bind it; starting again on new ports", "topology", spec.Name, "attempt", attempt)
	}
	return nil, err
}

func start(ctx context.Context, env *Env, spec Spec) (top *Topology, err error) {
	if spec.Replicas <= 0 {
		spec.Replicas = 3
	}
	if spec.Stickiness == "" {
		spec.Stickiness = "off"
	}
	if spec.CookieSameSite == "" {
		spec.CookieSameSite = "lax"
	}
	if spec.DrainMode == "" {
		spec.DrainMode = "alb"
	}
	dir := filepath.Join(env.Dir, spec.Name)
	top = &Topology{Spec: spec, Dir: dir, env: env, RootCAs: env.CA.Pool,
		Resolve: map[string]string{SPHost: "127.0.0.1", IdPHost: "127.0.0.1"}}
	defer func() {
		if err != nil {
			top.Stop()
			top = nil
		}
	}()

	port := func(fixed int) (int, error) {
		if spec.FixedPorts {
			return fixed, nil
		}
		return FreePort()
	}
	idpPort, err := port(9000)
	if err != nil {
		return top, err
	}
	proxyPort, err := port(8080)
	if err != nil {
		return top, err
	}
	adminPort, err := port(8090)
	if err != nil {
		return top, err
	}
	spHost, idpHost, scheme := "127.0.0.1", "127.0.0.1", "http"
	if spec.CrossSite {
		spHost, idpHost = SPHost, IdPHost
	}
	if spec.TLS {
		scheme = "https"
	}
	top.PublicURL = fmt.Sprintf("%s://%s:%d", scheme, spHost, proxyPort)
	top.IdPURL = fmt.Sprintf("http://%s:%d", idpHost, idpPort)
	top.AdminURL = fmt.Sprintf("http://127.0.0.1:%d", adminPort)
	for i := range spec.Replicas {
		p, err := port(8081 + i)
		if err != nil {
			return top, err
		}
		top.Replicas = append(top.Replicas, &Replica{ID: fmt.Sprintf("sp-%d", i+1), Port: p, URL: fmt.Sprintf("http://127.0.0.1:%d", p)})
	}

	// Redis first: the replicas wait for their store.
	switch spec.Store {
	case "redis":
		if env.RedisURL != "" {
			top.StoreURL = withPrefix(env.RedisURL, "samllab:"+spec.Name+":"+randomHex(4)+":")
		} else {
			if env.Bins.Redis == "" {
				return top, errors.New("redis-server is not installed and no --redis-url was given")
			}
			if top.redisPort, err = FreePort(); err != nil {
				return top, err
			}
			redisArgs := []string{"--port", strconv.Itoa(top.redisPort), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
				"--dir", dir, "--protected-mode", "yes"}
			top.Redis = &Proc{Name: "redis", Path: env.Bins.Redis, Args: redisArgs, LogPath: filepath.Join(dir, "redis.log")}
			if err := os.MkdirAll(dir, 0o755); err != nil {
				return top, err
			}
			if err := top.StartRedis(ctx); err != nil {
				return top, err
			}
			top.StoreURL = fmt.Sprintf("redis://127.0.0.1:%d/0?timeout=300ms&dial_timeout=300ms", top.redisPort)
		}
	case "memory":
		top.StoreURL = "memory://"
	case "stateless":
	default:
		return top, fmt.Errorf("unknown store %q", spec.Store)
	}

	top.IdP = &Proc{Name: "devidp", Path: env.Bins.IdP, LogPath: filepath.Join(dir, "devidp.log"), Args: []string{
		"--listen", fmt.Sprintf("127.0.0.1:%d", idpPort), "--public-url", top.IdPURL,
		"--data-dir", filepath.Join(env.Dir, "idp-data"),
		// The IdP fetches the SP metadata from a replica directly: every
		// replica serves the same (same root URL, same key), and the
		// proxy's TLS certificate is the lab's own.
		"--sp-metadata", top.Replicas[0].URL + "/saml/metadata",
		"--register-timeout", "0", "--log-format", "json", "--log-level", "warn",
	}}
	if err := top.IdP.Start(); err != nil {
		return top, err
	}

	for i, r := range top.Replicas {
		key, cert, err := env.keyPair(i, spec.DistinctKeys)
		if err != nil {
			return top, err
		}
		args := []string{"--listen", fmt.Sprintf("127.0.0.1:%d", r.Port), "--root-url", top.PublicURL, "--instance-id", r.ID,
			"--idp-metadata-url", fmt.Sprintf("http://127.0.0.1:%d/metadata", idpPort),
			"--sp-key", key, "--sp-cert", cert, "--store", spec.Store,
			"--store-timeout", "500ms", "--store-wait", "15s",
			"--log-format", "json", "--log-level", "info", "--shutdown-grace", "2s"}
		if top.StoreURL != "" {
			args = append(args, "--store-url", top.StoreURL)
		}
		args = append(args, spec.SPArgs...)
		r.Proc = &Proc{Name: r.ID, Path: env.Bins.SP, Args: args, LogPath: filepath.Join(dir, r.ID+".log")}
		if err := r.Proc.Start(); err != nil {
			return top, err
		}
	}

	pargs := []string{"--listen", fmt.Sprintf("127.0.0.1:%d", proxyPort), "--admin-listen", fmt.Sprintf("127.0.0.1:%d", adminPort),
		"--stickiness", spec.Stickiness, "--cookie-samesite", spec.CookieSameSite, "--drain-mode", spec.DrainMode,
		"--cookie-key-file", env.cookieKeyFile, "--health-interval", "300ms", "--health-timeout", "250ms", "--health-fall", "1", "--health-rise", "2",
		"--access-log", "anomalies", "--log-format", "json", "--shutdown-grace", "2s"}
	for _, r := range top.Replicas {
		pargs = append(pargs, "--target", fmt.Sprintf("%s=%s", r.ID, r.URL))
	}
	if spec.TLS {
		pargs = append(pargs, "--tls-cert", env.CA.CertFile, "--tls-key", env.CA.KeyFile, "--cookie-secure")
	}
	if spec.Twin {
		pargs = append(pargs, "--cookie-twin")
	}
	if spec.SAMLAware {
		pargs = append(pargs, "--saml-aware")
	}
	top.Proxy = &Proc{Name: "stickyproxy", Path: env.Bins.Proxy, Args: pargs, LogPath: filepath.Join(dir, "stickyproxy.log")}
	if err := top.Proxy.Start(); err != nil {
		return top, err
	}

	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for _, r := range top.Replicas {
		if err := waitHTTP(ctx, r.Proc, r.URL+"/readyz"); err != nil {
			return top, err
		}
	}
	if err := waitHTTP(ctx, top.IdP, fmt.Sprintf("http://127.0.0.1:%d/readyz", idpPort)); err != nil {
		return top, err
	}
	if err := waitHTTP(ctx, top.Proxy, top.AdminURL+"/healthz"); err != nil {
		return top, err
	}
	if err := top.waitTargetsUp(ctx); err != nil {
		return top, err
	}
	env.Logger.Debug("topology ready", "name", spec.Name, "public_url", top.PublicURL)
	return top, nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// withPrefix sets the key prefix of a Redis URL, so that scenarios sharing
// a server do not see each other's keys.
func withPrefix(rawURL, prefix string) string {
	u, err := url.Parse(rawURL)
	if err != nil {
		return rawURL
	}
	q := u.Query()
	q.Set("prefix", prefix)
	u.RawQuery = q.Encode()
	return u.String()
}

// waitHTTP waits until url answers 200, or fails early, with the end of its
// log, if p exits.
func waitHTTP(ctx context.Context, p *Proc, url string) error {
	c := &http.Client{Timeout: time.Second}
	var last string
	for {
		resp, err := c.Get(url)
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			last = resp.Status
		} else {
			last = err.Error()
		}
		select {
		case <-p.Exited():
			return fmt.Errorf("%s exited before %s was ready (%v); end of %s:\n%s", p.Name, url, p.ExitErr(), p.LogPath, p.LogTail(2000))
		case <-ctx.Done():
			return fmt.Errorf("%s: %s not ready in time (last: %s); end of %s:\n%s", p.Name, url, last, p.LogPath, p.LogTail(2000))
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Targets asks the proxy's admin API for its targets.
func (t *Topology) Targets(ctx context.Context) ([]stickyproxy.TargetStatus, error) {
	req, _ := http.NewRequestWithContext(ctx, "GET", t.AdminURL+"/targets", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var ts []stickyproxy.TargetStatus
	if err := json.NewDecoder(resp.Body).Decode(&ts); err != nil {
		return nil, fmt.Errorf("proxy admin /targets (%s): %w", resp.Status, err)
	}
	return ts, nil
}

func (t *Topology) waitTargetsUp(ctx context.Context) error {
	for {
		ts, err := t.Targets(ctx)
		up := 0
		for _, s := range ts {
			if s.Healthy {
				up++
			}
		}
		if err == nil && up == len(t.Replicas) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("the proxy does not see all %d targets healthy (%d; %v)", len(t.Replicas), up, err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Replica returns the replica with the given ID.
func (t *Topology) Replica(id string) (*Replica, error) {
	for _, r := range t.Replicas {
		if r.ID == id {
			return r, nil
		}
	}
	return nil, fmt.Errorf("no replica %q", id)
}

// KillReplica kills a replica at once (SIGKILL): a crash.
func (t *Topology) KillReplica(id string) error {
	r, err := t.Replica(id)
	if err != nil {
		return err
	}
	r.Proc.Kill()
	return nil
}

// DrainReplica drains a replica through the proxy's admin API.
func (t *Topology) DrainReplica(ctx context.Context, id string) error {
	req, _ := http.NewRequestWithContext(ctx, "POST", t.AdminURL+"/targets/"+url.PathEscape(id)+"/drain", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		b, _ := io.ReadAll(resp.Body)
		return fmt.Errorf("drain %s: %s: %s", id, resp.Status, strings.TrimSpace(string(b)))
	}
	return nil
}

// StopRedis stops the private redis-server.
func (t *Topology) StopRedis() error {
	if t.Redis == nil {
		return errors.New("this topology has no private redis-server to stop")
	}
	t.Redis.Kill()
	return nil
}

// StartRedis (re)starts the private redis-server on its port and waits
// until it answers PING.
func (t *Topology) StartRedis(ctx context.Context) error {
	if t.Redis == nil {
		return errors.New("this topology has no private redis-server")
	}
	if err := t.Redis.Start(); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	addr := fmt.Sprintf("127.0.0.1:%d", t.redisPort)
	for {
		if pingRedis(addr) == nil {
			return nil
		}
		select {
		case <-t.Redis.Exited():
			return fmt.Errorf("redis-server exited: %v; end of %s:\n%s", t.Redis.ExitErr(), t.Redis.LogPath, t.Redis.LogTail(2000))
		case <-ctx.Done():
			return fmt.Errorf("redis-server on %s does not answer PING", addr)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func pingRedis(addr string) error {
	c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(500 * time.Millisecond))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if !strings.HasPrefix(line, "+PONG") {
		return fmt.Errorf("PING answered %q", strings.TrimSpace(line))
	}
	return nil
}

// Stop stops every process: the proxy first, then the replicas, the IdP and
// Redis. It is safe to call more than once.
func (t *Topology) Stop() {
	if t == nil {
		return
	}
	var wg sync.WaitGroup
	stop := func(p *Proc) {
		if p == nil {
			return
		}
		wg.Add(1)
		go func() { defer wg.Done(); p.Stop(3 * time.Second) }()
	}
	stop(t.Proxy)
	wg.Wait()
	for _, r := range t.Replicas {
		stop(r.Proc)
	}
	stop(t.IdP)
	wg.Wait()
	stop(t.Redis)
	wg.Wait()
}

// Logs maps each process to its log file, relative to the run directory.
func (t *Topology) Logs() map[string]string {
	m := map[string]string{}
	add := func(p *Proc) {
		if p == nil {
			return
		}
		if rel, err := filepath.Rel(t.env.Dir, p.LogPath); err == nil {
			m[p.Name] = rel
		}
	}
	add(t.IdP)
	add(t.Proxy)
	add(t.Redis)
	for _, r := range t.Replicas {
		add(r.Proc)
	}
	return m
}
