package sp_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/samlha/samlha/sp"
	"github.com/samlha/samlha/sp/devidp"
	"github.com/samlha/samlha/sp/failure"
	"github.com/samlha/samlha/sp/login"
	"github.com/samlha/samlha/sp/respond"
	"github.com/samlha/samlha/sp/sptest"
	"github.com/samlha/samlha/sp/sptest/devidptest"
	"github.com/samlha/samlha/store"
	"github.com/samlha/samlha/store/redis/redistest"
)

// Bounds of TestFaultLoad. Each phase waits for a condition (so many logins
// done, a replica ready), never for a fixed time; faultBudget bounds the
// whole run, faultMaxLogins the logins started, faultWorkers those at once.
const (
	faultWorkers   = 4
	faultMaxLogins = 400
	faultBudget    = 90 * time.Second
	// faultPhaseLogins is how many logins must succeed in each calm phase
	// (before the faults, with a replica down, after it is back, after
	// Redis is back), and faultOutageFailures how many must fail with
	// store-unavailable while Redis is down, so each fault is exercised.
	faultPhaseLogins    = 5
	faultOutageFailures = 3
	// causeUpstreamCut is what the test balancer answers, with 503 and
	// Retry-After, when a replica's connection is cut mid-request (the
	// replica was killed while serving it) or no replica takes it.
	causeUpstreamCut = "upstream-unavailable"
)

