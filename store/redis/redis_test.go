package redis_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/samlha/samlha/store"
	"github.com/samlha/samlha/store/redis"
	"github.com/samlha/samlha/store/redis/redistest"
	"github.com/samlha/samlha/store/storetest"
)

func TestMain(m *testing.M) {
	// go-redis logs dial failures itself; the outage tests cause many.
	redis.SetLibraryLogger(slog.New(slog.DiscardHandler))
	os.Exit(m.Run())
}

// password is the password of the servers that have one. The tests check
// that it never appears in an error.
const password = "pw-6f1c2e-must-not-leak"

// open opens the store at url through store.Open, closing it when the test
// ends.
func open(t testing.TB, url string) store.Store {
	t.Helper()
	s, err := store.Open(t.Context(), url, nil)
	if err != nil {
		t.Fatalf("store.Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// opener returns an open function for storetest.Run on the store at url.
func opener(url string) func(t *testing.T) store.Store {
	return func(t *testing.T) store.Store { return open(t, url) }
}

// with adds query parameters to url.
func with(url, params string) string {
	if strings.Contains(url, "?") {
		return url + "&" + params
	}
	return url + "?" + params
}

// suiteParams keep a loaded test machine (the race detector, parallel
// subtests, 64 goroutines at once) from turning slowness into failures;
// the outage tests check the timeout itself.
const suiteParams = "timeout=5s&pool_size=64"

func TestConformance(t *testing.T) {
	srv := redistest.Start(t)
	storetest.Run(t, opener(with(srv.URL(), suiteParams)))
}

func TestConformanceWithPassword(t *testing.T) {
	srv := redistest.Start(t, redistest.WithPassword(password))
	storetest.Run(t, opener(with(srv.URL(), suiteParams+"&prefix=")))
}

func TestConformanceCluster(t *testing.T) {
	c := redistest.StartCluster(t, 3)
	storetest.Run(t, opener(with(c.URL(), suiteParams)))
}

// TestConformanceClusterTLS: a Cluster whose nodes speak TLS only (the
// cluster bus and replication too), through redis-cluster://...?tls=true
// with the CA: go-redis dials every node the slot map names with the
// URL's TLS settings.
func TestConformanceClusterTLS(t *testing.T) {
	c := redistest.StartCluster(t, 3, redistest.WithTLS())
	if !strings.Contains(c.URL(), "tls=true") {
		t.Fatalf("cluster URL %q has no tls=true", c.URL())
	}
	storetest.Run(t, opener(with(c.URL(), suiteParams)))
}

func TestConformanceSentinel(t *testing.T) {
	master := redistest.Start(t, redistest.WithPassword(password))
	sentinel := redistest.StartSentinel(t, master, "samlha-master")
	storetest.Run(t, opener(with(sentinel.URL(), suiteParams)))
}

// calls returns one call of each method that reaches the server.
func calls(s store.Store) []struct {
	name string
	do   func(ctx context.Context) error
} {
	v := []byte("v")
	return []struct {
		name string
		do   func(ctx context.Context) error
	}{
		{"Put", func(ctx context.Context) error { return s.Put(ctx, "k", v, time.Minute) }},
		{"PutIfAbsent", func(ctx context.Context) error { return s.PutIfAbsent(ctx, "k2", v, time.Minute) }},
		{"Get", func(ctx context.Context) error { _, err := s.Get(ctx, "k"); return err }},
		{"Swap", func(ctx context.Context) error { _, err := s.Swap(ctx, "k", v, time.Minute); return err }},
		{"Delete", func(ctx context.Context) error { return s.Delete(ctx, "k") }},
		{"PutBatch", func(ctx context.Context) error {
			// Both results must say the same.
			errs := s.PutBatch(ctx, []store.Write{{Key: "a", Value: v, TTL: time.Minute}, {Key: "b", Value: v, TTL: time.Minute, IfAbsent: true}})
			if len(errs) != 2 || fmt.Sprint(errs[0]) != fmt.Sprint(errs[1]) {
				return fmt.Errorf("PutBatch of 2 writes returned differing results %v", errs)
			}
			return errs[1]
		}},
		{"Ping", func(ctx context.Context) error { return s.Ping(ctx) }},
	}
}

// wantUnavailable checks that err says the store is unavailable, and
// nothing about the data, within bound, without the password.
func wantUnavailable(t *testing.T, what string, err error, took, bound time.Duration) {
	t.Helper()
	t.Logf("%s: %v after %v", what, err, took.Round(time.Millisecond))
	switch {
	case !errors.Is(err, store.ErrUnavailable):
		t.Errorf("%s: %v, want an error matching ErrUnavailable", what, err)
	case errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrExists):
		t.Errorf("%s: %v also matches ErrNotFound or ErrExists", what, err)
	case errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled):
		t.Errorf("%s: %v matches a context error, though the caller's context is live", what, err)
	case strings.Contains(err.Error(), password):
		t.Errorf("%s: error %q contains the password", what, err)
	case took > bound:
		t.Errorf("%s: took %v, more than %v", what, took, bound)
	}
}

// waitPing waits until s answers Ping, after an outage.
func waitPing(t *testing.T, s store.Store) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := s.Ping(t.Context())
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("Ping still fails 10s after the server came back: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestStoppedServerIsUnavailable(t *testing.T) {
	t.Parallel()
	const timeout = 250 * time.Millisecond
	srv := redistest.Start(t, redistest.WithPassword(password))
	s := open(t, with(srv.URL(), "timeout="+timeout.String()))
	if err := s.Put(t.Context(), "k", []byte("v"), time.Minute); err != nil {
		t.Fatalf("Put before the outage: %v", err)
	}
	srv.Stop()
	// Bounded by the timeout, with room for a loaded machine.
	bound := timeout + 1500*time.Millisecond
	for _, c := range calls(s) {
		start := time.Now()
		err := c.do(t.Context())
		wantUnavailable(t, c.name+" with the server stopped", err, time.Since(start), bound)
	}
	srv.Restart()
	// Recovery, as README promises it: every operation works again within
	// about a second. (Not "at once": the failed dials of the outage trip
	// go-redis's dial circuit breaker, which lets dials through again only
	// when its once-a-second probe gets one through, so a call right after
	// a successful one can still get the breaker's stored error.)
	recovered := time.Now().Add(2500 * time.Millisecond)
	for _, c := range calls(s) {
		for {
			err := c.do(t.Context())
			if err == nil || errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrExists) {
				break
			}
			if time.Now().After(recovered) {
				t.Fatalf("%s still fails 2.5s after the server came back: %v", c.name, err)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

func TestHungServerTimesOut(t *testing.T) {
	t.Parallel()
	const timeout = 250 * time.Millisecond
	srv := redistest.Start(t, redistest.WithPassword(password))
	s := open(t, with(srv.URL(), "timeout="+timeout.String()))
	srv.Pause()
	t.Cleanup(srv.Resume)
	bound := timeout + 1500*time.Millisecond
	for _, c := range calls(s) {
		start := time.Now()
		err := c.do(t.Context())
		took := time.Since(start)
		wantUnavailable(t, c.name+" with the server hung", err, took, bound)
		if err != nil && !strings.Contains(err.Error(), "timeout") {
			t.Errorf("%s with the server hung: %q does not say it timed out", c.name, err)
		}
	}
	srv.Resume()
	waitPing(t, s)
}

func TestCallerDeadlineIsTheCallers(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	s := open(t, with(srv.URL(), "timeout=10s"))
	srv.Pause()
	t.Cleanup(srv.Resume)
	for _, c := range calls(s) {
		ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
		start := time.Now()
		err := c.do(ctx)
		took := time.Since(start)
		cancel()
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("%s past the caller's deadline: %v, want an error matching context.DeadlineExceeded", c.name, err)
		}
		if errors.Is(err, store.ErrNotFound) {
			t.Errorf("%s past the caller's deadline: %v matches ErrNotFound", c.name, err)
		}
		if took > 5*time.Second {
			t.Errorf("%s past the caller's 50ms deadline took %v", c.name, took)
		}
	}
}

func TestOpenVerifies(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t, redistest.WithPassword(password))
	url := with(srv.URL(), "timeout=200ms&dial_timeout=200ms")
	srv.Stop()

	start := time.Now()
	_, err := store.Open(t.Context(), url, nil)
	took := time.Since(start)
	switch {
	case err == nil:
		t.Fatal("store.Open with the server stopped succeeded; want it to fail")
	case strings.Contains(err.Error(), password):
		t.Fatalf("store.Open error %q contains the password", err)
	case !strings.Contains(err.Error(), store.Redact(url)):
		t.Fatalf("store.Open error %q does not name the URL %q", err, store.Redact(url))
	case !strings.Contains(err.Error(), "verify=false"):
		t.Fatalf("store.Open error %q does not say how to start without the check", err)
	case !errors.Is(err, store.ErrUnavailable):
		t.Fatalf("store.Open error %v does not match ErrUnavailable", err)
	case took > 2*time.Second:
		t.Fatalf("store.Open with the server stopped took %v", took)
	}

	// redis.Open says the same.
	if _, err := redis.Open(t.Context(), url, nil); err == nil || strings.Contains(err.Error(), password) ||
		!strings.Contains(err.Error(), store.Redact(url)) {
		t.Fatalf("redis.Open with the server stopped: %v; want an error naming the URL without its password", err)
	}

	// verify=false starts anyway, and the store reports itself unavailable.
	s := open(t, with(url, "verify=false"))
	start = time.Now()
	err = s.Ping(t.Context())
	wantUnavailable(t, "Ping of a store opened with verify=false", err, time.Since(start), 2*time.Second)
	srv.Restart()
	waitPing(t, s)
}

func TestWrongPassword(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t, redistest.WithPassword("the-right-one"))
	url := "redis://:" + password + "@" + srv.Addr()
	_, err := store.Open(t.Context(), url, nil)
	if err == nil || strings.Contains(err.Error(), password) || !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("store.Open with a wrong password: %v; want an unavailable error without the password", err)
	}
	s := open(t, with(url, "verify=false"))
	start := time.Now()
	_, err = s.Get(t.Context(), "k")
	wantUnavailable(t, "Get with a wrong password", err, time.Since(start), 2*time.Second)
}

