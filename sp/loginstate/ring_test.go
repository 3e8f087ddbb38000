package loginstate

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"io"
	"testing"
	"time"

	"github.com/samlha/samlha/sp/keyring"
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
	a, err := keyring.ForSP(nil, k1, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := keyring.ForSP(nil, k1, nil)
	c, _ := keyring.ForSP(nil, k2, nil)
	rs := "sp-1~" + "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
	v := issueBinding(a, rs, testRequestID, time.Unix(1_800_000_000, 0))
	if err := verifyBinding(b, rs, v); err != nil {
		t.Errorf("two replicas with one SP key disagree: %v", err)
	}
	if err := verifyBinding(c, rs, v); err == nil {
		t.Error("a replica with another SP key accepts the binding")
	}
	given, _ := keyring.ForSP([][32]byte{{1}}, k1, nil)
	if verifyBinding(given, rs, v) == nil {
		t.Error("SessionKeys did not replace the derived key")
	}
	if _, err := keyring.ForSP(nil, opaqueSigner{k1.Public()}, nil); err == nil {
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
	ring := func(cur, next *ecdsa.PrivateKey) *keyring.Ring {
		var n crypto.Signer
		if next != nil {
			n = next
		}
		r, err := keyring.ForSP(nil, cur, n)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	before, step1, step2, step3 := ring(k1, nil), ring(k1, k2), ring(k2, k1), ring(k2, nil)
	rs := "sp-1~" + "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
	at := time.Unix(1_800_000_000, 0)
	old := issueBinding(before, rs, testRequestID, at)
	for name, r := range map[string]*keyring.Ring{"step 1 (next published)": step1, "step 2 (swapped)": step2} {
		if err := verifyBinding(r, rs, old); err != nil {
			t.Errorf("%s refuses what the old key issued: %v", name, err)
		}
	}
	if verifyBinding(step3, rs, old) == nil {
		t.Error("step 3 (old key dropped) still accepts the old key's binding")
	}
	if err := verifyBinding(step1, rs, issueBinding(step2, rs, testRequestID, at)); err != nil {
		t.Errorf("step 1 refuses what step 2 issued (replicas mid-rollout): %v", err)
	}
	if err := verifyBinding(step3, rs, issueBinding(step2, rs, testRequestID, at)); err != nil {
		t.Errorf("step 3 refuses what step 2 issued: %v", err)
	}
}
