package sp

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/crewjam/saml/samlsp"

	"github.com/samlha/samlha/sp/relaystate"
	"github.com/samlha/samlha/store"
)

// bindingCookieName is the cookie that binds logins to the browser that
// began them. One value per browser: a response presented with another
// browser's value is a binding-mismatch (login CSRF), one presented with
// none is binding-cookie-missing (SameSite, blocked cookies).
const bindingCookieName = "samlha_binding"

const (
	keyRequest = "req:"
	keySession = "sess:"
	keyReplay  = "replay:"
	keyRevoked = "revoked:"
)

// loginState begins and finishes the tracking of logins: the store-backed
// tracker and the stateless (signed cookie) one.
type loginState interface {
	// begin tracks a new AuthnRequest and returns its RelayState.
	begin(w http.ResponseWriter, r *http.Request, requestID, returnURI string) (string, error)
	// finish consumes the login named by relayState, exactly once, and
	// checks that r comes from the browser that began it.
	finish(w http.ResponseWriter, r *http.Request, relayState string) (*trackedRequest, *Failure)
}

// storeTracker keeps tracked requests in a store.Store. It implements
// crewjam's samlsp.RequestTracker, so the library's own flows can use it,
// and loginState, whose finish is the atomic consume the ACS relies on.
type storeTracker struct {
	store      store.Store
	storeKind  string
	instance   string
	ttl        time.Duration // how long a login may take
	tombstone  time.Duration // how long "already used"/"expired" is remembered
	opTimeout  time.Duration
	now        func() time.Time
	cookie     cookieSettings
	onStoreErr func(op string, err error)
}

var (
	_ samlsp.RequestTracker = (*storeTracker)(nil)
	_ loginState            = (*storeTracker)(nil)
)

// cookieSettings are the attributes of the cookies the SP sets.
type cookieSettings struct {
	secure   bool
	sameSite http.SameSite
	domain   string
}

// bindingValue returns the browser's binding cookie value, setting a new
// cookie on w if the browser has no well-formed one.
func (c cookieSettings) bindingValue(w http.ResponseWriter, r *http.Request) string {
	if ck, err := r.Cookie(bindingCookieName); err == nil && relaystate.ValidToken(ck.Value, 32) {
		return ck.Value
	}
	v := relaystate.Token(32)
	http.SetCookie(w, &http.Cookie{
		Name:     bindingCookieName,
		Value:    v,
		Path:     "/",
		Domain:   c.domain,
		HttpOnly: true,
		Secure:   c.secure,
		SameSite: c.sameSite,
	})
	return v
}

func (t *storeTracker) ctx(r *http.Request) (context.Context, context.CancelFunc) {
	return context.WithTimeout(r.Context(), t.opTimeout)
}

