// Package relaystate holds the one definition of the values samlha's SP
// issues and its sticky proxy reads: the RelayState of a login, the instance
// IDs of replicas, and the random tokens both carry.
//
// It is a leaf: it imports nothing of samlha's, so stickyproxy can read a
// RelayState without depending on the SP (see store/layering_test.go).
//
// Format (v1):
//
//	<instance>~<nonce>
//
// <instance> is the ID of the replica that began the login and matches
// [A-Za-z0-9._-]{1,40}; <nonce> is 32 characters of unpadded base64url (24
// random bytes). The whole is at most 73 bytes, under SAML's 80-byte limit.
// The nonce makes it unguessable; the instance is a routing and diagnosis
// hint that anyone can read, so it names a replica, never an address.
package relaystate

import (
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"strings"
)

const (
	// Sep separates the instance from the nonce.
	Sep = "~"
	// NonceBytes is the entropy of a nonce; NonceLen its length in text.
	NonceBytes = 24
	NonceLen   = 32
	// MaxInstanceIDLen is the longest instance ID.
	MaxInstanceIDLen = 40
	// MaxLen is the longest RelayState samlha issues.
	MaxLen = MaxInstanceIDLen + len(Sep) + NonceLen
)

// ValidInstanceID reports whether id can name a replica: 1 to 40 characters
// of [A-Za-z0-9._-].
func ValidInstanceID(id string) bool {
	if id == "" || len(id) > MaxInstanceIDLen {
		return false
	}
	for i := 0; i < len(id); i++ {
		if !idByte(id[i]) {
			return false
		}
	}
	return true
}

func idByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-'
}

// SanitizeInstanceID turns s (a host name, say) into a valid instance ID by
// replacing other characters with '-' and truncating it to 40 characters.
func SanitizeInstanceID(s string) string {
	b := []byte(s)
	if len(b) > MaxInstanceIDLen {
		b = b[:MaxInstanceIDLen]
	}
	for i, c := range b {
		if !idByte(c) {
			b[i] = '-'
		}
	}
	if len(b) == 0 {
		return "sp"
	}
	return string(b)
}

// New returns a fresh RelayState for a login begun on instance.
func New(instance string) string {
	return instance + Sep + Token(NonceBytes)
}

// Parse splits a RelayState into the instance that began the login and its
// nonce. It returns an error if rs is not exactly of the v1 form.
func Parse(rs string) (instance, nonce string, err error) {
	if len(rs) > MaxLen {
		return "", "", fmt.Errorf("RelayState of %d bytes is longer than samlha's %d", len(rs), MaxLen)
	}
	instance, nonce, ok := strings.Cut(rs, Sep)
	if !ok {
		return "", "", fmt.Errorf("RelayState has no %q separator", Sep)
	}
	if !ValidInstanceID(instance) {
		return "", "", fmt.Errorf("RelayState names no valid instance")
	}
	if !ValidToken(nonce, NonceBytes) {
		return "", "", fmt.Errorf("RelayState nonce is not %d characters of base64url", NonceLen)
	}
	return instance, nonce, nil
}

// Token returns n random bytes as unpadded base64url.
func Token(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand.Read does not fail on supported platforms
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

// ValidToken reports whether s has the form of Token(n): exactly the length
// of n bytes in unpadded base64url, and only its alphabet.
func ValidToken(s string, n int) bool {
	if len(s) != base64.RawURLEncoding.EncodedLen(n) {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}
