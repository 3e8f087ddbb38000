package main

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestRun(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/ok":
			w.WriteHeader(http.StatusOK)
		case "/redirect":
			http.Redirect(w, r, "/ok", http.StatusFound)
		case "/slow":
			time.Sleep(300 * time.Millisecond)
		default:
			http.Error(w, `{"ready":false}`, http.StatusServiceUnavailable)
		}
	}))
	t.Cleanup(srv.Close)
	tests := []struct {
		name string
		args []string
		want int
		msg  string
	}{
		{"2xx", []string{srv.URL + "/ok"}, 0, "ok"},
		{"503 with its body", []string{srv.URL + "/readyz"}, 1, `503 Service Unavailable: {"ready":false}`},
		{"redirect is a fault", []string{srv.URL + "/redirect"}, 1, "302"},
		{"timeout", []string{"--timeout", "50ms", srv.URL + "/slow"}, 1, "deadline exceeded"},
		{"no URL", nil, 2, "usage"},
		{"relative URL", []string{"/readyz"}, 2, "not an absolute"},
		{"help", []string{"--help"}, 0, "usage"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var out strings.Builder
			got := run(tc.args, &out, &out)
			if got != tc.want {
				t.Errorf("run(%q) = %d, want %d; output:\n%s", tc.args, got, tc.want, out.String())
			}
			if !strings.Contains(out.String(), tc.msg) {
				t.Errorf("run(%q) output %q does not contain %q", tc.args, out.String(), tc.msg)
			}
		})
	}
}

func TestConnectionRefused(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.NotFoundHandler())
	addr := srv.URL
	srv.Close()
	if got := run([]string{addr + "/healthz"}, io.Discard, io.Discard); got != 1 {
		t.Errorf("closed port: exit %d, want 1", got)
	}
}
