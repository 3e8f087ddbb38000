package main

import (
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/samlha/samlha/cmd/samllab/internal/topo"
	"github.com/samlha/samlha/store/localproc"
)

// The lab's proxy checks each replica's /readyz, not /healthz: a replica
// restarted while the IdP's metadata URL is unreachable is alive (its
// /healthz answers) but not ready, and the proxy routes it no request,
// logins included, until it has the metadata.
func TestRestartedReplicaGetsNoTrafficUntilReady(t *testing.T) {
	env := newEnv(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	top, err := topo.Start(ctx, env, topo.Spec{Name: "readiness", Replicas: 2, Store: "memory"})
	if err != nil {
		t.Fatal(err)
	}
	defer top.Stop()
	sp2 := top.Replicas[1]

	// The IdP goes away, then sp-2 restarts: it has no copy of the
	// metadata (memory store, no --idp-metadata-cache).
	// The proxy must have seen sp-2 go (its checks find nothing
	// listening) before the new process starts, as in a rolling deploy:
	// a restart quicker than one health interval (300 ms, fall 1)
	// is invisible to any health-checking balancer, HAProxy's included,
	// and would leave sp-2 marked up while its new process is not ready.
	top.IdP.Stop(3 * time.Second)
	sp2.Proc.Stop(5 * time.Second)
	if err := localproc.Poll(ctx, func(ctx context.Context) error {
		ts, err := top.Targets(ctx)
		if err != nil {
			return err
		}
		for _, s := range ts {
			if s.Name == "sp-2" && s.Healthy {
				return fmt.Errorf("the proxy still sees sp-2 healthy")
			}
		}
		return nil
	}); err != nil {
		t.Fatalf("sp-2 stopped: %v", err)
	}
	if err := sp2.Proc.Start(); err != nil {
		t.Fatal(err)
	}
	if err := localproc.Poll(ctx, func(ctx context.Context) error {
		return probe(ctx, sp2.URL+"/healthz", http.StatusOK)
	}); err != nil {
		t.Fatalf("sp-2 does not answer /healthz after its restart: %v", err)
	}
	if err := probe(ctx, sp2.URL+"/readyz", http.StatusServiceUnavailable); err != nil {
		t.Fatalf("sp-2 without the IdP's metadata: %v", err)
	}

	// For several health intervals (300 ms, rise 2), every request
	// through the proxy, login starts included, goes to sp-1.
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	for end := time.Now().Add(2 * time.Second); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
		for _, path := range []string{"/app", "/saml/login?rd=/app", "/"} {
			resp, err := client.Get(top.PublicURL + path)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if got := resp.Header.Get("X-Samlha-Instance"); got != "sp-1" {
				t.Fatalf("GET %s while sp-2 is not ready: served by %q (%s, cause %q); want sp-1 only",
					path, got, resp.Status, resp.Header.Get("X-Samlha-Cause"))
			}
		}
	}

	// The IdP comes back: sp-2 loads the metadata, turns ready, and the
	// proxy lets it back in.
	if err := top.IdP.Start(); err != nil {
		t.Fatal(err)
	}
	if err := top.WaitHealthy(ctx, "sp-2"); err != nil {
		t.Fatal(err)
	}
}

// probe asks url and wants status.
func probe(ctx context.Context, url string, status int) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != status {
		return fmt.Errorf("%s: %s, want %d", url, resp.Status, status)
	}
	return nil
}
