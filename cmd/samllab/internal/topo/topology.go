package topo

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/samlha/samlha/sp/devidp"
	"github.com/samlha/samlha/sp/keypair"
	"github.com/samlha/samlha/stickyproxy"
	"github.com/samlha/samlha/store/localproc"
)

// Proc is a child process of the lab.
type Proc = localproc.Proc

// Host names of the lab's two sites. Their registrable domains differ
// (samlha.test, samlha-idp.test), so the IdP is cross-site to the SP, as in
// production, and the browser's SameSite rules apply. The lab's browser
// resolves both to 127.0.0.1.
const (
	SPHost  = "sp.samlha.test"
	IdPHost = "idp.samlha-idp.test"
)

// Timings of a topology's life.
const (
	// readyTimeout bounds the wait for the whole topology to be ready.
	readyTimeout = 45 * time.Second
	// startTries is how many times Start goes again on new ports when a
	// port turned out to be taken.
	startTries = 3
	// stopGrace is how long a child gets after SIGTERM before SIGKILL.
	stopGrace = 3 * time.Second
	// SPShutdownGrace is samlsp's own --shutdown-grace: how long a replica
	// given SIGTERM keeps finishing the requests it has.
	SPShutdownGrace = 2 * time.Second
)

// Env is what the topologies of one run share: binaries, the run
// directory, the throwaway CA, the SP key pairs and the IdP's data.
type Env struct {
	Bins Binaries
	Dir  string
	CA   *localproc.CA
	// RedisURL, if set, is an existing Redis the SPs use instead of a
	// private redis-server (faults that stop Redis then cannot run).
	RedisURL string
	Logger   *slog.Logger
	// PickPort, if set, picks each port instead of localproc.Port (tests
	// use it to hand out a taken port).
	PickPort func() int

	spKey, spCert string
	distinct      [][2]string
	cookieKeyFile string
	jwtKeys       string
	mu            sync.Mutex
}

// NewEnv prepares a run directory: the CA, the shared SP key pair and a
// cookie key for the proxy.
func NewEnv(dir string, bins Binaries, redisURL string, logger *slog.Logger) (*Env, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	e := &Env{Bins: bins, Dir: dir, RedisURL: redisURL, Logger: logger}
	ca, err := localproc.NewCA(filepath.Join(dir, "tls"), SPHost, "localhost", "127.0.0.1")
	if err != nil {
		return nil, fmt.Errorf("lab CA: %w", err)
	}
	e.CA = ca
	if e.spKey, e.spCert, err = writeKeyPair(filepath.Join(dir, "keys", "shared")); err != nil {
		return nil, err
	}
	// The IdP's key pair, made once here: every topology's devidp loads it
	// from this directory, and topologies started at once (samllab run
	// --parallel) would otherwise race to create it there.
	if _, _, _, err := devidp.LoadOrCreateKeyPair(e.idpDataDir(), IdPHost, time.Now()); err != nil {
		return nil, fmt.Errorf("the IdP's key pair: %w", err)
	}
	// The proxy's cookie key goes in a file, not on a command line that
	// ps and the logs would show.
	e.cookieKeyFile = filepath.Join(dir, "keys", "proxy-cookie.key")
	if err := os.WriteFile(e.cookieKeyFile, []byte(randomHex(32)+"\n"), 0o600); err != nil {
		return nil, err
	}
	return e, nil
}

// idpDataDir holds the IdP's key pair, shared by every topology of the run.
func (e *Env) idpDataDir() string { return filepath.Join(e.Dir, "idp-data") }

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
	// Spare replicas are configured at the proxy from the start but not
	// started: the proxy sees them down until StartSpare brings one up
	// (scaling out; the proxy has no API to add a target).
	Spare int
	// Store is memory, redis or stateless.
	Store string
	// Redis is how a private Redis runs: "" (one server, nothing on
	// disk), "aof" (appendonly, fsync every write: a restart keeps the
	// data) or "sentinel" (a master, a replica and a Sentinel; the SPs
	// find the master through the Sentinel).
	Redis string
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
	// 8090, replicas 8081..., demoapp 3000) instead of fresh ones.
	FixedPorts bool
	// SPArgs are extra samlsp flags.
	SPArgs []string
	// Handoff (with Store memory or stateless) starts a Redis beside the
	// replicas and gives them --store-handoff to it: the start of a move
	// to shared state (MigrateReplica, MigrateStatelessReplica,
	// SetStickiness).
	Handoff bool
	// Unpinned starts a sticky proxy with its stickiness switched off
	// (admin API), for a scenario that switches it on.
	Unpinned bool
	// Gateway puts samlsp in front of demoapp, an application with no SAML
	// code that answers with the user only when the identity JWT
	// verifies: "" (samlsp serves its own demo page), GatewayProxy (the
	// replicas run --upstream demoapp behind stickyproxy) or
	// GatewayForwardAuth (nginx serves demoapp and asks the replicas
	// with auth_request, deploy/nginx-forward-auth.conf with its
	// addresses rewritten; nginx replaces stickyproxy, so there is no
	// admin API, and Replicas must be 3, the config's count).
	Gateway string
}

