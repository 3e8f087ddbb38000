// Package keyringtest makes key rings for tests.
package keyringtest

import (
	"crypto/sha256"
	"testing"

	"github.com/samlha/samlha/sp/keyring"
)

// Ring is a key ring of keys named by secrets (SHA-256 of each), the first
// sealing.
func Ring(t testing.TB, secrets ...string) *keyring.Ring {
	t.Helper()
	keys := make([][32]byte, len(secrets))
	for i, s := range secrets {
		keys[i] = sha256.Sum256([]byte(s))
	}
	r, err := keyring.New(keys)
	if err != nil {
		t.Fatal(err)
	}
	return r
}
