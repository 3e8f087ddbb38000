package loginstate

import (
	"crypto"
	"errors"
	"net/http"

	"github.com/crewjam/saml/samlsp"
	"github.com/golang-jwt/jwt/v5"

	"github.com/samlha/samlha/sp/failure"
	"github.com/samlha/samlha/sp/keypair"
	"github.com/samlha/samlha/store"
)

// Either finishes logins tracked either way on a replica on the way from
// stateless mode to a shared store (README "From stateless to shared
// state"): a RelayState whose tracking cookie (or its tombstone) the
// browser sent is finished by Cookies, as a stateless replica finishes it
// (signature, RelayState binding, tombstone); any other by Store, taken
// once from the shared store, binding cookie checked, as a store replica
// finishes it. New logins are begun by the replica's own kind: Cookies
// when CookiesFirst (a stateless replica), else Store.
type Either struct {
	Cookies      *StatelessTracker
	Store        *StoreTracker
	CookiesFirst bool
}

var _ Tracker = Either{}

// Begin implements Tracker.
func (e Either) Begin(w http.ResponseWriter, r *http.Request, requestID, returnURI string) (string, error) {
	if e.CookiesFirst {
		return e.Cookies.Begin(w, r, requestID, returnURI)
	}
	return e.Store.Begin(w, r, requestID, returnURI)
}

// Finish implements Tracker.
func (e Either) Finish(w http.ResponseWriter, r *http.Request, rs string) (*Tracked, *failure.Failure) {
	if e.Cookies.Sent(r, rs) {
		tr, f := e.Cookies.Finish(w, r, rs)
		if f == nil {
			f = e.Store.Consume(r, rs, tr.Origin)
		}
		if f != nil {
			return nil, f
		}
		return tr, nil
	}
	tr, f := e.Store.Finish(w, r, rs)
	if f != nil && f.Cause == failure.CauseStateUnknown && e.CookiesFirst {
		// Not in the store either: most likely a login of this replica's
		// own kind whose cookie did not come back; the stateless tracker
		// names why (binding-cookie-missing, state-unknown).
		return e.Cookies.Finish(w, r, rs)
	}
	return tr, f
}

// Consume records in the store, once, that login rs, tracked in a
// stateless replica's signed cookie, was consumed here: the first call for
// rs on any replica sharing the store wins, and a later one (the same
// cookie and response posted again, from another browser, to another
// replica) is state-already-used before its response is parsed. (The
// assertion's replay record refuses it anyway; this names it, and spares
// the parse.) The record lives as long as the cookie could, and then a
// tombstone's time.
func (t *StoreTracker) Consume(r *http.Request, rs, origin string) *failure.Failure {
	ts := tombstone{Kind: tombstoneUsed, At: t.now(), Instance: t.instance}
	ctx, cancel := t.ctx(r)
	defer cancel()
	err := t.store.PutIfAbsent(ctx, keyRequest+rs, ts.encode(), t.ttl+t.tombstone)
	switch {
	case errors.Is(err, store.ErrExists):
		if old, gerr := t.store.Get(ctx, keyRequest+rs); gerr == nil {
			if _, prev, derr := decodeState(old); derr == nil && prev != nil {
				return prev.failure(origin)
			}
		}
		return &failure.Failure{Cause: failure.CauseStateAlreadyUsed, Origin: origin,
			Detail: "the login of this tracking cookie was consumed before, on a replica sharing the store"}
	case err != nil:
		t.onStoreErr("put-if-absent", err)
		return failure.FromStore(err, origin)
	}
	return nil
}

// Sent reports whether r carries the tracking cookie of rs, or its
// tombstone.
func (t *StatelessTracker) Sent(r *http.Request, rs string) bool {
	_, err := r.Cookie(t.cookieName(rs))
	return err == nil
}

// KeysCodec is crewjam's JWTTrackedRequestCodec verifying with more than
// one key: Key signs, and a tracking cookie signed by Key or by one of Next
// (the SP key being rolled in, --sp-key-next) decodes. Audience, issuer,
// expiry and algorithm are checked by crewjam's Decode under each key.
type KeysCodec struct {
	samlsp.JWTTrackedRequestCodec
	Next []crypto.Signer
}

// Decode implements samlsp.TrackedRequestCodec.
func (c KeysCodec) Decode(signed string) (*samlsp.TrackedRequest, error) {
	return keypair.TryKeys(c.Key, c.Next, jwt.ErrTokenSignatureInvalid, func(k crypto.Signer) (*samlsp.TrackedRequest, error) {
		cc := c.JWTTrackedRequestCodec
		cc.Key = k
		return cc.Decode(signed)
	})
}