func TestReadOnlyReplicaIsUnavailable(t *testing.T) {
	t.Parallel()
	master := redistest.Start(t)
	host, port, _ := strings.Cut(master.Addr(), ":")
	replica := redistest.Start(t, redistest.WithArgs("--replicaof", host, port))
	s := open(t, with(replica.URL(), "verify=false"))
	err := s.Put(t.Context(), "k", []byte("v"), time.Minute)
	wantUnavailable(t, "Put to a read-only replica", err, 0, time.Hour)
	if err != nil && !strings.Contains(err.Error(), "READONLY") {
		t.Errorf("Put to a read-only replica: %q does not carry the server's READONLY", err)
	}
	err = s.Ping(t.Context())
	wantUnavailable(t, "Ping of a read-only replica", err, 0, time.Hour)
}

func TestOutOfMemoryIsFull(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t, redistest.WithArgs("--maxmemory", "4mb", "--maxmemory-policy", "noeviction"))
	s := open(t, srv.URL())
	value := make([]byte, 512<<10)
	const maxWrites = 64 // 32 MiB: far past the limit
	for i := range maxWrites {
		err := s.Put(t.Context(), fmt.Sprint("k", i), value, time.Minute)
		if err == nil {
			continue
		}
		if !errors.Is(err, store.ErrFull) || store.IsUnavailable(err) {
			t.Fatalf("Put %d into a server at its maxmemory: %v, want ErrFull (and not ErrUnavailable)", i, err)
		}
		// Existing keys can still be swapped and deleted.
		if _, err := s.Swap(t.Context(), "k0", []byte("tombstone"), time.Minute); err != nil {
			t.Fatalf("Swap in a full server: %v", err)
		}
		if err := s.Delete(t.Context(), "k0"); err != nil {
			t.Fatalf("Delete in a full server: %v", err)
		}
		return
	}
	t.Fatalf("%d writes of %d bytes into a 4mb server all succeeded", maxWrites, len(value))
}

