// Package loginstate tracks logins in flight: the tracked AuthnRequest
// (request ID, return URL, the replica that began it) and its compact codec
// (tracked.go), the store-backed tracker whose Finish consumes a login
// exactly once (this file), the cookie that binds a login to the browser
// that began it (binding.go), and the stateless tracker on crewjam's signed
// cookies (stateless.go).
package loginstate

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/samlha/samlha/sp/failure"
	"github.com/samlha/samlha/sp/keyring"
	"github.com/samlha/samlha/sp/relaystate"
	"github.com/samlha/samlha/store"
)

// keyRequest prefixes a tracked login's key: "req:" + RelayState.
const keyRequest = "req:"

// Tracker begins and finishes the tracking of logins: the store-backed
// tracker and the stateless (signed cookie) one.
type Tracker interface {
	// Begin tracks a new AuthnRequest and returns its RelayState.
	Begin(w http.ResponseWriter, r *http.Request, requestID, returnURI string) (string, error)
	// Finish consumes the login named by relayState, exactly once, and
	// checks that r comes from the browser that began it.
	Finish(w http.ResponseWriter, r *http.Request, relayState string) (*Tracked, *failure.Failure)
}

// StoreTracker keeps tracked requests in a store.Store. It is the SP's
// Tracker, whose finish is the atomic consume the ACS relies on. It is
// not crewjam's samlsp.RequestTracker: only crewjam's ServeACS,
// HandleStartAuthFlow and RequireAccount read that, and the SP mounts none
// of them (serveACS and startLogin replace them).
type StoreTracker struct {
	store      store.Store
	storeKind  string
	shared     bool // store.Shared: other replicas see the same logins
	instance   string
	ttl        time.Duration // how long a login may take
	tombstone  time.Duration // how long "already used"/"expired" is remembered
	opTimeout  time.Duration
	now        func() time.Time
	cookie     CookieSettings
	onStoreErr func(op string, err error)
}

var _ Tracker = (*StoreTracker)(nil)

// CookieSettings are the attributes of the binding cookies.
type CookieSettings struct {
	Secure   bool
	SameSite http.SameSite
	Domain   string
	Ring     *keyring.Ring // signs the binding cookies (binding.go)
}

// StoreConfig configures a StoreTracker.
type StoreConfig struct {
	Store     store.Store
	StoreKind string
	Instance  string
	TTL       time.Duration // how long a login may take
	Tombstone time.Duration // how long "already used"/"expired" is remembered
	Timeout   time.Duration // per store call
	Now       func() time.Time
	Cookie    CookieSettings
	// OnStoreError is told of every store failure other than not-found.
	OnStoreError func(op string, err error)
}

// NewStoreTracker returns the tracker c configures.
func NewStoreTracker(c StoreConfig) *StoreTracker {
	return &StoreTracker{store: c.Store, storeKind: c.StoreKind, shared: store.Shared(c.Store), instance: c.Instance,
		ttl: c.TTL, tombstone: c.Tombstone, opTimeout: c.Timeout, now: c.Now, cookie: c.Cookie, onStoreErr: c.OnStoreError}
}

// Shared reports whether other replicas see the same logins.
func (t *StoreTracker) Shared() bool { return t.shared }

func (t *StoreTracker) ctx(r *http.Request) (context.Context, context.CancelFunc) {
	return context.WithTimeout(r.Context(), t.opTimeout)
}

// Begin implements Tracker.
func (t *StoreTracker) Begin(w http.ResponseWriter, r *http.Request, requestID, returnURI string) (string, error) {
	rs := relaystate.New(t.instance)
	now := t.now()
	tr := Tracked{
		RequestID: requestID,
		URI:       returnURI,
		Origin:    t.instance,
		Created:   now,
		Expires:   now.Add(t.ttl),
		Binding:   bindingHash(t.cookie.setBinding(w, r, rs, now, t.ttl)),
	}
	if err := tr.check(); err != nil {
		return "", err
	}
	ctx, cancel := t.ctx(r)
	defer cancel()
	// Kept past its expiry for as long as a tombstone, so a late response
	// is told "expired" rather than "unknown". No later write keeps the key
	// past Created + ttl + tombstone (see finish): the pending-logins
	// ceiling counts begins over exactly that window.
	if err := t.store.Put(ctx, keyRequest+rs, tr.encode(), t.ttl+t.tombstone); err != nil {
		t.onStoreErr("put", err)
		return "", err
	}
	return rs, nil
}