func (t *storeTracker) begin(w http.ResponseWriter, r *http.Request, requestID, returnURI string) (string, error) {
	rs := relaystate.New(t.instance)
	now := t.now()
	tr := trackedRequest{
		RequestID: requestID,
		URI:       returnURI,
		Origin:    t.instance,
		Created:   now,
		Expires:   now.Add(t.ttl),
		Binding:   bindingHash(t.cookie.bindingValue(w, r)),
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

func (t *storeTracker) finish(w http.ResponseWriter, r *http.Request, rs string) (*trackedRequest, *Failure) {
	origin, _, perr := relaystate.Parse(rs)
	if perr != nil {
		return nil, &Failure{Cause: CauseStateUnknown, Detail: perr.Error(), Err: perr}
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
		f := &Failure{Cause: CauseStateUnknown, Origin: origin, Err: err}
		switch {
		case origin != t.instance && !store.Shared(t.storeKind):
			f.Cause = CauseStateCrossInstance
			f.Detail = fmt.Sprintf("login began on %s; this is %s and the %s store is per instance", origin, t.instance, t.storeKind)
		case origin == t.instance && !store.Shared(t.storeKind):
			f.Detail = "no such login on this instance: never issued, expired long ago, or lost in a restart"
		default:
			f.Detail = fmt.Sprintf("no such login in the shared store (began on %s): never issued or expired long ago", origin)
		}
		return nil, f
	case err != nil:
		t.onStoreErr("swap", err)
		return nil, storeFailure(err, origin)
	}
	tr, prev, derr := decodeState(old)
	if derr != nil {
		return nil, &Failure{Cause: CauseStateUnknown, Origin: origin, Detail: derr.Error(), Err: derr}
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
			return nil, &Failure{Cause: CauseStateExpired, Origin: origin,
				Detail: fmt.Sprintf("expired at %s, found by %s", prev.At.UTC().Format(time.RFC3339), prev.Instance)}
		}
		return nil, &Failure{Cause: CauseStateAlreadyUsed, Origin: origin,
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
		return nil, &Failure{Cause: CauseStateExpired, Origin: origin, RequestID: tr.RequestID,
			Detail: fmt.Sprintf("began %s, expired %s", tr.Created.UTC().Format(time.RFC3339), tr.Expires.UTC().Format(time.RFC3339))}
	}
	if f := checkBinding(r, tr); f != nil {
		// Whoever posted this is not the browser that began the login:
		// put the login back so a forged post cannot burn a real one.
		if perr := t.store.Put(ctx, keyRequest+rs, old, tr.Expires.Sub(now)+t.tombstone); perr != nil {
			t.onStoreErr("put", perr)
		}
		f.Origin = origin
		return nil, f
	}
	return tr, nil
}

// checkBinding checks that r carries the binding cookie of the browser that
// began tr.
func checkBinding(r *http.Request, tr *trackedRequest) *Failure {
	ck, err := r.Cookie(bindingCookieName)
	if err != nil {
		return &Failure{Cause: CauseBindingCookieMissing, RequestID: tr.RequestID,
			Detail: "no " + bindingCookieName + " cookie on the ACS request", Err: err}
	}
	if !tr.bindingMatches(ck.Value) {
		return &Failure{Cause: CauseBindingMismatch, RequestID: tr.RequestID,
			Detail: "the " + bindingCookieName + " cookie is not the one the login began with"}
	}
	return nil
}

// storeFailure classifies an error from the state layer: a full store, an
// unreachable one, or (not a store error at all, such as a cookie that
// could not be signed) an internal error, so an outage is never claimed
// for what was not one.
func storeFailure(err error, origin string) *Failure {
	c := CauseInternal
	switch {
	case errors.Is(err, store.ErrFull):
		c = CauseStoreFull
	case store.IsUnavailable(err):
		c = CauseStoreUnavailable
	case errors.Is(err, context.DeadlineExceeded):
		// The SP bounds every store call by its StoreTimeout: a call that
		// ran out of it met a store too slow to answer, not a bug.
		c = CauseStoreUnavailable
	}
	return &Failure{Cause: c, Origin: origin, Detail: err.Error(), Err: err}
}

// TrackRequest implements samlsp.RequestTracker.
func (t *storeTracker) TrackRequest(w http.ResponseWriter, r *http.Request, samlRequestID string) (string, error) {
	return t.begin(w, r, samlRequestID, r.URL.RequestURI())
}

// StopTrackingRequest implements samlsp.RequestTracker. It consumes the
// tracked request; a second call fails.
func (t *storeTracker) StopTrackingRequest(w http.ResponseWriter, r *http.Request, index string) error {
	if _, f := t.finish(w, r, index); f != nil {
		return f
	}
	return nil
}

// GetTrackedRequests implements samlsp.RequestTracker: the request named by
// the RelayState of r's form, if it is pending and bound to this browser.
func (t *storeTracker) GetTrackedRequests(r *http.Request) []samlsp.TrackedRequest {
	rs := r.Form.Get("RelayState")
	if rs == "" {
		return nil
	}
	tr, err := t.GetTrackedRequest(r, rs)
	if err != nil {
		return nil
	}
	return []samlsp.TrackedRequest{*tr}
}

// GetTrackedRequest implements samlsp.RequestTracker without consuming the
// request.
func (t *storeTracker) GetTrackedRequest(r *http.Request, index string) (*samlsp.TrackedRequest, error) {
	ctx, cancel := t.ctx(r)
	defer cancel()
	b, err := t.store.Get(ctx, keyRequest+index)
	if err != nil {
		return nil, err
	}
	tr, ts, err := decodeState(b)
	if err != nil {
		return nil, err
	}
	if ts != nil || t.now().After(tr.Expires) {
		return nil, fmt.Errorf("login %s is no longer pending: %w", index, store.ErrNotFound)
	}
	if f := checkBinding(r, tr); f != nil {
		return nil, f
	}
	return &samlsp.TrackedRequest{Index: index, SAMLRequestID: tr.RequestID, URI: tr.URI}, nil
}
