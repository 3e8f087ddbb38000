package sp

import (
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"strings"
)

// RelayState format (v1), shared with stickyproxy's SAML-aware routing:
//
//	<instance>~<nonce>
//
// <instance> is the ID of the replica that began the login and matches
// [A-Za-z0-9._-]{1,40}; <nonce> is 32 characters of unpadded base64url (24
// random bytes). The whole is at most 73 bytes, under SAML's 80-byte limit.
// The nonce makes it unguessable; the instance is a routing and diagnosis
// hint that anyone can read, so it names a replica, never an address. A
// forged instance can only make a diagnosis misleading: the state itself is
// found by the whole RelayState and bound to the browser that began it.
const (
	relayStateSep    = "~"
	nonceBytes       = 24
	nonceLen         = 32 // base64url of nonceBytes, unpadded
	maxInstanceIDLen = 40
	maxRelayStateLen = maxInstanceIDLen + len(relayStateSep) + nonceLen
	sessionIDRandLen = 32
)

// ValidInstanceID reports whether id can be carried in a RelayState and a
// session ID: 1 to 40 characters of [A-Za-z0-9._-].
func ValidInstanceID(id string) bool {
	if id == "" || len(id) > maxInstanceIDLen {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// SanitizeInstanceID turns s (a host name, say) into a valid instance ID by
// replacing other characters with '-' and truncating it to 40 characters.
func SanitizeInstanceID(s string) string {
	b := []byte(s)
	if len(b) > maxInstanceIDLen {
		b = b[:maxInstanceIDLen]
	}
	for i, c := range b {
		if !ValidInstanceID(string(c)) {
			b[i] = '-'
		}
	}
	if len(b) == 0 {
		return "sp"
	}
	return string(b)
}

// newRelayState returns a fresh RelayState for a login begun on instance.
func newRelayState(instance string) string {
	return instance + relayStateSep + randomToken(nonceBytes)
}

// parseRelayState splits a RelayState into the instance that began the login
// and its nonce. It returns an error if rs is not of the v1 format.
func parseRelayState(rs string) (instance, nonce string, err error) {
	if len(rs) > maxRelayStateLen {
		return "", "", fmt.Errorf("RelayState of %d bytes is longer than samlha's %d", len(rs), maxRelayStateLen)
	}
	instance, nonce, ok := strings.Cut(rs, relayStateSep)
	if !ok {
		return "", "", fmt.Errorf("RelayState has no %q separator", relayStateSep)
	}
	if !ValidInstanceID(instance) {
		return "", "", fmt.Errorf("RelayState names no valid instance")
	}
	if len(nonce) != nonceLen {
		return "", "", fmt.Errorf("RelayState nonce has %d characters, want %d", len(nonce), nonceLen)
	}
	if _, err := base64.RawURLEncoding.DecodeString(nonce); err != nil {
		return "", "", fmt.Errorf("RelayState nonce is not base64url")
	}
	return instance, nonce, nil
}

// randomToken returns n random bytes as unpadded base64url.
func randomToken(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand.Read does not fail on supported platforms
	}
	return base64.RawURLEncoding.EncodeToString(b)
}