// Finish implements Tracker.
func (t *StoreTracker) Finish(w http.ResponseWriter, r *http.Request, rs string) (*Tracked, *failure.Failure) {
	origin, _, perr := relaystate.Parse(rs)
	if perr != nil {
		return nil, &failure.Failure{Cause: failure.CauseStateUnknown, Detail: perr.Error(), Err: perr}
	}
	now := t.now()
	ts := tombstone{Kind: tombstoneUsed, At: now, Instance: t.instance}
	ctx, cancel := t.ctx(r)
	defer cancel()
	// One round trip: the tracked request is replaced by a tombstone and
	// returned. Of two concurrent submissions exactly one gets it.
	old, err := t.store.Swap(ctx, keyRequest+rs, ts.encode(), t.tombstone)
	switch {
	case errors.Is(err, store.ErrNotFound):
		f := &failure.Failure{Cause: failure.CauseStateUnknown, Origin: origin, Err: err}
		switch {
		case origin != t.instance && !t.shared:
			f.Cause = failure.CauseStateCrossInstance
			f.Detail = fmt.Sprintf("login began on %s; this is %s and the %s store is per instance", origin, t.instance, t.storeKind)
		case origin == t.instance && !t.shared:
			f.Detail = "no such login on this instance: never issued, expired long ago, or lost in a restart"
		default:
			f.Detail = fmt.Sprintf("no such login in the shared store (began on %s): never issued or expired long ago", origin)
		}
		return nil, f
	case err != nil:
		t.onStoreErr("swap", err)
		return nil, failure.FromStore(err, origin)
	}
	tr, prev, derr := decodeState(old)
	if derr != nil {
		return nil, &failure.Failure{Cause: failure.CauseStateUnknown, Origin: origin, Detail: derr.Error(), Err: derr}
	}
	if prev != nil {
		// Put the tombstone back as it was: the second attempt must not
		// extend or change the record of the first.
		if left := prev.At.Add(t.tombstone).Sub(now); left > 0 {
			_ = t.store.Put(ctx, keyRequest+rs, old, left)
		} else {
			_ = t.store.Delete(ctx, keyRequest+rs)
		}
		if prev.Kind == tombstoneExpired {
			return nil, &failure.Failure{Cause: failure.CauseStateExpired, Origin: origin,
				Detail: fmt.Sprintf("expired at %s, found by %s", prev.At.UTC().Format(time.RFC3339), prev.Instance)}
		}
		return nil, &failure.Failure{Cause: failure.CauseStateAlreadyUsed, Origin: origin,
			Detail: fmt.Sprintf("consumed at %s by %s", prev.At.UTC().Format(time.RFC3339Nano), prev.Instance)}
	}
	if now.After(tr.Expires) {
		// At is the moment it expired, so this tombstone, and any put
		// back above, ends when the tracked request would have.
		exp := tombstone{Kind: tombstoneExpired, At: tr.Expires, Instance: t.instance}
		if left := tr.Expires.Add(t.tombstone).Sub(now); left > 0 {
			_ = t.store.Put(ctx, keyRequest+rs, exp.encode(), left)
		} else {
			_ = t.store.Delete(ctx, keyRequest+rs)
		}
		return nil, &failure.Failure{Cause: failure.CauseStateExpired, Origin: origin, RequestID: tr.RequestID,
			Detail: fmt.Sprintf("began %s, expired %s", tr.Created.UTC().Format(time.RFC3339), tr.Expires.UTC().Format(time.RFC3339))}
	}
	if f := t.checkBinding(r, rs, tr); f != nil {
		// Whoever posted this is not the browser that began the login:
		// put the login back so a forged post cannot burn a real one.
		if perr := t.store.Put(ctx, keyRequest+rs, old, tr.Expires.Sub(now)+t.tombstone); perr != nil {
			t.onStoreErr("put", perr)
		}
		f.Origin = origin
		return nil, f
	}
	t.cookie.clearBinding(w, rs)
	return tr, nil
}

// checkBinding checks that r carries the binding cookie of login rs (tr),
// as this SP issued it to the browser that began the login (binding.go):
// signed by this SP's ring, for this login, and the value the login was
// begun with. The signature is checked first, so the store is not trusted
// to say what this SP issued.
func (t *StoreTracker) checkBinding(r *http.Request, rs string, tr *Tracked) *failure.Failure {
	name := t.cookie.bindingName(rs)
	ck, err := r.Cookie(name)
	if err != nil {
		if n := len(t.cookie.bindingCookies(r)); n > 0 {
			// The browser sends binding cookies, but not this login's:
			// it did not begin it, or it began so many logins since
			// that this one's cookie was expired as the oldest.
			d := fmt.Sprintf("the browser sent %d binding cookie(s) of other logins but none for this one: it did not begin this login (login CSRF, or a response moved between browsers)", n)
			if n >= maxBindingCookies-1 {
				d += fmt.Sprintf(", or it began more than %d logins at once and this one's cookie was expired as the oldest", maxBindingCookies)
			}
			return &failure.Failure{Cause: failure.CauseBindingMismatch, RequestID: tr.RequestID, Detail: d}
		}
		return &failure.Failure{Cause: failure.CauseBindingCookieMissing, RequestID: tr.RequestID,
			Detail: "no " + name + " cookie on the ACS request", Err: err}
	}
	if err := verifyBinding(t.cookie.Ring, rs, ck.Value); err != nil {
		return &failure.Failure{Cause: failure.CauseBindingMismatch, RequestID: tr.RequestID,
			Detail: name + ": " + err.Error() + " (planted or forged, or signed with a --session-key no longer in the ring)", Err: err}
	}
	if !tr.bindingMatches(ck.Value) {
		return &failure.Failure{Cause: failure.CauseBindingMismatch, RequestID: tr.RequestID,
			Detail: "the " + name + " cookie is not the one the login began with"}
	}
	return nil
}
