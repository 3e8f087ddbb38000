package cli

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"
)

// SignalContext returns a context that is cancelled on SIGINT or SIGTERM.
func SignalContext(parent context.Context) (context.Context, context.CancelFunc) {
	return signal.NotifyContext(parent, os.Interrupt, syscall.SIGTERM)
}

// Server is an HTTP server with the listener it serves, so that a program can
// bind every address before it serves any (and fail early on a taken port).
type Server struct {
	Name     string // for logs: "public", "admin", ...
	Server   *http.Server
	Listener net.Listener
	// TLS, if set, makes Serve use ServeTLS with these files.
	CertFile, KeyFile string
	// Drain, if set, is called after Server's Shutdown, with the same
	// deadline, for connections served outside Server (stickyproxy's fast
	// loop).
	Drain func(context.Context) error
}

// Listen binds addr for srv.
func Listen(name, addr string, srv *http.Server) (*Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("%s listener: %w", name, err)
	}
	return &Server{Name: name, Server: srv, Listener: ln}, nil
}

// Serve serves every server until ctx is done or one of them fails, then
// shuts them all down, giving in-flight requests up to grace to finish.
// It returns the first serving error, or nil after a clean shutdown.
func Serve(ctx context.Context, logger *slog.Logger, grace time.Duration, servers ...*Server) error {
	errc := make(chan error, len(servers))
	var wg sync.WaitGroup
	for _, s := range servers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			logger.Info("listening", "server", s.Name, "addr", s.Listener.Addr().String(), "tls", s.CertFile != "")
			var err error
			if s.CertFile != "" {
				err = s.Server.ServeTLS(s.Listener, s.CertFile, s.KeyFile)
			} else {
				err = s.Server.Serve(s.Listener)
			}
			if err != nil && !errors.Is(err, http.ErrServerClosed) {
				errc <- fmt.Errorf("%s server: %w", s.Name, err)
			}
		}()
	}
	var err error
	select {
	case <-ctx.Done():
		logger.Info("shutting down", "grace", grace.String())
	case err = <-errc:
		logger.Error("server failed, shutting down", "err", err)
	}
	sctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	for _, s := range servers {
		if serr := s.Server.Shutdown(sctx); serr != nil {
			logger.Warn("graceful shutdown incomplete", "server", s.Name, "err", serr)
			_ = s.Server.Close()
		}
		if s.Drain != nil {
			if derr := s.Drain(sctx); derr != nil {
				logger.Warn("graceful shutdown incomplete", "server", s.Name, "err", derr)
			}
		}
	}
	wg.Wait()
	return err
}
