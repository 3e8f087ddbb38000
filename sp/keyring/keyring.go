// Package keyring is the SP's own secret key ring (--session-key): the
// first key seals and signs, every key opens and verifies, so keys rotate
// without a flag day. Each use has its own derived key.
package keyring

import (
	"crypto"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"fmt"
	"hash"
)

// Ring holds the SP's own secret keys (sp.Config.SessionKeys, the
// --session-key flag): the first key seals and signs, every key opens and
// verifies. They are used for three things, each under its own derived
// key, so no two uses ever share key bytes:
//
//   - the salt of every session record's encryption key (package
//     session): a writer to the store who chose a cookie secret still
//     cannot make a record that opens, because the SP's key is the other
//     half;
//   - the MAC of each browser binding cookie (package loginstate): a value
//     this SP (any replica with the same ring) did not issue is refused;
//   - the pepper of the revocation keys (package session), so a reader of
//     the store cannot test a list of NameIDs against them.
type Ring struct {
	keys []Key
}

// Key is one key of the ring and what is derived from it.
type Key struct {
	ID      byte   // a hint naming the key in what it sealed; not secret
	Session []byte // HKDF salt for session records
	Binding []byte // HMAC key for binding cookies
	Pepper  []byte // HMAC key for revocation keys
}

// Labels of the derivations. Changing one invalidates what was made with it.
const (
	labelKeyID      = "samlha sp key id v1"
	labelSession    = "samlha session record salt v1"
	labelBinding    = "samlha binding cookie mac v1"
	labelRevocation = "samlha revocation key pepper v1"
	labelFromSPKey  = "samlha session key from the SP private key v1"
)

// New is the ring of keys, the first of which seals and signs.
func New(keys [][32]byte) (*Ring, error) {
	if len(keys) == 0 {
		return nil, errors.New("no session keys")
	}
	r := &Ring{}
	for _, k := range keys {
		rk := Key{}
		id := hmac.New(sha256.New, k[:])
		id.Write([]byte(labelKeyID))
		rk.ID = id.Sum(nil)[0]
		var err error
		for _, d := range []struct {
			out   *[]byte
			label string
		}{{&rk.Session, labelSession}, {&rk.Binding, labelBinding}, {&rk.Pepper, labelRevocation}} {
			if *d.out, err = hkdf.Expand(sha256.New, k[:], d.label, 32); err != nil {
				return nil, err
			}
		}
		r.keys = append(r.keys, rk)
	}
	return r, nil
}

// ForSP is the ring of sessionKeys or, if there are none, of one key
// derived from the SP's private key spKey, followed (during an SP key
// rollover) by one derived from next: the derived ring then rolls over
// with the key pair, step by step, and no session or login in flight is
// lost (a record opened under the older key is sealed again under the
// first).
func ForSP(sessionKeys [][32]byte, spKey, next crypto.Signer) (*Ring, error) {
	keys := sessionKeys
	if len(keys) == 0 {
		k, err := keyFromSigner(spKey)
		if err != nil {
			return nil, err
		}
		keys = [][32]byte{k}
		if next != nil {
			if k, err = keyFromSigner(next); err != nil {
				return nil, err
			}
			keys = append(keys, k)
		}
	}
	return New(keys)
}

// keyFromSigner derives the default session key from the SP's private key,
// which every replica must share already (it signs AuthnRequests and
// decrypts assertions): replicas agree on it without another secret to
// distribute. --session-key replaces it, and rotates independently of the
// SAML key pair.
func keyFromSigner(k crypto.Signer) ([32]byte, error) {
	var out [32]byte
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return out, fmt.Errorf("cannot derive a session key from the SP key (%T): give session keys: %w", k, err)
	}
	b, err := hkdf.Key(sha256.New, der, nil, labelFromSPKey, 32)
	if err != nil {
		return out, err
	}
	copy(out[:], b)
	return out, nil
}

// Sealing is the key that seals and signs.
func (r *Ring) Sealing() *Key { return &r.keys[0] }

// ByID returns the keys whose ID is id, sealing key first (IDs are one
// byte, so two keys may share one).
func (r *Ring) ByID(id byte) []*Key {
	var out []*Key
	for i := range r.keys {
		if r.keys[i].ID == id {
			out = append(out, &r.keys[i])
		}
	}
	return out
}

// All is every key of the ring, sealing key first.
func (r *Ring) All() []Key { return r.keys }

// MAC is HMAC-SHA256 under key.
func MAC(key []byte) hash.Hash { return hmac.New(sha256.New, key) }
