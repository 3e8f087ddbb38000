package main

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/samlha/samlha/store/redis/redistest"
)

// syncBuffer is a bytes.Buffer safe for a logger and a reader at once.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// TestOpenStoreWaitsForTheStore checks that openStore retries, with
// backoff, a store that does not answer yet, and returns it once it does,
// within --store-wait.
func TestOpenStoreWaitsForTheStore(t *testing.T) {
	srv := redistest.Start(t)
	srv.Stop() // down when the replica starts
	var logs syncBuffer
	logger := slog.New(slog.NewTextHandler(&logs, nil))
	o := &options{storeURL: srv.URL() + "?verify=false", storeTimeout: time.Second, storeWait: 30 * time.Second}
	type result struct {
		err error
		ok  bool
	}
	done := make(chan result, 1)
	go func() {
		st, err := openStore(context.Background(), o, o.storeURL, logger)
		if st != nil {
			defer st.Close()
		}
		done <- result{err, st != nil && st.Ping(context.Background()) == nil}
	}()
	// Wait for a failed attempt to be logged, then bring the store up.
	deadline := time.Now().Add(15 * time.Second)
	for !strings.Contains(logs.String(), "store not answering yet; retrying") {
		if time.Now().After(deadline) {
			t.Fatalf("no retry logged within 15s:\n%s", logs.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	srv.Restart()
	select {
	case r := <-done:
		if r.err != nil || !r.ok {
			t.Fatalf("openStore after the store came up: err %v, store answers %v\n%s", r.err, r.ok, logs.String())
		}
	case <-time.After(25 * time.Second):
		t.Fatalf("openStore did not return within 25s of the store coming up:\n%s", logs.String())
	}
	if !strings.Contains(logs.String(), "retry_in=") {
		t.Errorf("retry log line does not say when the next attempt is:\n%s", logs.String())
	}
}
