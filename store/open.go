package store

import (
	"context"
	"fmt"
	"log/slog"
	"net/url"
	"slices"
	"strings"
	"sync"
)

// Opener opens a store from a parsed URL. Backends register one per scheme.
type Opener func(ctx context.Context, u *url.URL, logger *slog.Logger) (Store, error)

type registration struct {
	backend string
	open    Opener
}

var (
	registryMu sync.RWMutex
	registry   = map[string]registration{}
)

// Register makes backend (a name such as "memory" or "redis") available to
// Open under each of schemes. It is meant to be called from a backend's
// init function, and panics, registering nothing, if a scheme is taken.
func Register(backend string, open Opener, schemes ...string) {
	registryMu.Lock()
	defer registryMu.Unlock()
	for _, scheme := range schemes {
		if _, dup := registry[scheme]; dup {
			panic("store: Register called twice for scheme " + scheme)
		}
	}
	for _, scheme := range schemes {
		registry[scheme] = registration{backend: backend, open: open}
	}
}

// Schemes lists, sorted, the URL schemes registered for backend, or for
// every backend if backend is "".
func Schemes(backend string) []string {
	registryMu.RLock()
	defer registryMu.RUnlock()
	var s []string
	for k, r := range registry {
		if backend == "" || r.backend == backend {
			s = append(s, k)
		}
	}
	slices.Sort(s)
	return s
}

// Backend returns the name of the registered backend that opens rawURL,
// chosen by the URL's scheme, or an error that names the known schemes.
// Errors never contain the URL's password.
func Backend(rawURL string) (string, error) {
	_, r, err := lookup(rawURL)
	return r.backend, err
}

func lookup(rawURL string) (*url.URL, registration, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		// url.Error repeats the URL, password included: don't wrap it.
		return nil, registration{}, fmt.Errorf("store: cannot parse store URL %q", Redact(rawURL))
	}
	registryMu.RLock()
	r, ok := registry[u.Scheme]
	registryMu.RUnlock()
	if !ok {
		return nil, registration{}, fmt.Errorf("store: unknown scheme %q in store URL %q (known: %s)",
			u.Scheme, Redact(rawURL), strings.Join(Schemes(""), ", "))
	}
	return u, r, nil
}

// Open opens the store that rawURL names, choosing the backend by the URL's
// scheme. The backend's package must be imported (for its init function),
// as with database/sql drivers. Errors never contain the URL's password.
func Open(ctx context.Context, rawURL string, logger *slog.Logger) (Store, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	u, r, err := lookup(rawURL)
	if err != nil {
		return nil, err
	}
	s, err := r.open(ctx, u, logger)
	if err != nil {
		return nil, fmt.Errorf("store: open %s: %w", Redact(rawURL), err)
	}
	return s, nil
}

// Redact returns rawURL with any password replaced by "xxxxx", and any
// query parameter named password likewise. A URL that does not parse is
// reduced to its scheme, so that nothing secret leaks through it.
func Redact(rawURL string) string {
	u, err := url.Parse(rawURL)
	if err != nil {
		if i := strings.Index(rawURL, "://"); i > 0 {
			return rawURL[:i] + "://(unparsable)"
		}
		return "(unparsable)"
	}
	q := u.Query()
	for _, k := range []string{"password", "sentinel_password"} {
		if q.Has(k) {
			q.Set(k, "xxxxx")
		}
	}
	if len(q) > 0 {
		u.RawQuery = q.Encode()
	}
	out := u.Redacted()
	// net/url drops an empty authority ("memory://?x" prints "memory:?x").
	if pre := u.Scheme + "://"; strings.HasPrefix(rawURL, pre) && !strings.HasPrefix(out, pre) {
		out = pre + strings.TrimPrefix(out, u.Scheme+":")
	}
	return out
}
