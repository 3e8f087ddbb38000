package redis_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/samlha/samlha/store"
	"github.com/samlha/samlha/store/redis/redistest"
	"github.com/samlha/samlha/store/storetest"
)

// TestSentinelFailover kills the master behind a Sentinel: until the
// Sentinel promotes the replica, calls fail as unavailable (never as
// absent); after it, the store works again through the same URL, and
// holds what was replicated.
func TestSentinelFailover(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	f := startFailoverSet(t)
	master, replica := f.master, f.replica
	s := open(t, with(f.sentinel.URL(), "timeout=500ms"))
	if err := s.Put(ctx, "k", []byte("v"), time.Hour); err != nil {
		t.Fatalf("Put before the failover: %v", err)
	}
	waitFor(t, 10*time.Second, "the key to reach the replica", func() bool {
		n, err := replica.Client().Exists(ctx, "samlha:k").Result()
		return err == nil && n == 1
	})

	master.Kill()
	waitFor(t, 60*time.Second, "the store to work again after the failover", func() bool {
		_, err := s.Get(ctx, "k")
		if err != nil && !errors.Is(err, store.ErrUnavailable) {
			t.Fatalf("Get during the failover: %v, want a value or ErrUnavailable", err)
		}
		return err == nil
	})
	if err := s.Ping(ctx); err != nil {
		t.Fatalf("Ping after the failover: %v", err)
	}
	if got, err := s.Get(ctx, "k"); err != nil || string(got) != "v" {
		t.Fatalf("Get after the failover = %q, %v; want the replicated value", got, err)
	}
}

