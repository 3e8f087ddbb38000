package sp

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"io"
	"testing"
	"time"
)

// opaqueSigner is a key whose private part cannot be read (an HSM's).
type opaqueSigner struct{ pub crypto.PublicKey }

func (o opaqueSigner) Public() crypto.PublicKey { return o.pub }
func (o opaqueSigner) Sign(io.Reader, []byte, crypto.SignerOpts) ([]byte, error) {
	return nil, nil
}

// Without SessionKeys every replica derives the same ring from the SP key it
// shares, and replicas with another SP key derive another; a key that
// cannot be exported needs SessionKeys.
func TestSessionKeyRingDefault(t *testing.T) {
	t.Parallel()
	k1, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	k2, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	a, err := sessionKeyRing(Config{Key: k1})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := sessionKeyRing(Config{Key: k1})
	c, _ := sessionKeyRing(Config{Key: k2})
	rs := "sp-1~" + "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
	v := a.issueBinding(rs, time.Unix(1_800_000_000, 0))
	if err := b.verifyBinding(rs, v); err != nil {
		t.Errorf("two replicas with one SP key disagree: %v", err)
	}
	if err := c.verifyBinding(rs, v); err == nil {
		t.Error("a replica with another SP key accepts the binding")
	}
	given, _ := sessionKeyRing(Config{Key: k1, SessionKeys: [][32]byte{{1}}})
	if given.verifyBinding(rs, v) == nil {
		t.Error("SessionKeys did not replace the derived key")
	}
	if _, err := sessionKeyRing(Config{Key: opaqueSigner{k1.Public()}}); err == nil {
		t.Error("an unexportable key gave a ring")
	}
}
