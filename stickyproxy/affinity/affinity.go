// Package affinity seals and opens the value of stickyproxy's affinity
// cookie.
//
// A value names a target by an opaque ID (the target's name, never its
// address) and carries an absolute expiry. It is sealed with AES-256-GCM
// under the first key of a key ring and opened with any key of the ring, so
// keys rotate (add the new key first, keep the old one until every cookie it
// sealed has expired) and several proxy instances given the same keys accept
// each other's cookies. A client can neither read which target a cookie names
// nor forge, alter or extend one.
//
// Wire format (version 1), base64url without padding:
//
//	0x01 | key-id (1 byte) | nonce (12 bytes) | AES-GCM(expiry unix seconds, 8 bytes big-endian | target ID) | tag (16 bytes)
//
// The key ID is the first byte of SHA-256 over the key with a fixed label: a
// hint that saves trying every key, not a secret. The additional data bound
// into the tag is the version, the key ID and the codec's purpose (the cookie
// name), so a value minted for one cookie is refused under another.
package affinity

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"
	"unsafe"
)

const (
	version   = 1
	nonceSize = 12
	tagSize   = 16
	expSize   = 8
	// header is version, key ID and nonce.
	headerSize = 2 + nonceSize
	// MaxIDLen is the longest target ID a value may carry.
	MaxIDLen = 64
	// maxRawLen and MaxValueLen bound the decoded and encoded value.
	maxRawLen = headerSize + expSize + MaxIDLen + tagSize
	// MaxValueLen is the longest cookie value Open will look at.
	MaxValueLen = (maxRawLen*8 + 5) / 6
	minRawLen   = headerSize + expSize + 1 + tagSize
	// MinKeyLen is the shortest secret accepted for a key.
	MinKeyLen = 16
)

// Errors returned by Open. Every one means "treat as no cookie".
var (
	// ErrMalformed: not base64url, wrong length or unknown version.
	ErrMalformed = errors.New("affinity: malformed cookie value")
	// ErrForged: no key of the ring authenticates it (tampered, forged, or
	// sealed under a key that is no longer in the ring).
	ErrForged = errors.New("affinity: cookie value not authentic")
	// ErrExpired: authentic, but past its expiry.
	ErrExpired = errors.New("affinity: cookie expired")
)

type key struct {
	id   byte
	aead cipher.AEAD
	aad  []byte // version, id, purpose
}

// Codec seals and opens affinity values. It is safe for concurrent use.
type Codec struct {
	keys []key
}

// DeriveKey turns a secret string into a 32-byte AES key. The secret is used
// as-is if it is 32 bytes encoded as base64 (standard or URL alphabet, padded
// or not) or as 64 hex digits; otherwise any string of at least MinKeyLen
// bytes is accepted and hashed with SHA-256 under a fixed label.
func DeriveKey(secret string) ([32]byte, error) {
	var k [32]byte
	secret = strings.TrimSpace(secret)
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.URLEncoding, base64.RawStdEncoding, base64.RawURLEncoding} {
		if b, err := enc.DecodeString(secret); err == nil && len(b) == 32 {
			copy(k[:], b)
			return k, nil
		}
	}
	if b, err := hex.DecodeString(secret); err == nil && len(b) == 32 {
		copy(k[:], b)
		return k, nil
	}
	if len(secret) < MinKeyLen {
		return k, fmt.Errorf("affinity: key is %d bytes, want at least %d (or 32 bytes as base64 or hex)", len(secret), MinKeyLen)
	}
	return sha256.Sum256([]byte("stickyproxy affinity key v1\x00" + secret)), nil
}

// NewKey returns a random key, encoded as base64url, fit for DeriveKey.
func NewKey() string {
	var b [32]byte
	_, _ = rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// New returns a codec for purpose (the cookie name) over keys: keys[0] seals,
// every key opens. It needs at least one key.
func New(purpose string, keys ...[32]byte) (*Codec, error) {
	if len(keys) == 0 {
		return nil, errors.New("affinity: no keys")
	}
	c := &Codec{}
	for _, k := range keys {
		blk, err := aes.NewCipher(k[:])
		if err != nil {
			return nil, err
		}
		aead, err := cipher.NewGCM(blk)
		if err != nil {
			return nil, err
		}
		sum := sha256.Sum256(append([]byte("stickyproxy affinity key id\x00"), k[:]...))
		c.keys = append(c.keys, key{id: sum[0], aead: aead, aad: append([]byte{version, sum[0]}, purpose...)})
	}
	return c, nil
}

// Seal returns the cookie value naming id until expires (second precision).
func (c *Codec) Seal(id string, expires time.Time) (string, error) {
	if id == "" || len(id) > MaxIDLen {
		return "", fmt.Errorf("affinity: target ID length %d, want 1..%d", len(id), MaxIDLen)
	}
	k := c.keys[0]
	raw := make([]byte, headerSize, headerSize+expSize+len(id)+tagSize)
	raw[0] = version
	raw[1] = k.id
	if _, err := rand.Read(raw[2:headerSize]); err != nil {
		return "", err
	}
	var pt [expSize + MaxIDLen]byte
	binary.BigEndian.PutUint64(pt[:expSize], uint64(expires.Unix()))
	n := copy(pt[expSize:], id)
	raw = k.aead.Seal(raw, raw[2:headerSize], pt[:expSize+n], k.aad)
	return base64.RawURLEncoding.EncodeToString(raw), nil
}

// Opened is what an authentic value says.
type Opened struct {
	// ID is the target ID. It aliases the buffer given to Open.
	ID      []byte
	Expires int64 // unix seconds
}

// Buffer is scratch space for Open. It escapes into the cipher, so a caller
// on a hot path keeps Buffers in a sync.Pool rather than declaring them.
type Buffer [2 * maxRawLen]byte

// Open authenticates value at time now (unix seconds) using buf as scratch
// space. On ErrExpired the returned Opened is filled in (the value was
// authentic), which lets a caller say which target an expired cookie named.
func (c *Codec) Open(buf *Buffer, value string, now int64) (Opened, error) {
	if len(value) > MaxValueLen || len(value) < (minRawLen*8+5)/6 {
		return Opened{}, ErrMalformed
	}
	// Decode without copying value into a []byte: base64 only reads it.
	src := unsafe.Slice(unsafe.StringData(value), len(value))
	n, err := base64.RawURLEncoding.Decode(buf[:], src)
	if err != nil || n < minRawLen || buf[0] != version {
		return Opened{}, ErrMalformed
	}
	raw := buf[:n]
	for _, k := range c.keys {
		if k.id != raw[1] {
			continue
		}
		// The plaintext goes to the second half of buf, so that a failed
		// attempt (which clears its output) leaves the value intact for the
		// next key with the same ID.
		pt, err := k.aead.Open(buf[maxRawLen:maxRawLen], raw[2:headerSize], raw[headerSize:], k.aad)
		if err != nil {
			continue
		}
		o := Opened{ID: pt[expSize:], Expires: int64(binary.BigEndian.Uint64(pt[:expSize]))}
		if len(o.ID) == 0 {
			return Opened{}, ErrMalformed
		}
		if now >= o.Expires {
			return o, ErrExpired
		}
		return o, nil
	}
	return Opened{}, ErrForged
}