// Gateway modes of a Spec.
const (
	GatewayProxy       = "proxy"
	GatewayForwardAuth = "forward-auth"
)

// Replica is one samlsp.
type Replica struct {
	ID   string
	Port int
	URL  string // http://127.0.0.1:port, direct, not through the proxy
	Proc *Proc
}

// Topology is a running topology.
type Topology struct {
	Spec  Spec
	Dir   string
	env   *Env
	IdP   *Proc
	Proxy *Proc
	Redis *Proc // the master (or the only server)
	RedisReplica,
	Sentinel *Proc
	Replicas []*Replica
	// Spares are the replicas not started yet (Spec.Spare).
	Spares []*Replica
	// App is demoapp (gateway topologies only), at AppURL, direct.
	App    *Proc
	AppURL string
	// JWTKeyDir is the identity JWT key ring the gateway replicas share.
	JWTKeyDir string

	// PublicURL is the service's URL through the proxy (the SPs' root URL).
	PublicURL string
	// IdPURL is the IdP's public URL.
	IdPURL string
	// AdminURL is the proxy's admin API; AdminToken its bearer token ("" if
	// this stickyproxy has no --admin-token-file), kept in AdminTokenFile.
	AdminURL, AdminToken, AdminTokenFile string
	// StoreURL is the store URL the replicas use ("" for stateless).
	StoreURL string
	// HandoffURL is the shared store memory replicas hand off to
	// (Spec.Handoff), "" otherwise.
	HandoffURL string
	// Resolve maps the lab's host names to loopback, for the browser.
	Resolve map[string]string
	// RootCAs trusts the lab CA.
	RootCAs *x509.CertPool

	ports                              ports
	redisPort, replicaPort, sentinelPt int
	spArgs                             map[string][]string
	failover                           atomic.Pointer[failoverWatch] // see KillMasterWatched
}

type ports struct{ idp, proxy, admin, app int }

// Start starts a topology and waits until every part of it is ready, each
// part proven to be the process the lab started (see localproc). When a
// port turns out to be taken by another process, Start stops what it
// started and goes again on fresh ports, up to three times. On any other
// failure it stops what it started and says which part failed, with the
// end of its log.
func Start(ctx context.Context, env *Env, spec Spec) (*Topology, error) {
	var err error
	for attempt := 1; attempt <= startTries; attempt++ {
		var top *Topology
		top, err = start(ctx, env, spec, attempt)
		if err == nil {
			return top, nil
		}
		if spec.FixedPorts || !errors.Is(err, localproc.ErrPortTaken) {
			break
		}
		env.Logger.Warn("a port was taken before a child could bind it; starting again on new ports", "topology", spec.Name, "attempt", attempt, "err", err)
	}
	return nil, err
}