// TestFaultLoad drives concurrent logins through three SP replicas sharing a
// real Redis while one replica is killed and started again, and then Redis
// is restarted. Logins that ran wholly outside the two outage windows must
// all succeed; a login that overlapped one may fail only with a clean 503
// that names its cause and carries Retry-After. No handler panics, and once
// everything is shut down no goroutine and no connection is left (the
// Redis server counts its clients; the process counts its descriptors).
//
// Redis runs with an append-only file, as a store holding logins in flight
// should: a restart then loses nothing, so a login begun before the outage
// finishes after it.
//
// The test is not parallel: its leak checks look at the whole process.
func TestFaultLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("fault load test: skipped with -short")
	}
	if _, err := exec.LookPath("redis-server"); err != nil {
		// Redis is restarted: a shared REDIS_URL server will not do.
		if os.Getenv("CI") == "true" {
			t.Fatal("fault load test: redis-server is not on PATH (CI=true: install it)")
		}
		t.Skip("fault load test: needs redis-server on PATH, to restart a private one")
	}
	ctx, cancel := context.WithTimeout(t.Context(), faultBudget)
	defer cancel()

	// An append-only file, synced every second and in full on a graceful
	// shutdown, so a restart keeps the logins in flight.
	srv := redistest.Start(t, redistest.WithArgs("--appendonly", "yes", "--appendfsync", "everysec"))
	logw := devidptest.LogWriter(t)
	quiet := func(attrs ...any) *slog.Logger {
		return slog.New(slog.NewTextHandler(logw, &slog.HandlerOptions{Level: slog.LevelWarn})).With(attrs...)
	}
	idp := devidptest.Start(t, devidp.Config{Logger: quiet("test_idp", true)})
	raw := srv.Client()
	if err := raw.Ping(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	// What is running now (the test runner, Redis, the IdP) is the
	// baseline of the leak checks.
	baseGoroutines := goleak.IgnoreCurrent()
	baseFDs := openFDs(t)

	lb := newFaultBalancer(t)
	root, _ := url.Parse(lb.url)
	panics := &panicLog{}
	// Timeouts of 2s (the SP's default) rather than the store's 500ms: a
	// loaded test machine should not pass for an outage.
	storeURL, _ := url.Parse(srv.URL())
	storeURL.RawQuery = url.Values{"timeout": {"2s"}}.Encode()
	cl := &cluster{t: t, ctx: ctx, storeURL: storeURL.String(), idp: idp, root: root, logger: quiet, panics: panics, lb: lb}
	for i := range 3 {
		cl.start(i)
	}
	lb.register(t, idp)

	// Logins, from faultWorkers simulated users at a time, each in a new
	// browser, until told to stop.
	tr := sptest.NewTransport(nil, nil)
	var (
		mu      sync.Mutex
		logins  []faultLogin
		started atomic.Int64
		stop    atomic.Bool
		wg      sync.WaitGroup
	)
	for w := range faultWorkers {
		wg.Go(func() {
			user := []string{"alice", "bob"}[w%2]
			for !stop.Load() && ctx.Err() == nil && started.Add(1) <= faultMaxLogins {
				b := sptest.NewBrowser(sptest.Options{Transport: tr, RequestTimeout: 10 * time.Second})
				begin := time.Now()
				res := b.Login(ctx, lb.url+"/app", user, user+"-password")
				mu.Lock()
				logins = append(logins, faultLogin{begin: begin, end: time.Now(), res: res})
				mu.Unlock()
			}
		})
	}
	// count returns how many logins that began at or after since match.
	count := func(since time.Time, match func(*sptest.Result) bool) int {
		mu.Lock()
		defer mu.Unlock()
		n := 0
		for _, l := range logins {
			if !l.begin.Before(since) && match(l.res) {
				n++
			}
		}
		return n
	}
	ok := func(r *sptest.Result) bool { return r.OK }
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		for !cond() {
			if ctx.Err() != nil || started.Load() > faultMaxLogins {
				stop.Store(true)
				wg.Wait()
				t.Fatalf("gave up waiting for %s: %d logins started, %v of the time budget used", what, started.Load(), faultBudget)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}

	// Calm.
	t0 := time.Now()
	waitFor("logins before the faults", func() bool { return count(t0, ok) >= faultPhaseLogins })

	// A login that sp-2 begins, held at the IdP's auto-POST form, is
	// finished after sp-2 is killed: its state is in Redis.
	var onSP2 *sptest.PendingForm
	var onSP2Browser *sptest.Browser
	for range 12 {
		b := sptest.NewBrowser(sptest.Options{Transport: tr, RequestTimeout: 10 * time.Second})
		pf, res, err := b.LoginUntilACS(ctx, lb.url+"/app", "alice", "alice-password")
		if err != nil {
			t.Fatalf("a login held before the ACS: %v\n%s", err, describe(res))
		}
		if res.StartInstance == "sp-2" {
			onSP2, onSP2Browser = pf, b
			break
		}
	}
	if onSP2 == nil {
		t.Fatal("12 logins through round robin, none begun on sp-2")
	}

	// A replica is killed: its listener and connections close at once,
	// requests in flight on it are cut, its store client is closed. The
	// others carry on; the logins it began finish elsewhere.
	var windows []window
	killed := window{name: "replica sp-2 killed", from: time.Now()}
	cl.kill(1)
	afterKill := time.Now()
	res := onSP2Browser.Submit(ctx, onSP2)
	if !res.OK && res.Cause == causeUpstreamCut {
		// The balancer sent the POST down a kept-alive connection to
		// sp-2 that the kill had cut; nothing reached a live replica, so
		// the browser's reload posts the form again.
		res = onSP2Browser.Submit(ctx, onSP2)
	}
	if !res.OK || res.ACSInstance == "sp-2" {
		t.Errorf("a login begun on sp-2, finished after sp-2 was killed: want success on another replica:\n%s", describe(res))
	}
	waitFor("logins with sp-2 down", func() bool { return count(afterKill, ok) >= faultPhaseLogins })
	cl.start(1) // a new process: new SP, new store client, new port
	waitFor("sp-2 to answer /readyz", func() bool { return cl.ready(1) })
	killed.to = time.Now()
	windows = append(windows, killed)
	back := time.Now()
	waitFor("a login served by the restarted sp-2", func() bool {
		return count(back, func(r *sptest.Result) bool {
			return r.OK && (r.StartInstance == "sp-2" || r.ACSInstance == "sp-2" || r.FinishInstance == "sp-2")
		}) >= 1
	})
	waitFor("logins after sp-2 is back", func() bool { return count(back, ok) >= faultPhaseLogins })

	// Redis is restarted: stopped, logins fail with store-unavailable,
	// started again on the same port with its data, replicas ready again.
	// A login held at the IdP across the restart then finishes.
	held := sptest.NewBrowser(sptest.Options{Transport: tr, RequestTimeout: 10 * time.Second})
	heldForm, heldRes, err := held.LoginUntilACS(ctx, lb.url+"/app", "bob", "bob-password")
	if err != nil {
		t.Fatalf("a login held before the ACS: %v\n%s", err, describe(heldRes))
	}
	outage := window{name: "Redis restarted", from: time.Now()}
	srv.Stop()
	down := time.Now()
	waitFor("logins refused while Redis is down", func() bool {
		return count(down, func(r *sptest.Result) bool { return r.Cause == string(failure.CauseStoreUnavailable) }) >= faultOutageFailures
	})
	srv.Restart()
	// Back means every replica answers a burst of concurrent readiness
	// checks, not one: after failed dials go-redis fails new dials fast,
	// with the old error, until its background probe (once a second)
	// gets through, so one check can pass on the single connection
	// already made while the rest of the replica's traffic still fails.
	waitFor("every replica to answer concurrent /readyz after Redis restarted", func() bool {
		return cl.readyBurst(0) && cl.readyBurst(1) && cl.readyBurst(2)
	})
	outage.to = time.Now()
	windows = append(windows, outage)
	recovered := time.Now()
	if res := held.Submit(ctx, heldForm); !res.OK {
		t.Errorf("a login begun before Redis restarted, finished after: want success (the append-only file keeps its state):\n%s", describe(res))
	}
	waitFor("logins after Redis is back", func() bool { return count(recovered, ok) >= faultPhaseLogins })

	stop.Store(true)
	wg.Wait()
	if ctx.Err() != nil {
		t.Fatalf("the time budget of %v ran out", faultBudget)
	}

	// Judge every login.
	var succeeded int
	refused := map[string]int{}
	for i, l := range logins {
		in := l.within(windows)
		switch {
		case l.res.OK:
			succeeded++
		case in == "":
			t.Errorf("login %d (%s to %s) failed outside every outage window:\n%s",
				i, l.begin.Format("15:04:05.000"), l.end.Format("15:04:05.000"), describe(l.res))
		default:
			if err := cleanRefusal(l.res); err != nil {
				t.Errorf("login %d overlapped %q and failed uncleanly: %v\n%s", i, in, err, describe(l.res))
			}
			refused[l.res.Cause]++
		}
	}
	for _, w := range windows {
		t.Logf("window %q: %s to %s", w.name, w.from.Format("15:04:05.000"), w.to.Format("15:04:05.000"))
	}
	t.Logf("%d logins: %d succeeded; refused inside an outage window, by cause: %v", len(logins), succeeded, refused)
	if p := panics.String(); p != "" {
		t.Errorf("a replica's handler panicked:\n%s", p)
	}

	// Shut everything down and look for what is left.
	for i := range 3 {
		cl.kill(i)
	}
	lb.close()
	tr.CloseIdleConnections()
	http.DefaultClient.CloseIdleConnections()
	waitCond(t, "Redis to see only the test's own client", 10*time.Second, func() (bool, string) {
		list, err := raw.ClientList(context.Background()).Result()
		if err != nil {
			return false, err.Error()
		}
		n := strings.Count(strings.TrimSpace(list), "\n") + 1
		return n == 1, fmt.Sprintf("%d clients connected:\n%s", n, list)
	})
	waitCond(t, "open file descriptors back to the baseline", 10*time.Second, func() (bool, string) {
		n := openFDs(t)
		return n <= baseFDs, fmt.Sprintf("%d descriptors open, %d before the replicas started", n, baseFDs)
	})
	leakOpts := []goleak.Option{baseGoroutines,
		// The restarted redis-server is a new child process: its waiter
		// and output copier live until the test's cleanup stops it.
		goleak.IgnoreAnyFunction("github.com/samlha/samlha/store/localproc.(*Proc).Start.func1"),
		goleak.IgnoreAnyFunction("os/exec.(*Cmd).writerDescriptor.func1"),
	}
	// Servers end a connection's goroutine once they read its close;
	// goleak's own retries last about half a second, too short for a
	// loaded machine.
	waitCond(t, "every goroutine started since the baseline to end", 10*time.Second, func() (bool, string) {
		err := goleak.Find(leakOpts...)
		return err == nil, fmt.Sprint(err)
	})
}

// faultLogin is one login of TestFaultLoad.
type faultLogin struct {
	begin, end time.Time
	res        *sptest.Result
}

// window is a time span during which a fault was in force.
type window struct {
	name     string
	from, to time.Time
}

// within returns the name of the first window l overlaps, or "".
func (l faultLogin) within(ws []window) string {
	for _, w := range ws {
		if l.begin.Before(w.to) && l.end.After(w.from) {
			return w.name
		}
	}
	return ""
}

// cleanRefusal checks that a failed login ended on a 503 that names its
// cause (the SP's store-unavailable, or the balancer's upstream-unavailable
// for a request cut by a kill) and says when to retry.
func cleanRefusal(r *sptest.Result) error {
	if len(r.Hops) == 0 || r.Final == nil {
		return fmt.Errorf("no response: %v", r.Err)
	}
	last := r.Hops[len(r.Hops)-1]
	if last.Status != http.StatusServiceUnavailable {
		return fmt.Errorf("last hop answered %d, want 503", last.Status)
	}
	if last.Cause != string(failure.CauseStoreUnavailable) && last.Cause != causeUpstreamCut {
		return fmt.Errorf("503 with cause %q, want %q or %q", last.Cause, failure.CauseStoreUnavailable, causeUpstreamCut)
	}
	if s, err := strconv.Atoi(r.Final.Header.Get("Retry-After")); err != nil || s <= 0 {
		return fmt.Errorf("503 with Retry-After %q, want a positive number of seconds", r.Final.Header.Get("Retry-After"))
	}
	return nil
}

// cluster is TestFaultLoad's three replicas, each an SP with its own Redis
// client on its own HTTP server, as separate processes would be.
type cluster struct {
	t         *testing.T
	ctx       context.Context
	storeURL  string
	idp       *devidptest.IdP
	root      *url.URL
	logger    func(attrs ...any) *slog.Logger
	panics    *panicLog
	lb        *faultBalancer
	mu        sync.Mutex
	replicas  [3]*faultReplica
	readyHTTP http.Client
}

type faultReplica struct {
	url   string
	srv   *http.Server
	store store.Store
	done  chan struct{}
}

// start starts replica i (sp-<i+1>) on a new port and points the balancer
// at it.
func (c *cluster) start(i int) {
	c.t.Helper()
	id := fmt.Sprintf("sp-%d", i+1)
	st, err := store.Open(c.ctx, c.storeURL, c.logger("test_replica", id))
	if err != nil {
		c.t.Fatalf("%s: open store: %v", id, err)
	}
	key, cert := spKeyPair(c.t)
	s, err := sp.New(sp.Config{
		InstanceID: id, RootURL: c.root, Store: st, Key: key, Certificate: cert,
		IDP: &login.IDPMetadata{Static: c.idp.Metadata()}, StoreTimeout: 2 * time.Second,
		Logger: c.logger("test_replica", id),
	})
	if err != nil {
		c.t.Fatalf("sp.New(%s): %v", id, err)
	}
	if err := s.LoadIDPMetadata(c.ctx); err != nil {
		c.t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		c.t.Fatal(err)
	}
	r := &faultReplica{url: "http://" + ln.Addr().String(), store: st, done: make(chan struct{}),
		srv: &http.Server{Handler: s, ReadHeaderTimeout: 10 * time.Second,
			ErrorLog: log.New(io.MultiWriter(c.panics, slogWriter{c.logger("test_replica", id)}), "", 0)}}
	go func() {
		defer close(r.done)
		_ = r.srv.Serve(ln)
	}()
	c.mu.Lock()
	c.replicas[i] = r
	c.mu.Unlock()
	u, _ := url.Parse(r.url)
	c.lb.targets[i].Store(u)
}

// kill stops replica i as a crash would: its listener and every connection
// close at once (requests in flight are cut), then its store client.
func (c *cluster) kill(i int) {
	c.mu.Lock()
	r := c.replicas[i]
	c.replicas[i] = nil
	c.mu.Unlock()
	if r == nil {
		return
	}
	r.srv.Close()
	<-r.done
	r.store.Close()
}

// ready reports whether replica i answers /readyz with 200.
func (c *cluster) ready(i int) bool {
	c.mu.Lock()
	r := c.replicas[i]
	c.mu.Unlock()
	if r == nil {
		return false
	}
	ctx, cancel := context.WithTimeout(c.ctx, 2*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, r.url+"/readyz", nil)
	resp, err := c.readyHTTP.Do(req)
	if err != nil {
		return false
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// readyBurst reports whether replica i answers faultWorkers+2 concurrent
// /readyz checks with 200: more store calls at once than the workers make,
// so the replica's Redis client must be able to open new connections.
func (c *cluster) readyBurst(i int) bool {
	var fails atomic.Int32
	var wg sync.WaitGroup
	for range faultWorkers + 2 {
		wg.Go(func() {
			if !c.ready(i) {
				fails.Add(1)
			}
		})
	}
	wg.Wait()
	return fails.Load() == 0
}

// faultBalancer is the balancer in front of the replicas: round robin; a
// replica that refuses the connection is skipped (nothing was sent, so
// even a POST goes to the next one, as nginx's proxy_next_upstream error
// and HAProxy's retry-on conn-failure do); a request whose connection is
// cut after it was sent is answered 503 upstream-unavailable with
// Retry-After.
type faultBalancer struct {
	url     string
	targets [3]atomic.Pointer[url.URL]
	next    atomic.Int64
	tr      *http.Transport
	srv     *http.Server
	done    chan struct{}
}

func newFaultBalancer(t *testing.T) *faultBalancer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	lb := &faultBalancer{url: "http://" + ln.Addr().String(), done: make(chan struct{}),
		tr: &http.Transport{MaxIdleConnsPerHost: faultWorkers * 2, IdleConnTimeout: 30 * time.Second}}
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.Out.URL.Scheme, pr.Out.URL.Host = "http", "replica" // chosen in RoundTrip
			pr.Out.Host = pr.In.Host
		},
		Transport: roundTripFunc(lb.roundTrip),
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			w.Header().Set("Retry-After", "1")
			w.Header().Set(respond.HeaderCause, causeUpstreamCut)
			http.Error(w, "replica unreachable: "+err.Error(), http.StatusServiceUnavailable)
		},
		ErrorLog: log.New(io.Discard, "", 0),
	}
	lb.srv = &http.Server{Handler: rp, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		defer close(lb.done)
		_ = lb.srv.Serve(ln)
	}()
	return lb
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func (lb *faultBalancer) roundTrip(r *http.Request) (*http.Response, error) {
	var body []byte
	if r.Body != nil {
		b, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		r.Body.Close()
		if err != nil {
			return nil, err
		}
		body = b
	}
	first := int(lb.next.Add(1) - 1)
	var err error
	for k := range len(lb.targets) {
		u := lb.targets[(first+k)%len(lb.targets)].Load()
		out := r.Clone(r.Context())
		out.URL.Scheme, out.URL.Host = u.Scheme, u.Host
		out.Body, out.ContentLength = http.NoBody, 0
		if len(body) > 0 {
			out.Body, out.ContentLength = io.NopCloser(bytes.NewReader(body)), int64(len(body))
			out.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
		}
		var resp *http.Response
		resp, err = lb.tr.RoundTrip(out)
		var op *net.OpError
		if err != nil && errors.As(err, &op) && op.Op == "dial" {
			continue // refused: nothing was sent; try the next replica
		}
		return resp, err
	}
	return nil, err
}