func TestKeysAndTTLOnTheServer(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	raw := srv.Client()
	ctx := t.Context()
	tests := []struct {
		url, key, rawKey string
	}{
		{srv.URL(), "k", "samlha:k"},
		{with(srv.URL(), "prefix=app%3A"), "k", "app:k"},
		{with(srv.URL(), "prefix="), "{k}", "{k}"},
	}
	for _, tc := range tests {
		s := open(t, tc.url)
		if err := s.Put(ctx, tc.key, []byte("v"), time.Minute); err != nil {
			t.Fatalf("Put: %v", err)
		}
		pttl, err := raw.PTTL(ctx, tc.rawKey).Result()
		if err != nil || pttl <= time.Minute-10*time.Second || pttl > time.Minute {
			t.Fatalf("%s: PTTL %q = %v, %v; want the key under its prefix, with a TTL of about a minute", store.Redact(tc.url), tc.rawKey, pttl, err)
		}
	}
	// A TTL under a millisecond is one millisecond, not zero (which Redis
	// would refuse) and not forever.
	s := open(t, srv.URL())
	if err := s.Put(ctx, "tiny", []byte("v"), time.Nanosecond); err != nil {
		t.Fatalf("Put with a TTL of 1ns: %v", err)
	}
	if pttl, err := raw.PTTL(ctx, "samlha:tiny").Result(); err != nil || pttl > time.Millisecond {
		t.Fatalf("PTTL after Put with a TTL of 1ns = %v, %v; want at most 1ms (or gone)", pttl, err)
	}
}

