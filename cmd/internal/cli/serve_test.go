package cli

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"testing"
	"time"
)

// TestServeDrains: after the servers' Shutdown, Serve calls each
// server's Drain with the grace deadline and waits for it.
func TestServeDrains(t *testing.T) {
	s, err := Listen("public", "127.0.0.1:0", &http.Server{Handler: http.NotFoundHandler()})
	if err != nil {
		t.Fatal(err)
	}
	drained := make(chan bool, 1)
	s.Drain = func(ctx context.Context) error {
		_, hasDeadline := ctx.Deadline()
		drained <- hasDeadline
		return nil
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // shut down at once
	if err := Serve(ctx, slog.New(slog.NewTextHandler(io.Discard, nil)), time.Minute, s); err != nil {
		t.Fatal(err)
	}
	select {
	case hasDeadline := <-drained:
		if !hasDeadline {
			t.Error("Drain got a context without the grace deadline")
		}
	default:
		t.Fatal("Serve returned without calling Drain")
	}
}
