package main

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/samlha/samlha/store"
	"github.com/samlha/samlha/store/handoff"
)

// withHandoff wraps the memory store st in a store/handoff.Store over the
// shared store --store-handoff names, opened (and waited for) as --store-url
// is: a miss reads through to it, and handoffFirst hands the state over on
// SIGTERM.
func withHandoff(ctx context.Context, o *options, st store.Store, logger *slog.Logger) (store.Store, error) {
	local, ok := st.(handoff.Local)
	if !ok {
		st.Close()
		return nil, fmt.Errorf("--store-handoff: the %s store cannot list its state", o.storeMode)
	}
	shared, err := openStore(ctx, o, o.storeHandoff, logger)
	if err != nil {
		st.Close()
		return nil, fmt.Errorf("--store-handoff: %w", err)
	}
	h, err := handoff.New(local, shared)
	if err != nil {
		st.Close()
		shared.Close()
		return nil, fmt.Errorf("--store-handoff: %w", err)
	}
	logger.Info("memory store with handoff: misses read through to the shared store; SIGTERM hands the state over before the replica stops accepting",
		"store_handoff", store.Redact(o.storeHandoff))
	return h, nil
}

// handoffFirst returns the context the servers run under. For a store with
// a handoff, it ends only once the state is handed over after ctx ends
// (SIGTERM): until then the replica keeps accepting requests, which wait
// for the copy and then go to the shared store, so a request routed here
// while it stops is served, and one routed elsewhere finds the state. The
// copy may take up to grace; if it fails, the replica stops anyway with
// its state lost, as a memory replica's is, and says so. Call release once
// the servers have stopped.
func handoffFirst(ctx context.Context, st store.Store, grace time.Duration, logger *slog.Logger) (serve context.Context, release func()) {
	h, ok := st.(*handoff.Store)
	if !ok {
		return ctx, func() {}
	}
	serve, stop := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer stop()
		select {
		case <-ctx.Done():
		case <-serve.Done(): // the servers stopped on their own
			return
		}
		hctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), grace)
		defer cancel()
		start := time.Now()
		n, err := h.Handoff(hctx)
		if err != nil {
			logger.Error("handoff to the shared store failed: this replica's logins in flight and sessions are lost", "err", err,
				"copied", n, "took", time.Since(start).Round(time.Millisecond))
			return
		}
		logger.Info("handed the memory store's state to the shared store", "entries", n, "took", time.Since(start).Round(time.Millisecond))
	}()
	return serve, func() { stop(); <-done }
}

// statelessHandoff opens, and waits for, the shared store a stateless
// replica moves to (--store-handoff): it finishes logins begun there,
// reads the sessions kept there, and records assertions and logouts
// there, while it still issues signed cookies.
func statelessHandoff(ctx context.Context, o *options, logger *slog.Logger) (store.Store, error) {
	shared, err := openStore(ctx, o, o.storeHandoff, logger)
	if err != nil {
		return nil, fmt.Errorf("--store-handoff: %w", err)
	}
	logger.Info("stateless with handoff: signed cookies as before; logins and sessions of the shared store accepted, assertions and logouts recorded there",
		"store_handoff", store.Redact(o.storeHandoff))
	return shared, nil
}
