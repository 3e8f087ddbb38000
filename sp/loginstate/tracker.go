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
		Binding:   bindingHash(t.cookie.setBinding(w, r, rs, requestID, now, t.ttl)),
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
		return nil, t.notFound(origin, err)
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
		return nil, prev.failure(origin)
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

// notFound is the failure of a login whose state is not in the store.
func (t *StoreTracker) notFound(origin string, err error) *failure.Failure {
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
	return f
}

// failure is the failure of a login whose state is this tombstone.
func (ts *tombstone) failure(origin string) *failure.Failure {
	if ts.Kind == tombstoneExpired {
		return &failure.Failure{Cause: failure.CauseStateExpired, Origin: origin,
			Detail: fmt.Sprintf("expired at %s, found by %s", ts.At.UTC().Format(time.RFC3339), ts.Instance)}
	}
	return &failure.Failure{Cause: failure.CauseStateAlreadyUsed, Origin: origin,
		Detail: fmt.Sprintf("consumed at %s by %s", ts.At.UTC().Format(time.RFC3339Nano), ts.Instance)}
}

// Ticket is a login the browser proves it began, read from its binding
// cookie alone: the ACS can check the IdP's response against RequestID
// before it reads the store, and then finish the login in one round trip
// (Commit).
type Ticket struct {
	RelayState string
	RequestID  string
	Origin     string
	binding    string // the cookie's value
}

// Ticket returns the ticket of login rs that r's binding cookie proves,
// if it does: a version 2 value, signed by this SP's ring for rs, whose
// login has not expired. Without one (no cookie, a forged one, an expired
// login, a cookie of an earlier release) the caller uses Finish, which
// reads the store first and names the cause.
func (t *StoreTracker) Ticket(r *http.Request, rs string) (Ticket, bool) {
	origin, _, err := relaystate.Parse(rs)
	if err != nil {
		return Ticket{}, false
	}
	ck, err := r.Cookie(t.cookie.bindingName(rs))
	if err != nil {
		return Ticket{}, false
	}
	b, err := openBinding(t.cookie.Ring, rs, ck.Value)
	if err != nil || b.requestID == "" || !t.now().Before(b.issued.Add(t.ttl)) {
		return Ticket{}, false
	}
	return Ticket{RelayState: rs, RequestID: b.requestID, Origin: origin, binding: ck.Value}, true
}

// Commit finishes the login of tk, whose response has been checked: in one
// atomic operation (one round trip on memory, standalone Redis and
// Sentinel; store.Commit) its tracked request is replaced by a "used"
// tombstone and then is written, if and only if the tracked request is
// still the live one this browser's binding cookie began. It returns the
// consumed request and the results of then. A login already used or
// expired, one of another browser, one not found, and a store failure are
// failures with their causes, and then nothing was written. ok false with
// no failure: the tracked request is of an earlier release (no guard to
// compare): use Finish.
func (t *StoreTracker) Commit(w http.ResponseWriter, r *http.Request, tk Ticket, then []store.Write) (tr *Tracked, results []error, f *failure.Failure, ok bool) {
	now := t.now()
	ts := tombstone{Kind: tombstoneUsed, At: now, Instance: t.instance}
	ctx, cancel := t.ctx(r)
	defer cancel()
	old, results, err := store.CommitTo(ctx, t.store, store.Commit{Key: keyRequest + tk.RelayState, Value: ts.encode(),
		TTL: t.tombstone, IfPrefix: guard(bindingHash(tk.binding)), Then: then})
	switch {
	case errors.Is(err, store.ErrNotFound):
		return nil, nil, t.notFound(tk.Origin, err), true
	case errors.Is(err, store.ErrConflict):
		live, prev, derr := decodeState(old)
		switch {
		case derr != nil:
			return nil, nil, &failure.Failure{Cause: failure.CauseStateUnknown, Origin: tk.Origin, Detail: derr.Error(), Err: derr}, true
		case prev != nil:
			return nil, nil, prev.failure(tk.Origin), true
		case len(old) > 1 && old[1] == trackedVersion:
			return nil, nil, nil, false // begun by an earlier release
		default:
			return nil, nil, &failure.Failure{Cause: failure.CauseBindingMismatch, Origin: tk.Origin, RequestID: live.RequestID,
				Detail: "the binding cookie verifies for this login but is not the one the login began with"}, true
		}
	case err != nil:
		t.onStoreErr("commit", err)
		return nil, nil, failure.FromStore(err, tk.Origin), true
	}
	tr, _, derr := decodeState(old)
	if derr != nil {
		return nil, results, &failure.Failure{Cause: failure.CauseStateUnknown, Origin: tk.Origin, Detail: derr.Error(), Err: derr}, true
	}
	t.cookie.clearBinding(w, tk.RelayState)
	return tr, results, nil, true
}

// Burn marks the login of tk used after its response was refused, as
// Finish would have when it consumed the state first: a second try of the
// same response is told "already used" on every replica, and cannot cost
// another full parse. It writes only over the live tracked request of tk.
func (t *StoreTracker) Burn(r *http.Request, tk Ticket) {
	ts := tombstone{Kind: tombstoneUsed, At: t.now(), Instance: t.instance}
	ctx, cancel := t.ctx(r)
	defer cancel()
	_, _, err := store.CommitTo(ctx, t.store, store.Commit{Key: keyRequest + tk.RelayState, Value: ts.encode(),
		TTL: t.tombstone, IfPrefix: guard(bindingHash(tk.binding))})
	if err != nil && !errors.Is(err, store.ErrNotFound) && !errors.Is(err, store.ErrConflict) {
		t.onStoreErr("commit", err)
	}
}
