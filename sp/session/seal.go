package session

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/samlha/samlha/sp/keyring"
	"github.com/samlha/samlha/sp/relaystate"
)

// A session is found by its ID and read with its secret, both of which only
// the browser holds (the model of oauth2-proxy's Redis tickets):
//
//	cookie:    <instance>~<id>.<secret>
//	store key: "sess:" + base64url(SHA-256(<instance>~<id>))
//	value:     0x01 | key ID | nonce (12) | AES-256-GCM(JSON of the Session) | tag (16)
//
// The AES key is HKDF-SHA256 with the cookie's secret as input keying
// material, the SP's session key (the sealing key of --session-key's ring,
// named by the key ID) as salt, and the store key as info; the version, key
// ID and store key are also the GCM additional data. So a reader of the
// store learns no identity (it lacks the secrets), a writer of the store
// cannot make a record that opens (it lacks the SP key, even for a cookie
// it chose), and a record moved to another key does not open there.
// <instance> names the replica that made the session, for diagnosis
// (session-not-found-cross-instance); it is not secret.
const (
	sessionIDBytes     = 16
	sessionSecretBytes = 32
	sessionIDLen       = 22 // base64url of sessionIDBytes
	sessionSecretLen   = 43 // base64url of sessionSecretBytes
	sessionSecretSep   = "."
	// tagsBytes is the length of the revocation tags a cookie carries: the
	// ring key's ID and the two revocation keys' MACs.
	tagsBytes = 1 + 2*sha256.Size
	tagsLen   = 87 // base64url of tagsBytes
	// maxSessionCookieLen is the longest session cookie value samlha issues.
	maxSessionCookieLen = relaystate.MaxInstanceIDLen + len(relaystate.Sep) + sessionIDLen + len(sessionSecretSep) + sessionSecretLen +
		len(sessionSecretSep) + tagsLen

	sealVersion    = 1
	sealNonceLen   = 12
	sealHeaderLen  = 2 + sealNonceLen
	sealOverhead   = sealHeaderLen + 16
	labelSealKey   = "samlha session record key v1\x00"
	maxSessionJSON = 256 << 10 // a session larger than this is refused, not stored
)

// Cookie is a parsed session cookie value:
//
//	<instance>~<id>.<secret>[.<tags>]
//
// tags (since the release that reads a session in one round trip) names the
// session's revocation keys, so a replica reads the session and whether it
// was revoked at once (Provider.GetSession): base64url(ring key ID | the
// NameID revocation key's MAC | the SessionIndex revocation key's MAC).
// They are checked against the session once it is open, so a cookie that
// names other keys is refused; they reveal no identity (MACs under the SP's
// pepper).
type Cookie struct {
	instance string
	id       string
	secret   []byte
	tags     []byte // nil: a cookie of an earlier release
}

func NewCookie(instance string) Cookie {
	secret := make([]byte, sessionSecretBytes)
	_, _ = rand.Read(secret)
	return Cookie{instance: instance, id: relaystate.Token(sessionIDBytes), secret: secret}
}

// String is the cookie value.
func (c Cookie) String() string {
	v := c.instance + relaystate.Sep + c.id + sessionSecretSep + base64.RawURLEncoding.EncodeToString(c.secret)
	if c.tags != nil {
		v += sessionSecretSep + base64.RawURLEncoding.EncodeToString(c.tags)
	}
	return v
}

// StoreKey is where the session's record lives. It hashes the public part
// only, so the store never holds anything that opens a record.
func (c Cookie) StoreKey() string {
	var buf [storeKeyLen]byte
	return string(c.AppendStoreKey(buf[:0]))
}

// storeKeyLen is the length of a store key: the prefix and the base64 of
// a SHA-256.
const storeKeyLen = len(keySession) + 43

// AppendStoreKey appends StoreKey to b, without allocating when b has
// room: the session cache looks its entries up on every request.
func (c Cookie) AppendStoreKey(b []byte) []byte {
	var in [128]byte // on the stack for any cookie ParseCookie accepts
	sum := sha256.Sum256(append(append(append(in[:0], c.instance...), relaystate.Sep...), c.id...))
	return base64.RawURLEncoding.AppendEncode(append(b, keySession...), sum[:])
}

var errSessionCookie = errors.New("not a samlha session cookie")

