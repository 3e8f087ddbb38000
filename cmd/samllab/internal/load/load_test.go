package load

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"
)

// A fake SP that is always logged in: Drive's counting, bounds and fault
// timing do not need SAML.
func fakeSP(t *testing.T, served *atomic.Int64) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		served.Add(1)
		w.Header().Set("X-Samlha-Instance", "sp-1")
		w.Header().Set("X-Samlha-User", "alice")
		_, _ = w.Write([]byte("<html>hello</html>"))
	}))
	t.Cleanup(srv.Close)
	return srv
}

func TestDriveCountsAndFaultTiming(t *testing.T) {
	var served atomic.Int64
	srv := fakeSP(t, &served)
	var doneAtFault atomic.Int64
	var completed atomic.Int64
	faultRan := make(chan struct{}, 2)
	out := Drive(context.Background(), Target{PublicURL: srv.URL},
		Options{Logins: 40, Concurrency: 4, FollowUps: 2, Users: [][2]string{{"alice", "pw"}},
			OnDone: func(*Record) { completed.Add(1) }},
		[]Fault{{Kind: "kill", Target: "sp-1", After: 0.5, Do: func(context.Context) error {
			doneAtFault.Store(completed.Load())
			faultRan <- struct{}{}
			return nil
		}}})
	if len(out.Records) != 40 || out.NotTried != 0 {
		t.Fatalf("%d records, %d not tried; want 40, 0", len(out.Records), out.NotTried)
	}
	if len(faultRan) != 1 || len(out.Faults) != 1 {
		t.Fatalf("the fault ran %d times (%d recorded), want once", len(faultRan), len(out.Faults))
	}
	if n := doneAtFault.Load(); n < 20 {
		t.Errorf("the fault fired after %d completions, want at least 20 (half of 40)", n)
	}
	for _, r := range out.Records {
		if !r.Login.OK || len(r.FollowUps) != 2 || !r.FollowUps[0].Held {
			t.Fatalf("record %+v", r)
		}
	}
	if served.Load() != 40*3 {
		t.Errorf("%d requests served, want 120 (a login and two follow-ups each)", served.Load())
	}
}

func TestDriveIsBoundedInTime(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select { // a server that never answers in time
		case <-r.Context().Done():
		case <-time.After(5 * time.Second):
		}
	}))
	t.Cleanup(srv.Close)
	start := time.Now()
	out := Drive(context.Background(), Target{PublicURL: srv.URL}, Options{Logins: 1000, Concurrency: 2, Deadline: 300 * time.Millisecond}, nil)
	if el := time.Since(start); el > 3*time.Second {
		t.Fatalf("Drive took %v with a 300ms deadline", el)
	}
	if out.NotTried == 0 || len(out.Records)+out.NotTried != 1000 {
		t.Errorf("%d records + %d not tried, want 1000 with some not tried", len(out.Records), out.NotTried)
	}
	for _, r := range out.Records {
		if r.Login.OK {
			t.Fatal("a login against a silent server succeeded")
		}
	}
}