// register gives the IdP the SP's metadata, fetched through the balancer.
func (lb *faultBalancer) register(t *testing.T, idp *devidptest.IdP) {
	t.Helper()
	resp, err := http.Get(lb.url + "/saml/metadata")
	if err != nil {
		t.Fatal(err)
	}
	md, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("SP metadata: HTTP %d", resp.StatusCode)
	}
	if err := idp.RegisterSPMetadata("samlha", md); err != nil {
		t.Fatal(err)
	}
}

func (lb *faultBalancer) close() {
	lb.srv.Close()
	<-lb.done
	lb.tr.CloseIdleConnections()
}

// panicLog collects what net/http logs about handler panics.
type panicLog struct {
	mu  sync.Mutex
	buf strings.Builder
}

func (p *panicLog) Write(b []byte) (int, error) {
	if bytes.Contains(b, []byte("panic")) {
		p.mu.Lock()
		p.buf.Write(b)
		p.mu.Unlock()
	}
	return len(b), nil
}

func (p *panicLog) String() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.buf.String()
}

// slogWriter sends the HTTP server's own log lines to a structured logger.
type slogWriter struct{ l *slog.Logger }

func (w slogWriter) Write(b []byte) (int, error) {
	w.l.Warn(strings.TrimSpace(string(b)))
	return len(b), nil
}

// openFDs counts the process's open file descriptors (Linux), or skips the
// test where /proc is not there.
func openFDs(t *testing.T) int {
	t.Helper()
	if runtime.GOOS != "linux" {
		t.Skip("fault load test: counts descriptors in /proc/self/fd (Linux only)")
	}
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatalf("count descriptors: %v", err)
	}
	return len(ents)
}

// waitCond waits until cond holds, failing with its last description after
// timeout.
func waitCond(t *testing.T, what string, timeout time.Duration, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, desc := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: still not so after %v: %s", what, timeout, desc)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
