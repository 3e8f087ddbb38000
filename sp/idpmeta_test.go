package sp_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/samlha/samlha/sp"
	"github.com/samlha/samlha/sp/devidp"
	"github.com/samlha/samlha/sp/login"
	"github.com/samlha/samlha/sp/sptest/devidptest"
)

// TestRunRetriesTheFirstMetadataLoad checks that Run keeps trying an IdP
// whose metadata is not available yet, with backoff, and that the SP turns
// ready once it is; each failure is counted.
func TestRunRetriesTheFirstMetadataLoad(t *testing.T) {
	t.Parallel()
	idp := devidptest.Start(t, devidp.Config{})
	resp, err := http.Get(idp.URL + "/metadata")
	if err != nil {
		t.Fatal(err)
	}
	md, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	const failures = 2
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		if calls.Add(1) <= failures {
			http.Error(w, "starting", http.StatusServiceUnavailable)
			return
		}
		w.Write(md)
	}))
	t.Cleanup(srv.Close)
	mdURL, _ := url.Parse(srv.URL + "/metadata")
	root, _ := url.Parse("http://127.0.0.1:8080")
	key, cert := spKeyPair(t)
	reg := prometheus.NewRegistry()
	s, err := sp.New(sp.Config{InstanceID: "sp-1", RootURL: root, Store: memoryStores(t, 0), Key: key, Certificate: cert,
		IDP: &login.IDPMetadata{URL: mdURL, Refresh: time.Hour}, Registry: reg})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	deadline := time.Now().Add(20 * time.Second)
	for !s.Ready() {
		if time.Now().After(deadline) {
			t.Fatalf("not ready 20s after start; the metadata server was asked %d times", calls.Load())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if got := calls.Load(); got != failures+1 {
		t.Errorf("metadata fetched %d times, want %d (two failures, then success)", got, failures+1)
	}
	if got := counterValue(t, &replica{Reg: reg}, "samlha_sp_idp_metadata_errors_total", nil); got != failures {
		t.Errorf("samlha_sp_idp_metadata_errors_total = %v, want %d", got, failures)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run returned %v when its context ended, want nil", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return within 10s of its context ending")
	}
}