func TestDescribe(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t, redistest.WithPassword(password))
	c := redistest.StartCluster(t, 1)
	tests := []struct{ url, kind, location string }{
		{srv.URL(), "redis", "redis://:xxxxx@" + srv.Addr()},
		{c.URL() + "?timeout=1s", "redis-cluster", c.URL() + "?timeout=1s"},
	}
	for _, tc := range tests {
		s := open(t, tc.url)
		d := s.(store.Describer)
		if d.Kind() != tc.kind || d.Location() != tc.location {
			t.Errorf("store.Open(%s): Kind() = %q, Location() = %q; want %q, %q", store.Redact(tc.url), d.Kind(), d.Location(), tc.kind, tc.location)
		}
		if !d.Shared() || !store.Shared(s) {
			t.Errorf("store.Open(%s): Shared() = %v, store.Shared = %v; want true", store.Redact(tc.url), d.Shared(), store.Shared(s))
		}
	}
}

func TestConformanceTLS(t *testing.T) {
	srv := redistest.Start(t, redistest.WithTLS(), redistest.WithPassword(password))
	storetest.Run(t, opener(with(srv.URL(), suiteParams)))
}

func TestTLSVerifiesTheServer(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t, redistest.WithTLS())
	plain := "rediss://" + srv.Addr() + "?timeout=1s"
	tests := []struct {
		name, url string
		ok        bool
	}{
		{"our CA", srv.URL(), true},
		{"system roots", plain, false},
		{"no verification", with(plain, "tls_insecure_skip_verify=true"), true},
		{"our CA, wrong name", with(srv.URL(), "tls_server_name=elsewhere.example"), false},
		{"our CA, name in the certificate", with(srv.URL(), "tls_server_name=localhost"), true},
		{"plain text to a TLS port", "redis://" + srv.Addr() + "?timeout=300ms", false},
	}
	for _, tc := range tests {
		s, err := store.Open(t.Context(), tc.url, nil)
		if tc.ok != (err == nil) {
			t.Errorf("%s: store.Open: %v; want success %v", tc.name, err, tc.ok)
		}
		if err != nil && !errors.Is(err, store.ErrUnavailable) {
			t.Errorf("%s: store.Open: %v does not match ErrUnavailable", tc.name, err)
		}
		if s != nil {
			s.Close()
		}
	}
}

func TestClusterNodeDownIsUnavailable(t *testing.T) {
	t.Parallel()
	c := redistest.StartCluster(t, 3)
	s := open(t, with(c.URL(), "timeout=300ms"))
	const nkeys = 30
	for i := range nkeys {
		if err := s.Put(t.Context(), fmt.Sprint("k", i), []byte("v"), time.Minute); err != nil {
			t.Fatalf("Put before the outage: %v", err)
		}
	}
	c.Nodes[0].Kill()
	// Keys on the live masters may still answer; a key on the dead one
	// (and, once the cluster notices, any key: CLUSTERDOWN) is
	// unavailable, never absent.
	unavailable := 0
	for i := range nkeys {
		start := time.Now()
		_, err := s.Get(t.Context(), fmt.Sprint("k", i))
		if err == nil {
			continue
		}
		unavailable++
		wantUnavailable(t, fmt.Sprintf("Get of k%d with a master down", i), err, time.Since(start), 3*time.Second)
	}
	if unavailable == 0 {
		t.Fatalf("every one of %d keys answered with a third of the slots' master down", nkeys)
	}
}

// aclPassword is the password of the least-privilege ACL user.
const aclPassword = "acl-pw-3b9d"