func start(ctx context.Context, env *Env, spec Spec, attempt int) (top *Topology, err error) {
	spec = spec.withDefaults()
	if err := spec.check(env); err != nil {
		return nil, err
	}
	dir := filepath.Join(env.Dir, spec.Name)
	if attempt > 1 {
		dir = filepath.Join(env.Dir, fmt.Sprintf("%s.try%d", spec.Name, attempt))
	}
	top = &Topology{Spec: spec, Dir: dir, env: env, RootCAs: env.CA.Pool, spArgs: map[string][]string{},
		Resolve: map[string]string{SPHost: "127.0.0.1", IdPHost: "127.0.0.1"}}
	defer func() {
		if err != nil {
			top.Stop()
			top = nil
		}
	}()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return top, err
	}
	ctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()

	top.assignAddresses()
	// Redis first: the replicas wait for their store.
	if err := top.startStore(ctx); err != nil {
		return top, err
	}
	if err := top.startIdP(); err != nil {
		return top, err
	}
	var gwArgs []string
	if spec.Gateway != "" {
		if gwArgs, err = top.startApp(); err != nil {
			return top, err
		}
	}
	if err := top.startReplicas(gwArgs); err != nil {
		return top, err
	}
	if spec.Gateway == GatewayForwardAuth {
		if err := top.startNginx(ctx); err != nil {
			return top, err
		}
	} else if err := top.startStickyproxy(ctx); err != nil {
		return top, err
	}
	if spec.Unpinned {
		if err := top.SetStickiness(ctx, false); err != nil {
			return top, err
		}
	}
	if top.App != nil {
		if err := localproc.Ready(ctx, top.App, []int{top.ports.app}, localproc.HTTPProbe(nil, top.AppURL+"/healthz")); err != nil {
			return top, err
		}
	}
	env.Logger.Debug("topology ready", "name", spec.Name, "public_url", top.PublicURL)
	return top, nil
}

// withDefaults fills what the spec leaves unset.
func (spec Spec) withDefaults() Spec {
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
	return spec
}

// check refuses a spec that cannot run, or cannot run with env's binaries.
func (spec Spec) check(env *Env) error {
	switch spec.Gateway {
	case "", GatewayProxy:
	case GatewayForwardAuth:
		if spec.Replicas != 3 || spec.Spare != 0 || spec.Stickiness != "off" || spec.SAMLAware {
			return errors.New("the forward-auth topology runs nginx's reference config: exactly 3 replicas, no spares, no stickiness")
		}
	default:
		return fmt.Errorf("unknown gateway mode %q", spec.Gateway)
	}
	if spec.Gateway != "" && env.Bins.DemoApp == "" {
		return errors.New("the gateway topologies need demoapp beside samlsp (go build ./cmd/demoapp)")
	}
	if spec.Gateway == GatewayForwardAuth && env.Bins.Nginx == "" {
		return errors.New("the forward-auth topology needs nginx (apt-get install -y nginx)")
	}
	switch spec.Store {
	case "redis", "memory", "stateless":
		return nil
	default:
		return fmt.Errorf("unknown store %q", spec.Store)
	}
}

// assignAddresses picks every port and URL of the topology: the lab's
// fixed ports with spec.FixedPorts, free ones otherwise.
func (top *Topology) assignAddresses() {
	spec, env := top.Spec, top.env
	port := func(fixed int) int {
		if spec.FixedPorts {
			return fixed
		}
		if env.PickPort != nil {
			return env.PickPort()
		}
		return localproc.Port()
	}
	top.ports = ports{idp: port(9000), proxy: port(8080), admin: port(8090)}
	if spec.Gateway != "" {
		top.ports.app = port(3000)
		top.AppURL = fmt.Sprintf("http://127.0.0.1:%d", top.ports.app)
	}
	spHost, idpHost, scheme := "127.0.0.1", "127.0.0.1", "http"
	if spec.CrossSite {
		spHost, idpHost = SPHost, IdPHost
	}
	if spec.TLS {
		scheme = "https"
	}
	top.PublicURL = fmt.Sprintf("%s://%s:%d", scheme, spHost, top.ports.proxy)
	top.IdPURL = fmt.Sprintf("http://%s:%d", idpHost, top.ports.idp)
	if spec.Gateway != GatewayForwardAuth {
		top.AdminURL = fmt.Sprintf("http://127.0.0.1:%d", top.ports.admin)
	}
	for i := range spec.Replicas + spec.Spare {
		p := port(8081 + i)
		r := &Replica{ID: fmt.Sprintf("sp-%d", i+1), Port: p, URL: fmt.Sprintf("http://127.0.0.1:%d", p)}
		if i < spec.Replicas {
			top.Replicas = append(top.Replicas, r)
		} else {
			top.Spares = append(top.Spares, r)
		}
	}
}

// startStore starts the private Redis the spec's store (or handoff) needs
// and sets StoreURL and HandoffURL.
func (top *Topology) startStore(ctx context.Context) error {
	spec := top.Spec
	if spec.Store == "redis" {
		return top.startRedis(ctx)
	}
	if spec.Handoff {
		if err := top.startRedis(ctx); err != nil {
			return err
		}
		top.HandoffURL = top.StoreURL
	}
	// memory://, or none for stateless.
	top.StoreURL = map[string]string{"memory": "memory://"}[spec.Store]
	return nil
}