// waitFor polls cond until it holds, failing the test after within.
func waitFor(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", within, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestSentinelUnreachable: with no Sentinel answering, Open fails at once,
// as unavailable, saying so; with verify=false the store starts, reports
// itself unavailable, and finds the master once a Sentinel answers.
func TestSentinelUnreachable(t *testing.T) {
	t.Parallel()
	master := redistest.Start(t, redistest.WithPassword(password))
	sentinel := redistest.StartSentinel(t, master, masterName)
	url := with(sentinel.URL(), "timeout=300ms&dial_timeout=300ms")
	sentinel.Stop()

	start := time.Now()
	_, err := store.Open(t.Context(), url, nil)
	took := time.Since(start)
	switch {
	case err == nil:
		t.Fatal("store.Open with no Sentinel answering succeeded")
	case !errors.Is(err, store.ErrUnavailable) || !strings.Contains(err.Error(), "Sentinel"):
		t.Fatalf("store.Open with no Sentinel answering: %v; want an unavailable error that names the Sentinels", err)
	case strings.Contains(err.Error(), password):
		t.Fatalf("store.Open error %q contains the password", err)
	case took > 3*time.Second:
		t.Fatalf("store.Open with no Sentinel answering took %v", took)
	}

	// No master named is a failover not over yet: the Put waits out its
	// failover budget (1s here), then fails.
	s := open(t, with(url, "verify=false&failover_budget=1s"))
	start = time.Now()
	err = s.Put(t.Context(), "k", []byte("v"), time.Minute)
	wantUnavailable(t, "Put with no Sentinel answering", err, time.Since(start), 2*time.Second)
	if took := time.Since(start); took < time.Second {
		t.Errorf("Put with no Sentinel answering failed after %v, before its failover budget of 1s", took)
	}
	sentinel.Restart()
	waitPing(t, s)
}

// TestSentinelPassword: behind Sentinels with a password of their own, a
// URL without sentinel_password, or with a wrong one, fails to open, and
// says that the Sentinels refused it (not that the master is down), without
// the password in the message; with it, the store works.
func TestSentinelPassword(t *testing.T) {
	t.Parallel()
	master := redistest.Start(t, redistest.WithPassword(password))
	sentinel := redistest.StartSentinel(t, master, masterName, redistest.WithSentinelPassword(sentinelPassword))
	good := with(sentinel.URL(), "timeout=500ms")
	if !strings.Contains(good, "sentinel_password=") {
		t.Fatalf("SentinelsURL = %q, want sentinel_password", good)
	}
	for name, url := range map[string]string{
		"none":  strings.Replace(good, "sentinel_password="+sentinelPassword, "sentinel_password=", 1),
		"wrong": strings.Replace(good, "sentinel_password="+sentinelPassword, "sentinel_password=not-"+sentinelPassword, 1),
	} {
		_, err := store.Open(t.Context(), url, nil)
		switch {
		case err == nil:
			t.Errorf("%s: store.Open without the Sentinels' password succeeded", name)
		case !strings.Contains(err.Error(), "Sentinel") || !strings.Contains(err.Error(), "NOAUTH") && !strings.Contains(err.Error(), "WRONGPASS"):
			t.Errorf("%s: store.Open: %v; want an error that says the Sentinels refused the authentication", name, err)
		case strings.Contains(err.Error(), sentinelPassword) || strings.Contains(err.Error(), password):
			t.Errorf("%s: store.Open error %q contains a password", name, err)
		}
	}
	s := open(t, good)
	if err := s.Put(t.Context(), "k", []byte("v"), time.Minute); err != nil {
		t.Fatalf("Put with the Sentinels' password: %v", err)
	}
}

// TestSentinelTLS: a master, its replica and a Sentinel that all speak TLS
// only (replication and the Sentinel's links too), through
// redis-sentinel://...?tls=true: a subscription is live and receives, and
// after a SENTINEL FAILOVER (which the store must hear over TLS to hold its
// writes) the store writes to the promoted replica, which holds what was
// written before. (TestConformanceClusterTLS runs the whole suite over
// TLS; here it would only wait behind the slower tests for nothing new.)
func TestSentinelTLS(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	master := redistest.Start(t, redistest.WithTLS(), redistest.WithPassword(password))
	host, port, _ := strings.Cut(master.Addr(), ":")
	replica := redistest.Start(t, redistest.WithTLSLike(master), redistest.WithPassword(password),
		redistest.WithArgs("--replicaof", host, port, "--masterauth", password))
	replica.WaitReplicating(t)
	sentinel := redistest.StartSentinel(t, master, masterName)
	waitFor(t, 10*time.Second, "the Sentinel to know the replica", func() bool {
		replicas, err := sentinel.Client().Do(ctx, "SENTINEL", "REPLICAS", masterName).Slice()
		return err == nil && len(replicas) == 1
	})
	url := with(sentinel.URL(), "timeout=500ms")
	if !strings.Contains(url, "tls=true") {
		t.Fatalf("Sentinel URL %q has no tls=true", url)
	}
	s := open(t, with(url, notifyParams))
	sub, err := s.(store.Notifier).Subscribe(ctx, "tls")
	if err != nil {
		t.Fatalf("Subscribe: %v", err)
	}
	defer sub.Close()
	w := storetest.Watch(sub)
	w.WaitFrom(t, 0, store.EventLive, 10*time.Second)
	if err := s.(store.Notifier).Publish(ctx, "tls", []byte("over tls")); err != nil {
		t.Fatalf("Publish: %v", err)
	}
	w.WaitPayload(t, "over tls", 10*time.Second)
	if err := s.Put(ctx, "before", []byte("v"), time.Hour); err != nil {
		t.Fatalf("Put before the failover: %v", err)
	}
	waitFor(t, 10*time.Second, "the key to reach the replica", func() bool {
		n, err := replica.Client().Exists(ctx, "samlha:before").Result()
		return err == nil && n == 1
	})
	if err := sentinel.Client().Do(ctx, "SENTINEL", "FAILOVER", masterName).Err(); err != nil {
		t.Fatalf("SENTINEL FAILOVER: %v", err)
	}
	waitFor(t, 30*time.Second, "the store to write to the promoted replica", func() bool {
		info, err := replica.Client().Info(ctx, "replication").Result()
		if err != nil || !strings.Contains(info, "role:master") {
			return false
		}
		if err := s.Put(ctx, "after", []byte("v"), time.Hour); err != nil {
			return false
		}
		n, err := replica.Client().Exists(ctx, "samlha:after").Result()
		return err == nil && n == 1
	})
	if got, err := s.Get(ctx, "before"); err != nil || string(got) != "v" {
		t.Fatalf("Get after the failover = %q, %v; want the replicated value", got, err)
	}
}
