package store_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/samlha/samlha/store"
	_ "github.com/samlha/samlha/store/memory"
)

func TestRedact(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"redis://:hunter2@127.0.0.1:6379/0":                      "redis://:xxxxx@127.0.0.1:6379/0",
		"redis://user:hunter2@h:1/2?prefix=x":                    "redis://user:xxxxx@h:1/2?prefix=x",
		"redis-sentinel://h1:1,h2:2/m?sentinel_password=hunter2": "redis-sentinel://h1:1,h2:2/m?sentinel_password=xxxxx",
		"rediss://h:1?password=hunter2&tls_ca_file=%2Fca.pem":    "rediss://h:1?password=xxxxx&tls_ca_file=%2Fca.pem",
		"memory://?max_entries=10":                               "memory://?max_entries=10",
		"redis://:hun%zz@host":                                   "redis://(unparsable)",
	} {
		got := store.Redact(in)
		if got != want {
			t.Errorf("Redact(%q) = %q, want %q", in, got, want)
		}
		if strings.Contains(got, "hunter2") || strings.Contains(got, "hun%zz") {
			t.Errorf("Redact(%q) leaks the password: %q", in, got)
		}
	}
}

func TestOpenUnknownSchemeListsKnown(t *testing.T) {
	t.Parallel()
	_, err := store.Open(context.Background(), "mongodb://:hunter2@db/x", nil)
	if err == nil || !strings.Contains(err.Error(), `"mongodb"`) || !strings.Contains(err.Error(), "memory") {
		t.Fatalf("err = %v, want one naming the scheme and the known ones", err)
	}
	if strings.Contains(err.Error(), "hunter2") {
		t.Fatalf("password leaked: %v", err)
	}
	if _, err := store.Open(context.Background(), "::not a url:hunter2", nil); err == nil || strings.Contains(err.Error(), "hunter2") {
		t.Fatalf("unparsable URL: %v", err)
	}
}

func TestOpenMemory(t *testing.T) {
	t.Parallel()
	st, err := store.Open(context.Background(), "memory://?max_entries=10", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	d, ok := st.(store.Describer)
	if !ok || d.Kind() != "memory" || store.Shared(st) {
		t.Fatalf("memory store describes itself as %v (shared %v)", d, store.Shared(st))
	}
	// A store that does not describe itself is taken as shared, so the SP
	// never claims a login was lost for having begun on another replica.
	if !store.Shared(struct{ store.Store }{st}) {
		t.Error("store.Shared of a store without Describer = false, want true")
	}
}

// TestBackendOfURL checks the registry's answer to "which backend opens
// this URL", which samlsp uses to check --store-url against --store.
func TestBackendOfURL(t *testing.T) {
	t.Parallel()
	if got, err := store.Backend("memory://?max_entries=10"); err != nil || got != "memory" {
		t.Errorf(`Backend("memory://...") = %q, %v; want "memory"`, got, err)
	}
	_, err := store.Backend("mongodb://:hunter2@db/x")
	if err == nil || !strings.Contains(err.Error(), `"mongodb"`) || !strings.Contains(err.Error(), "known: memory") ||
		strings.Contains(err.Error(), "hunter2") {
		t.Errorf("Backend of an unknown scheme: %v; want an error naming it and the known schemes, without the password", err)
	}
	if got := store.Schemes("memory"); len(got) != 1 || got[0] != "memory" {
		t.Errorf(`Schemes("memory") = %q, want [memory]`, got)
	}
	if got := store.Schemes("no-such-backend"); len(got) != 0 {
		t.Errorf(`Schemes("no-such-backend") = %q, want none`, got)
	}
}

func TestRegisterTwicePanics(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Fatal("registering a scheme twice did not panic")
		}
		if got := store.Schemes("other"); len(got) != 0 {
			t.Fatalf("a Register that panicked registered %q", got)
		}
	}()
	store.Register("other", func(context.Context, *url.URL, *slog.Logger) (store.Store, error) { return nil, nil }, "other", "memory")
}

func TestErrorClasses(t *testing.T) {
	t.Parallel()
	cause := io.ErrUnexpectedEOF
	err := store.Unavailable("get", cause)
	if !errors.Is(err, store.ErrUnavailable) || !errors.Is(err, cause) || errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Unavailable: %v", err)
	}
	if !store.IsUnavailable(store.ErrClosed) || errors.Is(store.ErrClosed, store.ErrNotFound) {
		t.Fatal("ErrClosed must be unavailable and not not-found")
	}
	if store.IsUnavailable(store.ErrNotFound) || store.IsUnavailable(store.ErrFull) {
		t.Fatal("not-found and full are not unavailable")
	}
	for _, e := range []error{store.CheckKey(""), store.CheckKey(strings.Repeat("k", store.MaxKeyLen+1)),
		store.CheckTTL(0), store.CheckTTL(-time.Second), store.CheckValue(make([]byte, 11), 10)} {
		if !errors.Is(e, store.ErrInvalid) {
			t.Errorf("%v does not match ErrInvalid", e)
		}
	}
	if store.CheckKey("k") != nil || store.CheckTTL(time.Millisecond) != nil || store.CheckValue(nil, 0) != nil {
		t.Error("valid arguments rejected")
	}
}