// startIdP starts devidp; it fetches the SP metadata from a replica.
func (top *Topology) startIdP() error {
	idpArgs := []string{
		"--listen", fmt.Sprintf("127.0.0.1:%d", top.ports.idp), "--public-url", top.IdPURL,
		"--data-dir", top.env.idpDataDir(),
		// The IdP fetches the SP metadata from a replica directly: every
		// replica serves the same (same root URL, same key), and the
		// proxy's TLS certificate is the lab's own.
		"--sp-metadata", top.Replicas[0].URL + "/saml/metadata",
		"--register-timeout", "0", "--log-format", "json", "--log-level", "warn",
	}
	top.IdP = top.proc("devidp", top.env.Bins.IdP, idpArgs)
	return top.IdP.Start()
}

// startReplicas prepares every replica's samlsp (spares included, with
// gwArgs for gateway modes) and starts those that are not spares.
func (top *Topology) startReplicas(gwArgs []string) error {
	spec, env := top.Spec, top.env
	for i, r := range append(append([]*Replica{}, top.Replicas...), top.Spares...) {
		key, cert, err := env.keyPair(i, spec.DistinctKeys)
		if err != nil {
			return err
		}
		args := []string{"--listen", fmt.Sprintf("127.0.0.1:%d", r.Port), "--root-url", top.PublicURL, "--instance-id", r.ID,
			"--idp-metadata-url", fmt.Sprintf("http://127.0.0.1:%d/metadata", top.ports.idp),
			"--sp-key", key, "--sp-cert", cert, "--store", spec.Store,
			"--store-timeout", "500ms", "--store-wait", "15s",
			"--log-format", "json", "--log-level", "info", "--shutdown-grace", SPShutdownGrace.String(),
			// Every scripted browser of the lab comes from 127.0.0.1 through
			// one proxy, so the login-start limits would count the whole
			// load as one client; they have tests of their own (sp).
			"--login-rate-per-client", "0", "--login-rate", "0"}
		if top.StoreURL != "" {
			args = append(args, "--store-url", top.StoreURL)
		}
		if top.HandoffURL != "" {
			args = append(args, "--store-handoff", top.HandoffURL)
		}
		args = append(args, gwArgs...)
		args = append(args, spec.SPArgs...)
		r.Proc = top.proc(r.ID, env.Bins.SP, args)
		if i < spec.Replicas {
			if err := r.Proc.Start(); err != nil {
				return err
			}
		}
	}
	return nil
}

