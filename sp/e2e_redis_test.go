package sp_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"testing"
	"time"

	"github.com/samlha/samlha/sp/failure"
	"github.com/samlha/samlha/sp/respond"
	"github.com/samlha/samlha/store"
	"github.com/samlha/samlha/store/redis"
	"github.com/samlha/samlha/store/redis/redistest"
)

// redisStores opens one client per replica on the server at rawURL, as
// separate processes would.
func redisStores(rawURL string) func(testing.TB, int) store.Store {
	return func(t testing.TB, _ int) store.Store {
		st, err := store.Open(context.Background(), rawURL, slog.New(slog.NewTextHandler(io.Discard, nil)))
		if err != nil {
			t.Fatalf("open %s: %v", store.Redact(rawURL), err)
		}
		t.Cleanup(func() { st.Close() })
		return st
	}
}

// whoami asks one replica, directly, who the browser's session belongs to.
func whoami(t *testing.T, top *topology, b interface {
	Cookies(*url.URL) []*http.Cookie
}, r *replica) (int, map[string]any) {
	t.Helper()
	root, _ := url.Parse(top.ProxyURL)
	req, _ := http.NewRequest("GET", r.URL+"/whoami", nil)
	for _, c := range b.Cookies(root) {
		req.AddCookie(c)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&body)
	if got := resp.Header.Get(respond.HeaderInstance); got != r.ID {
		t.Errorf("whoami on %s answered from %q", r.ID, got)
	}
	return resp.StatusCode, body
}

// Shared state: any replica finishes any login, and the session holds on
// every replica.
func TestE2ERedisRoundRobinSucceeds(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	top := startTopology(t, topologyConfig{Store: redisStores(srv.URL())})
	for i := range 6 {
		b := top.browser()
		res := top.login(t, b, "alice")
		if !res.OK {
			t.Fatalf("login %d failed:\n%s", i, describe(res))
		}
		if res.StartInstance == res.ACSInstance {
			t.Fatalf("login %d did not cross replicas:\n%s", i, describe(res))
		}
		for _, r := range top.Replicas {
			code, body := whoami(t, top, b, r)
			if code != 200 || body["user"] != "alice" {
				t.Fatalf("login %d: session does not hold on %s: %d %v", i, r.ID, code, body)
			}
			if body["login_instance"] != res.StartInstance || body["acs_instance"] != res.ACSInstance {
				t.Errorf("login %d: whoami on %s reports login %v / acs %v, browser saw %s / %s",
					i, r.ID, body["login_instance"], body["acs_instance"], res.StartInstance, res.ACSInstance)
			}
		}
	}
}

// A SAMLResponse replayed to another replica is refused: the shared state
// says it was used, and by whom.
func TestE2ERedisReplayToAnotherReplica(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	top := startTopology(t, topologyConfig{Store: redisStores(srv.URL())})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	b := top.browser()
	pending, res, err := b.LoginUntilACS(ctx, top.ProxyURL+"/app", "alice", "alice-password")
	if err != nil {
		t.Fatalf("%v\n%s", err, describe(res))
	}
	first := b.Submit(ctx, pending)
	if !first.OK {
		t.Fatalf("first post:\n%s", describe(first))
	}
	for _, r := range top.Replicas {
		if r.ID == first.ACSInstance {
			continue
		}
		replay := *pending
		replay.Action = r.URL + "/saml/acs"
		got := b.Submit(ctx, &replay)
		if got.OK || got.Cause != string(failure.CauseStateAlreadyUsed) || got.Hops[0].Status != http.StatusConflict {
			t.Fatalf("replay to %s: want 409 %s:\n%s", r.ID, failure.CauseStateAlreadyUsed, describe(got))
		}
	}
}

// Redis stopped: clean 503s and unready replicas; restarted: full recovery.
func TestE2ERedisOutage(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	top := startTopology(t, topologyConfig{Replicas: 2, Store: redisStores(srv.URL())})
	if res := top.login(t, top.browser(), "bob"); !res.OK {
		t.Fatalf("before the outage:\n%s", describe(res))
	}
	srv.Stop()
	for i := range 3 {
		res := top.login(t, top.browser(), "bob")
		if res.OK || res.Cause != string(failure.CauseStoreUnavailable) {
			t.Fatalf("login %d during the outage: want %s:\n%s", i, failure.CauseStoreUnavailable, describe(res))
		}
	}
	for _, r := range top.Replicas {
		resp, err := http.Get(r.URL + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 503 {
			t.Errorf("%s /readyz during the outage: %d, want 503", r.ID, resp.StatusCode)
		}
	}
	srv.Restart()
	deadline := time.Now().Add(15 * time.Second)
	for {
		res := top.login(t, top.browser(), "bob")
		if res.OK {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no recovery 15s after Redis restarted:\n%s", describe(res))
		}
		time.Sleep(100 * time.Millisecond)
	}
	for i := range 4 {
		if res := top.login(t, top.browser(), "bob"); !res.OK {
			t.Fatalf("login %d after recovery:\n%s", i, describe(res))
		}
	}
}

// The same, on a real three-master Redis Cluster.
func TestE2ERedisCluster(t *testing.T) {
	t.Parallel()
	cl := redistest.StartCluster(t, 3)
	top := startTopology(t, topologyConfig{Store: redisStores(cl.URL())})
	for i := range 4 {
		b := top.browser()
		if res := top.login(t, b, "alice"); !res.OK {
			t.Fatalf("login %d on the cluster:\n%s", i, describe(res))
		}
		for _, r := range top.Replicas {
			if code, body := whoami(t, top, b, r); code != 200 {
				t.Fatalf("session does not hold on %s: %d %v", r.ID, code, body)
			}
		}
	}
}

// redisBench runs an ACS benchmark on srv, counting its CPU.
func redisBench(srv *redistest.Server) benchStore {
	cli := srv.Client()
	return benchStore{open: redisStores(srv.URL()), serverCPU: func(tb testing.TB) time.Duration {
		info, err := cli.Info(context.Background(), "cpu").Result()
		if err != nil {
			tb.Fatal(err)
		}
		var secs float64
		for _, k := range []string{"used_cpu_sys", "used_cpu_user"} {
			f, err := strconv.ParseFloat(redis.InfoField(info, k), 64)
			if err != nil {
				tb.Fatalf("INFO cpu: %s: %v", k, err)
			}
			secs += f
		}
		return time.Duration(secs * float64(time.Second))
	}}
}

// BenchmarkACSRedis is BenchmarkACSMemory with the state in a private
// redis-server: the commit's one round trip next to the bare parse and to
// the floor (the parse and one plain read).
func BenchmarkACSRedis(b *testing.B) {
	benchACS(b, redisBench(redistest.Start(b)))
}

// BenchmarkACSCapacityRedis is BenchmarkACSCapacityMemory with the state in
// a private redis-server, whose CPU is counted with the replica's.
func BenchmarkACSCapacityRedis(b *testing.B) {
	benchACSCapacity(b, redisBench(redistest.Start(b)))
}
