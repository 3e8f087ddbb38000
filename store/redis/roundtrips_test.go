package redis_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/samlha/samlha/store"
	"github.com/samlha/samlha/store/redis"
	"github.com/samlha/samlha/store/redis/redistest"
)

// counted opens the store at url with a round-trip counter.
func counted(t *testing.T, url string) (*redis.Store, *redistest.Counter) {
	t.Helper()
	s, err := redis.Open(t.Context(), url, nil)
	if err != nil {
		t.Fatalf("redis.Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	c := &redistest.Counter{}
	s.AddHook(c)
	return s, c
}

// acsCommit is the SP's ACS commit, its Then keys given.
func acsCommit(key, replay, sess string) store.Commit {
	return store.Commit{Key: key, Value: []byte("T|used"), TTL: time.Minute, IfPrefix: []byte("P|"), Then: []store.Write{
		{Key: replay, Value: []byte{1}, TTL: time.Minute, IfAbsent: true},
		{Key: sess, Value: []byte("session"), TTL: time.Minute},
	}}
}

// wantTrips runs op and checks that it made the round trips want (each the
// command names of one round trip).
func wantTrips(t *testing.T, c *redistest.Counter, what string, want [][]string, op func() error) {
	t.Helper()
	c.Reset()
	if err := op(); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	if diff := cmp.Diff(want, c.Trips()); diff != "" {
		t.Fatalf("%s: round trips (-want +got):\n%s", what, diff)
	}
}

// commitOnce makes a pending login under key and commits it, checking
// that the commit succeeded.
func commitOnce(ctx context.Context, s *redis.Store, key, replay, sess string) func() error {
	return func() error {
		_, then, err := s.Commit(ctx, acsCommit(key, replay, sess))
		if err == nil {
			err = errors.Join(then...)
		}
		return err
	}
}

// TestRoundTrips counts the network round trips of the ACS's commit and of
// GetMany on each topology: one on a standalone server (plain and TLS) and
// behind a Sentinel; on a Cluster, one, or two when the Then keys hash to
// other slots than the swapped key.
func TestRoundTrips(t *testing.T) {
	t.Parallel()
	plain := redistest.Start(t)
	tlsSrv := redistest.Start(t, redistest.WithTLS())
	master := redistest.Start(t)
	sentinel := redistest.StartSentinel(t, master, "samlha-master")
	cluster := redistest.StartCluster(t, 3)
	single := [][]string{{"evalsha"}}
	for _, tc := range []struct{ name, url string }{
		{"standalone", plain.URL()},
		{"tls", tlsSrv.URL()},
		{"sentinel", sentinel.URL()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, c := counted(t, tc.url)
			ctx := t.Context()
			for i, key := range []string{"req-1", "req-2"} {
				if err := s.Put(ctx, key, []byte("P|pending"), time.Minute); err != nil {
					t.Fatal(err)
				}
				want := single
				if i == 0 {
					// The server has not seen the script since it started.
					want = [][]string{{"evalsha"}, {"eval"}}
				}
				wantTrips(t, c, "Commit", want, commitOnce(ctx, s, key, "replay-"+key, "sess-"+key))
			}
			wantTrips(t, c, "GetMany of 3 keys", [][]string{{"mget"}}, func() error {
				_, err := s.GetMany(ctx, []string{"req-1", "sess-req-1", "missing"})
				return err
			})
		})
	}
	t.Run("cluster", func(t *testing.T) {
		s, c := counted(t, cluster.URL())
		ctx := t.Context()
		// Warm every master's script cache, and find keys on other slots.
		for _, key := range []string{"a", "b", "c", "d", "e", "f"} {
			if err := s.Put(ctx, key, []byte("P|"), time.Minute); err != nil {
				t.Fatal(err)
			}
			if _, _, err := s.Commit(ctx, store.Commit{Key: key, Value: []byte("T|"), TTL: time.Minute}); err != nil {
				t.Fatal(err)
			}
		}
		if err := s.Put(ctx, "req", []byte("P|pending"), time.Minute); err != nil {
			t.Fatal(err)
		}
		wantTrips(t, c, "Commit with Then keys in other slots", [][]string{{"evalsha"}, {"set", "set"}},
			commitOnce(ctx, s, "req", "replay", "sess"))
		// Hash tags put every key in one slot: one round trip.
		if err := s.Put(ctx, "{login-1}req", []byte("P|pending"), time.Minute); err != nil {
			t.Fatal(err)
		}
		wantTrips(t, c, "Commit with every key in one slot", single,
			commitOnce(ctx, s, "{login-1}req", "{login-1}replay", "{login-1}sess"))
		wantTrips(t, c, "GetMany of keys on several nodes", [][]string{{"get", "get", "get"}}, func() error {
			_, err := s.GetMany(ctx, []string{"req", "sess", "{login-1}sess"})
			return err
		})
	})
}
