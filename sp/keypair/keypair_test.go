package keypair

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestWriteLoadRoundTrip(t *testing.T) {
	key, cert, err := Generate("test", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	kp, cp := filepath.Join(dir, "k", "sp.key"), filepath.Join(dir, "k", "sp.crt")
	if err := Write(kp, cp, key, cert); err != nil {
		t.Fatal(err)
	}
	if st, _ := os.Stat(kp); st.Mode().Perm() != 0o600 {
		t.Errorf("key mode %v, want 0600", st.Mode().Perm())
	}
	gk, gc, err := Load(kp, cp)
	if err != nil {
		t.Fatal(err)
	}
	if !gc.Equal(cert) || Fingerprint(gc) != Fingerprint(cert) || !key.PublicKey.Equal(gk.Public()) {
		t.Fatal("the pair read back is not the pair written")
	}
}

func TestParseRejects(t *testing.T) {
	key, cert, _ := Generate("a", time.Now())
	other, _, _ := Generate("b", time.Now())
	keyPEM, certPEM, _ := Encode(key, cert)
	otherPEM, _, _ := Encode(other, cert)
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ecDER, _ := x509.MarshalECPrivateKey(ec)
	ecPEM := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: ecDER})
	for name, tc := range map[string]struct {
		key, cert []byte
		want      string
	}{
		"no key":          {nil, certPEM, "no PEM block"},
		"no cert":         {keyPEM, nil, "no CERTIFICATE"},
		"cert as key":     {certPEM, certPEM, "unexpected PEM block"},
		"mismatched":      {otherPEM, certPEM, "not for this key"},
		"EC key, RSA crt": {ecPEM, certPEM, "not for this key"},
		"garbage key":     {pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte("x")}), certPEM, "parse private key"},
	} {
		if _, _, err := Parse(tc.key, tc.cert); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want one containing %q", name, err, tc.want)
		}
	}
}