// startStickyproxy starts the proxy in front of the replicas and waits
// until it is ready and sees every replica healthy.
func (top *Topology) startStickyproxy(ctx context.Context) error {
	env, spec, dir := top.env, top.Spec, top.Dir
	pargs := []string{"--listen", fmt.Sprintf("127.0.0.1:%d", top.ports.proxy), "--admin-listen", fmt.Sprintf("127.0.0.1:%d", top.ports.admin),
		"--stickiness", spec.Stickiness, "--cookie-samesite", spec.CookieSameSite, "--drain-mode", spec.DrainMode,
		// One failed check takes a replica out (a killed one refuses the
		// connection at once, so faults are seen within an interval), but
		// a check may take up to 1 s: /readyz makes a store round trip,
		// and on a loaded machine (the lab beside CI's other tests) a
		// 250 ms bound marked live replicas down and re-pinned their users.
		"--cookie-key-file", env.cookieKeyFile, "--health-interval", "300ms", "--health-timeout", "1s", "--health-fall", "1", "--health-rise", "2",
		"--access-log", "anomalies", "--log-format", "json", "--shutdown-grace", "2s",
		// Readiness, not liveness: a replica that has not loaded the
		// IdP's metadata (or lost its store) gets no traffic until it can
		// serve a login (TestRestartedReplicaGetsNoTrafficUntilReady).
		"--health-path", "/readyz"}
	if env.Bins.ProxyHas("--admin-token-file") {
		// A token of its own for each topology, in a file (not on a
		// command line that ps would show).
		top.AdminToken = randomHex(32)
		top.AdminTokenFile = filepath.Join(dir, "admin-token")
		if err := os.WriteFile(top.AdminTokenFile, []byte(top.AdminToken+"\n"), 0o600); err != nil {
			return err
		}
		pargs = append(pargs, "--admin-token-file", top.AdminTokenFile)
	}
	for _, r := range append(append([]*Replica{}, top.Replicas...), top.Spares...) {
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
	top.Proxy = top.proc("stickyproxy", env.Bins.Proxy, pargs)
	if err := top.Proxy.Start(); err != nil {
		return err
	}
	if err := top.replicasAndIdPReady(ctx); err != nil {
		return err
	}
	if err := localproc.Ready(ctx, top.Proxy, []int{top.ports.proxy, top.ports.admin}, localproc.HTTPProbe(nil, top.AdminURL+"/healthz")); err != nil {
		return err
	}
	return top.WaitHealthy(ctx, top.ids(top.Replicas)...)
}

func (top *Topology) replicasAndIdPReady(ctx context.Context) error {
	for _, r := range top.Replicas {
		if err := top.replicaReady(ctx, r); err != nil {
			return err
		}
	}
	return localproc.Ready(ctx, top.IdP, []int{top.ports.idp}, localproc.HTTPProbe(nil, fmt.Sprintf("http://127.0.0.1:%d/readyz", top.ports.idp)))
}

func (t *Topology) proc(name, path string, args []string) *Proc {
	return &Proc{Name: name, Path: path, Args: args, LogPath: filepath.Join(t.Dir, name+".log"), Env: childEnv()}
}

func (t *Topology) ids(rs []*Replica) []string {
	var ids []string
	for _, r := range rs {
		ids = append(ids, r.ID)
	}
	return ids
}

// replicaReady waits until r answers /readyz as itself (its instance
// header) and holds its port.
func (t *Topology) replicaReady(ctx context.Context, r *Replica) error {
	return localproc.Ready(ctx, r.Proc, []int{r.Port}, localproc.HTTPProbe(nil, r.URL+"/readyz", "X-Samlha-Instance", r.ID))
}

// startRedis starts the private Redis the spec asks for, or points at
// --redis-url.
func (t *Topology) startRedis(ctx context.Context) error {
	env, spec := t.env, t.Spec
	if env.RedisURL != "" && spec.Redis == "" {
		t.StoreURL = withPrefix(env.RedisURL, "samllab:"+spec.Name+":"+randomHex(4)+":")
		return nil
	}
	if env.Bins.Redis == "" {
		return errors.New("redis-server is not installed and no --redis-url was given")
	}
	t.redisPort = localproc.Port()
	args := []string{"--port", strconv.Itoa(t.redisPort), "--bind", "127.0.0.1", "--dir", t.Dir, "--protected-mode", "yes", "--save", ""}
	if spec.Redis == "aof" || spec.Redis == "sentinel" {
		// Every write reaches the disk before the reply: a restart (or a
		// promoted replica) keeps every session.
		args = append(args, "--appendonly", "yes", "--appendfsync", "always", "--appendfilename", "master.aof", "--appenddirname", "aof-master")
		// The replica's first sync starts at once: by default a master
		// waits 5 s for more replicas to share a diskless transfer, and
		// the topology waits for that sync before it starts the Sentinel.
		args = append(args, "--repl-diskless-sync-delay", "0")
	} else {
		args = append(args, "--appendonly", "no")
	}
	t.Redis = t.proc("redis", env.Bins.Redis, args)
	if err := t.StartRedis(ctx); err != nil {
		return err
	}
	t.StoreURL = fmt.Sprintf("redis://127.0.0.1:%d/0?timeout=300ms&dial_timeout=300ms", t.redisPort)
	if spec.Redis != "sentinel" {
		return nil
	}
	t.replicaPort = localproc.Port()
	t.RedisReplica = t.proc("redis-replica", env.Bins.Redis, []string{"--port", strconv.Itoa(t.replicaPort), "--bind", "127.0.0.1",
		"--dir", t.Dir, "--save", "", "--appendonly", "yes", "--appendfsync", "always", "--appendfilename", "replica.aof", "--appenddirname", "aof-replica",
		"--replicaof", "127.0.0.1", strconv.Itoa(t.redisPort)})
	if err := startRedisProc(ctx, t.RedisReplica, t.replicaPort); err != nil {
		return err
	}
	// The replica must be in sync before the Sentinel starts, so that the
	// Sentinel's first look at the master finds it: a Sentinel that knows
	// no replica has nothing to promote.
	rc := goredis.NewClient(&goredis.Options{Addr: fmt.Sprintf("127.0.0.1:%d", t.replicaPort), DisableIdentity: true})
	defer rc.Close()
	if err := localproc.Poll(ctx, func(ctx context.Context) error {
		info, err := rc.Info(ctx, "replication").Result()
		if err != nil {
			return err
		}
		if !strings.Contains(info, "master_link_status:up") {
			return errors.New("the replica is not in sync with the master yet")
		}
		return nil
	}); err != nil {
		return fmt.Errorf("redis replica: %w", err)
	}
	t.sentinelPt = localproc.Port()
	conf := filepath.Join(t.Dir, "sentinel.conf")
	// Quorum 1 (one Sentinel); the master is down after 1 s of silence,
	// so a failover takes about two seconds.
	if err := os.WriteFile(conf, fmt.Appendf(nil, "port %d\nbind 127.0.0.1\nsentinel monitor samlha 127.0.0.1 %d 1\n"+
		"sentinel down-after-milliseconds samlha 1000\nsentinel failover-timeout samlha 5000\n", t.sentinelPt, t.redisPort), 0o600); err != nil {
		return err
	}
	t.Sentinel = t.proc("sentinel", env.Bins.Redis, []string{conf, "--sentinel"})
	if err := startRedisProc(ctx, t.Sentinel, t.sentinelPt); err != nil {
		return err
	}
	sc := goredis.NewSentinelClient(&goredis.Options{Addr: fmt.Sprintf("127.0.0.1:%d", t.sentinelPt), DisableIdentity: true})
	defer sc.Close()
	if err := localproc.Poll(ctx, func(ctx context.Context) error {
		m, err := sc.Master(ctx, "samlha").Result()
		if err != nil {
			return err
		}
		if n, _ := strconv.Atoi(m["num-slaves"]); n < 1 {
			return errors.New("the Sentinel knows no replica yet")
		}
		return nil
	}); err != nil {
		return fmt.Errorf("sentinel: %w", err)
	}
	t.StoreURL = fmt.Sprintf("redis-sentinel://127.0.0.1:%d/samlha?timeout=300ms&dial_timeout=300ms", t.sentinelPt)
	return nil
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

// admin sends a request to the proxy's admin API, with its token.
func (t *Topology) admin(ctx context.Context, method, path string) (*http.Response, error) {
	if t.AdminURL == "" {
		return nil, errNoAdmin
	}
	req, err := http.NewRequestWithContext(ctx, method, t.AdminURL+path, nil)
	if err != nil {
		return nil, err
	}
	if t.AdminToken != "" {
		req.Header.Set("Authorization", "Bearer "+t.AdminToken)
	}
	return http.DefaultClient.Do(req)
}

// Targets asks the proxy's admin API for its targets.
func (t *Topology) Targets(ctx context.Context) ([]stickyproxy.TargetStatus, error) {
	resp, err := t.admin(ctx, "GET", "/targets")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
		return nil, fmt.Errorf("proxy admin /targets: %s: %s", resp.Status, strings.TrimSpace(string(b)))
	}
	var ts []stickyproxy.TargetStatus
	if err := json.NewDecoder(resp.Body).Decode(&ts); err != nil {
		return nil, fmt.Errorf("proxy admin /targets (%s): %w", resp.Status, err)
	}
	return ts, nil
}

// WaitHealthy waits until the proxy's health checks see every one of ids
// healthy.
func (t *Topology) WaitHealthy(ctx context.Context, ids ...string) error {
	if t.AdminURL == "" {
		// nginx (the forward-auth front) has no health checks to wait
		// for: it marks a replica down when a request to it fails.
		return nil
	}
	var last string
	err := localproc.Poll(ctx, func(ctx context.Context) error {
		ts, err := t.Targets(ctx)
		if err != nil {
			last = err.Error()
			return err
		}
		healthy := map[string]bool{}
		for _, s := range ts {
			healthy[s.Name] = s.Healthy
		}
		var down []string
		for _, id := range ids {
			if !healthy[id] {
				down = append(down, id)
			}
		}
		if len(down) > 0 {
			last = "not healthy yet: " + strings.Join(down, ", ")
			return errors.New(last)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("the proxy does not see %s healthy (%s): %w", strings.Join(ids, ", "), last, err)
	}
	return nil
}

// Replica returns the replica (started or spare) with the given ID.
func (t *Topology) Replica(id string) (*Replica, error) {
	for _, r := range append(append([]*Replica{}, t.Replicas...), t.Spares...) {
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

// RestartReplica stops a replica as a deploy does (SIGTERM: it finishes
// what it has within its shutdown grace, then exits), starts it again on
// its port, waits until it is ready and until the proxy's health checks let
// it back into rotation.
func (t *Topology) RestartReplica(ctx context.Context, id string) error {
	r, err := t.Replica(id)
	if err != nil {
		return err
	}
	r.Proc.Stop(SPShutdownGrace + stopGrace)
	if err := r.Proc.Start(); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	if err := t.replicaReady(ctx, r); err != nil {
		return err
	}
	return t.WaitHealthy(ctx, id)
}

// StartSpare starts a spare replica (scale out) and waits until the proxy
// sees it healthy.
func (t *Topology) StartSpare(ctx context.Context, id string) error {
	for i, r := range t.Spares {
		if r.ID != id {
			continue
		}
		if err := r.Proc.Start(); err != nil {
			return err
		}
		ctx, cancel := context.WithTimeout(ctx, readyTimeout)
		defer cancel()
		if err := t.replicaReady(ctx, r); err != nil {
			return err
		}
		t.Replicas = append(t.Replicas, r)
		t.Spares = append(t.Spares[:i:i], t.Spares[i+1:]...)
		return t.WaitHealthy(ctx, id)
	}
	return fmt.Errorf("no spare replica %q", id)
}

// DrainReplica drains a replica through the proxy's admin API.
func (t *Topology) DrainReplica(ctx context.Context, id string) error {
	resp, err := t.admin(ctx, "POST", "/targets/"+url.PathEscape(id)+"/drain")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
		return fmt.Errorf("drain %s: %s: %s", id, resp.Status, strings.TrimSpace(string(b)))
	}
	return nil
}

// StopRedis kills the private redis-server (the master, with Sentinel).
func (t *Topology) StopRedis() error {
	if t.Redis == nil {
		return errors.New("this topology has no private redis-server to stop")
	}
	t.Redis.Kill()
	return nil
}

// StartRedis (re)starts the private redis-server on its port and waits
// until it answers as itself (its process_id); with AOF, until it has
// loaded its data.
func (t *Topology) StartRedis(ctx context.Context) error {
	if t.Redis == nil {
		return errors.New("this topology has no private redis-server")
	}
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	return startRedisProc(ctx, t.Redis, t.redisPort)
}

// startRedisProc starts a redis-server (or Sentinel) process on port and
// waits until it answers PING as itself (its process_id).
func startRedisProc(ctx context.Context, p *localproc.Proc, port int) error {
	if err := p.Start(); err != nil {
		return err
	}
	return localproc.Ready(ctx, p, []int{port}, localproc.RedisProbe(p, &goredis.Options{Addr: fmt.Sprintf("127.0.0.1:%d", port)}))
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
		go func() { defer wg.Done(); p.Stop(stopGrace) }()
	}
	stop(t.Proxy)
	wg.Wait()
	stop(t.App)
	for _, r := range append(append([]*Replica{}, t.Replicas...), t.Spares...) {
		stop(r.Proc)
	}
	stop(t.IdP)
	wg.Wait()
	stop(t.Sentinel)
	stop(t.RedisReplica)
	stop(t.Redis)
	wg.Wait()
}

// Crashed names the processes of the topology that are not running and
// should be (a crash the lab did not cause), with the end of each log.
// expected names the targets of the scenario's faults ("sp-2", "redis",
// "redis master", "every replica"), whose processes may be down.
func (t *Topology) Crashed(expected map[string]bool) []string {
	var out []string
	check := func(p *Proc, target string) {
		if p != nil && p.Exited() != nil && !p.Running() && !expected[target] {
			out = append(out, fmt.Sprintf("%s exited (%v); end of its log:\n%s", p.Name, p.ExitErr(), p.LogTail(1500)))
		}
	}
	check(t.IdP, "idp")
	check(t.Proxy, "proxy")
	check(t.App, "app")
	for _, r := range t.Replicas {
		check(r.Proc, r.ID)
	}
	if !expected["redis master"] {
		check(t.Redis, "redis")
	}
	check(t.RedisReplica, "redis replica")
	check(t.Sentinel, "sentinel")
	return out
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
	add(t.App)
	add(t.Redis)
	add(t.RedisReplica)
	add(t.Sentinel)
	for _, r := range append(append([]*Replica{}, t.Replicas...), t.Spares...) {
		add(r.Proc)
	}
	return m
}
