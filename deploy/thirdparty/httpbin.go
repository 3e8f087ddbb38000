package thirdparty

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/mccutchen/go-httpbin/v2/httpbin"

	"github.com/samlha/samlha/store/localproc"
)

// HTTPBin limits: large enough for the tests' uploads (10 MiB, echoed back
// by /anything) and streams.
const (
	httpbinMaxBody     = 64 << 20
	httpbinMaxDuration = time.Minute
	// httpbinKeep bounds the finished requests remembered.
	httpbinKeep = 10000
)

// HTTPBin is go-httpbin (github.com/mccutchen/go-httpbin), served from its
// own handler in this process on 127.0.0.1. It remembers each request it
// has finished, so a test can tell whether a request reached it, and
// whether it had finished when the first byte of its answer arrived.
type HTTPBin struct {
	// URL is "http://127.0.0.1:port".
	URL  string
	Addr string

	srv *http.Server
	mu  sync.Mutex
	// finished are the requests whose handler has returned, oldest first.
	finished []httpbin.Result
}

// StartHTTPBin serves go-httpbin until Close.
func StartHTTPBin() (*HTTPBin, error) {
	h := &HTTPBin{}
	app := httpbin.New(
		httpbin.WithMaxBodySize(httpbinMaxBody),
		httpbin.WithMaxDuration(httpbinMaxDuration),
		httpbin.WithObserver(h.observe),
	)
	var ln net.Listener
	var err error
	// Another process may take a port between Port and Listen: try a few.
	for range 5 {
		ln, err = net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(localproc.Port())))
		if err == nil || !errors.Is(err, syscall.EADDRINUSE) {
			break
		}
	}
	if err != nil {
		return nil, fmt.Errorf("go-httpbin: %w", err)
	}
	h.Addr = ln.Addr().String()
	h.URL = "http://" + h.Addr
	// No read or write timeout: streams and uploads last as long as the
	// test makes them.
	h.srv = &http.Server{Handler: app, ReadHeaderTimeout: 10 * time.Second,
		ErrorLog: slog.NewLogLogger(slog.DiscardHandler, slog.LevelError)}
	go func() { _ = h.srv.Serve(ln) }()
	return h, nil
}

func (h *HTTPBin) observe(_ context.Context, r httpbin.Result) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.finished) >= httpbinKeep {
		h.finished = append(h.finished[:0], h.finished[httpbinKeep/2:]...)
	}
	h.finished = append(h.finished, r)
}

// Finished returns the requests go-httpbin has finished (its handler has
// returned) whose request URI contains marker.
func (h *HTTPBin) Finished(marker string) []httpbin.Result {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []httpbin.Result
	for _, r := range h.finished {
		if strings.Contains(r.URI, marker) {
			out = append(out, r)
		}
	}
	return out
}

// Close stops serving, closing every connection at once (streams too).
func (h *HTTPBin) Close() error { return h.srv.Close() }
