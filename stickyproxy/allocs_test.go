//go:build !race

package stickyproxy

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

// TestFastPathAllocs bounds the fast engine's allocations per request
// (routing, cookie, request head, reply head, body) against a raw
// upstream: the reply head's text and its values' slice, and the
// client-abort hook's two when the first read of the reply finds nothing.
// It was 11 with http.ReadResponse and an always-armed hook. (Not under
// the race detector, which allocates.)
func TestFastPathAllocs(t *testing.T) {
	u := rawBackend(t)
	p, err := New(Config{Targets: []Target{{Name: "sp-1", URL: u}}, Keys: [][32]byte{internalKey}, AccessLog: AccessLogOff})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	r := httptest.NewRequest("GET", "/path?q=1", nil)
	r.RemoteAddr = "192.0.2.1:1234"
	v, _ := p.codec.Seal("sp-1", time.Now().Add(time.Hour))
	r.Header.Set("Cookie", "AWSALB="+v)
	w := &discardWriter{h: http.Header{}}
	allocs := testing.AllocsPerRun(200, func() {
		clear(w.h)
		p.ServeHTTP(w, r)
	})
	if w.code != 200 {
		t.Fatalf("status %d", w.code)
	}
	if allocs > 4 {
		t.Errorf("%.1f allocations per request through the fast engine, want at most 4", allocs)
	}
}