// leastPrivilege is the ACL rule of a Redis user that may do what the store
// does and nothing more: the commands store/README.md lists ("Redis ACL"),
// on keys and channels under the default prefix only.
var leastPrivilege = []string{"on", ">" + aclPassword, "resetkeys", "~samlha:*", "resetchannels", "&samlha:*",
	"-@all", "+get", "+set", "+del", "+mget", "+eval", "+evalsha", "+publish", "+subscribe"}

// TestConformanceLeastPrivilege runs the suite, subscriptions included, as a
// Redis ACL user with only leastPrivilege: a command the store sends that
// the list lacks, or a key or channel outside the prefix, fails the suite
// (NOPERM).
func TestConformanceLeastPrivilege(t *testing.T) {
	srv := redistest.Start(t, redistest.WithArgs(append([]string{"--user", "samlha"}, leastPrivilege...)...))
	storetest.Run(t, opener(with("redis://samlha:"+aclPassword+"@"+srv.Addr(), suiteParams)))
}

// leastPrivilegeCluster is leastPrivilege on a Cluster: sharded pub/sub,
// and the slot map go-redis reads.
var leastPrivilegeCluster = append(slices.Clone(leastPrivilege), "+spublish", "+ssubscribe", "+cluster|slots")

// TestConformanceLeastPrivilegeCluster is TestConformanceLeastPrivilege on
// a 3-master Cluster whose nodes all have the user.
func TestConformanceLeastPrivilegeCluster(t *testing.T) {
	c := redistest.StartCluster(t, 3, redistest.WithArgs(append([]string{"--user", "samlha"}, leastPrivilegeCluster...)...))
	u := strings.Replace(c.URL(), "redis-cluster://", "redis-cluster://samlha:"+aclPassword+"@", 1)
	storetest.Run(t, opener(with(u, suiteParams)))
}

// TestEvictionPolicyWarned: Open warns, naming the fix, when the server
// may evict the store's keys (a maxmemory with any policy but noeviction:
// every key has a TTL, so volatile-lru takes them too), on each master of a
// Cluster as on one server; it says nothing when eviction cannot happen,
// and a user without INFO opens as before.
func TestEvictionPolicyWarned(t *testing.T) {
	t.Parallel()
	const warning = "redis may evict samlha's state"
	for _, tc := range []struct {
		name    string
		url     func(t *testing.T) string
		warning bool
	}{
		{"allkeys-lru", func(t *testing.T) string {
			return redistest.Start(t, redistest.WithArgs("--maxmemory", "64mb", "--maxmemory-policy", "allkeys-lru")).URL()
		}, true},
		{"volatile-lru", func(t *testing.T) string {
			return redistest.Start(t, redistest.WithArgs("--maxmemory", "64mb", "--maxmemory-policy", "volatile-lru")).URL()
		}, true},
		{"noeviction", func(t *testing.T) string {
			return redistest.Start(t, redistest.WithArgs("--maxmemory", "64mb", "--maxmemory-policy", "noeviction")).URL()
		}, false},
		{"no-maxmemory", func(t *testing.T) string {
			return redistest.Start(t, redistest.WithArgs("--maxmemory-policy", "allkeys-lru")).URL()
		}, false},
		{"cluster", func(t *testing.T) string {
			return redistest.StartCluster(t, 1, redistest.WithArgs("--maxmemory", "64mb", "--maxmemory-policy", "allkeys-lfu")).URL()
		}, true},
		{"no-info-allowed", func(t *testing.T) string {
			srv := redistest.Start(t, redistest.WithArgs(append([]string{"--maxmemory", "64mb", "--maxmemory-policy", "allkeys-lru", "--user", "samlha"}, leastPrivilege...)...))
			return "redis://samlha:" + aclPassword + "@" + srv.Addr()
		}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var logs strings.Builder
			var mu sync.Mutex
			logger := slog.New(slog.NewTextHandler(lockedWriter{&mu, &logs}, &slog.HandlerOptions{Level: slog.LevelDebug}))
			s, err := store.Open(t.Context(), tc.url(t), logger)
			if err != nil {
				t.Fatalf("store.Open: %v", err)
			}
			s.Close()
			mu.Lock()
			got := logs.String()
			mu.Unlock()
			if strings.Contains(got, warning) != tc.warning {
				t.Errorf("warned: %v, want %v; the log:\n%s", !tc.warning, tc.warning, got)
			}
		})
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
