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

// The derived ring rolls over with the SP key pair (README's rollover
// steps): a binding issued before the rollover verifies at every step that
// still holds the old key, current or next; one issued under the new key
// verifies from step 1 on.
func TestSessionKeyRingFollowsSPKeyRollover(t *testing.T) {
	t.Parallel()
	k1, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	k2, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ring := func(cur, next *ecdsa.PrivateKey) *keyRing {
		c := Config{Key: cur}
		if next != nil {
			c.NextKey = next
		}
		r, err := sessionKeyRing(c)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	before, step1, step2, step3 := ring(k1, nil), ring(k1, k2), ring(k2, k1), ring(k2, nil)
	rs := "sp-1~" + "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
	at := time.Unix(1_800_000_000, 0)
	old := before.issueBinding(rs, at)
	for name, r := range map[string]*keyRing{"step 1 (next published)": step1, "step 2 (swapped)": step2} {
		if err := r.verifyBinding(rs, old); err != nil {
			t.Errorf("%s refuses what the old key issued: %v", name, err)
		}
	}
	if step3.verifyBinding(rs, old) == nil {
		t.Error("step 3 (old key dropped) still accepts the old key's binding")
	}
	if err := step1.verifyBinding(rs, step2.issueBinding(rs, at)); err != nil {
		t.Errorf("step 1 refuses what step 2 issued (replicas mid-rollout): %v", err)
	}
	if err := step3.verifyBinding(rs, step2.issueBinding(rs, at)); err != nil {
		t.Errorf("step 3 refuses what step 2 issued: %v", err)
	}
}