// ParseCookie parses a session cookie value of exactly the form
// NewCookie makes. It never panics, whatever v is.
func ParseCookie(v string) (Cookie, error) {
	if len(v) > maxSessionCookieLen {
		return Cookie{}, fmt.Errorf("%w: %d bytes, longer than %d", errSessionCookie, len(v), maxSessionCookieLen)
	}
	inst, rest, ok := strings.Cut(v, relaystate.Sep)
	if !ok || !relaystate.ValidInstanceID(inst) {
		return Cookie{}, fmt.Errorf("%w: no valid instance", errSessionCookie)
	}
	id, sec, ok := strings.Cut(rest, sessionSecretSep)
	sec, tags, hasTags := strings.Cut(sec, sessionSecretSep)
	if !ok || !relaystate.ValidToken(id, sessionIDBytes) || !relaystate.ValidToken(sec, sessionSecretBytes) ||
		hasTags && !relaystate.ValidToken(tags, tagsBytes) {
		return Cookie{}, fmt.Errorf("%w: not <instance>~<id>.<secret>[.<tags>]", errSessionCookie)
	}
	secret, err := base64.RawURLEncoding.DecodeString(sec)
	if err != nil {
		return Cookie{}, fmt.Errorf("%w: %v", errSessionCookie, err)
	}
	c := Cookie{instance: inst, id: id, secret: secret}
	if hasTags {
		if c.tags, err = base64.RawURLEncoding.DecodeString(tags); err != nil {
			return Cookie{}, fmt.Errorf("%w: %v", errSessionCookie, err)
		}
	}
	return c, nil
}

// Errors of openSession.
var (
	// errSealMalformed: the stored value is not a sealed record at all.
	errSealMalformed = errors.New("stored session is not a sealed record")
	// errSealForged: no key of the ring opens it with this cookie's
	// secret: written by someone without the SP key or the cookie, moved
	// from another key, tampered with, or sealed under a key no longer in
	// the ring.
	errSealForged = errors.New("stored session does not open with this cookie and the SP's session keys")
)

func recordAEAD(rk *keyring.Key, c Cookie, key string) (cipher.AEAD, error) {
	k, err := hkdf.Key(sha256.New, c.secret, rk.Session, labelSealKey+key, 32)
	if err != nil {
		return nil, err
	}
	blk, err := aes.NewCipher(k)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(blk)
}

func recordAAD(id byte, key string) []byte {
	return append([]byte{sealVersion, id}, key...)
}

// Seal encodes s and seals it for the session of cookie c under the
// ring's sealing key.
func Seal(r *keyring.Ring, c Cookie, s *Session) ([]byte, error) {
	plain, err := json.Marshal(s)
	if err != nil {
		return nil, err
	}
	if len(plain) > maxSessionJSON {
		return nil, fmt.Errorf("session of %d bytes is larger than %d (too many or too large attributes)", len(plain), maxSessionJSON)
	}
	return sealPlain(r, c, plain)
}

// sealPlain seals the encoded session plain for the session of cookie c
// under the ring's sealing key.
func sealPlain(r *keyring.Ring, c Cookie, plain []byte) ([]byte, error) {
	rk := r.Sealing()
	key := c.StoreKey()
	aead, err := recordAEAD(rk, c, key)
	if err != nil {
		return nil, err
	}
	out := make([]byte, sealHeaderLen, sealOverhead+len(plain))
	out[0], out[1] = sealVersion, rk.ID
	_, _ = rand.Read(out[2:sealHeaderLen])
	return aead.Seal(out, out[2:sealHeaderLen], plain, recordAAD(rk.ID, key)), nil
}

// Open opens the stored value rec of the session of cookie c with
// any key of the ring, and decodes it. It reports whether the sealing key
// opened it (false: a key being rotated out did, and the record should be
// sealed again).
func Open(r *keyring.Ring, c Cookie, rec []byte) (s *Session, current bool, err error) {
	if len(rec) < sealOverhead || rec[0] != sealVersion {
		return nil, false, errSealMalformed
	}
	key := c.StoreKey()
	for _, rk := range r.ByID(rec[1]) {
		aead, err := recordAEAD(rk, c, key)
		if err != nil {
			return nil, false, err
		}
		plain, err := aead.Open(nil, rec[2:sealHeaderLen], rec[sealHeaderLen:], recordAAD(rk.ID, key))
		if err != nil {
			continue
		}
		s, err := decodeSession(plain)
		return s, rk == r.Sealing(), err
	}
	return nil, false, errSealForged
}

// decodeSession decodes the plaintext of a session record. It is the
// session codec's decoder: it never panics and refuses what sealSession
// would not have written.
func decodeSession(plain []byte) (*Session, error) {
	if len(plain) > maxSessionJSON {
		return nil, fmt.Errorf("%w: session of %d bytes", errSealMalformed, len(plain))
	}
	s := &Session{}
	if err := json.Unmarshal(plain, s); err != nil {
		return nil, fmt.Errorf("%w: %v", errSealMalformed, err)
	}
	if s.Created.IsZero() || s.Expires.IsZero() {
		return nil, fmt.Errorf("%w: no creation or expiry time", errSealMalformed)
	}
	return s, nil
}

// Instance is the replica that made the session (not secret; for
// diagnosis).
func (c Cookie) Instance() string { return c.instance }
