// Package keypair makes, writes, reads and checks the PEM key pairs of
// samlha's SAML parties: the SP's (shared by every replica) and the
// development IdP's. It imports nothing of samlha's, so both sides use it.
package keypair

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"time"
)

// Validity is how long a generated certificate is valid: long, because a
// SAML peer that fetched the metadata keeps trusting this certificate.
const Validity = 10 * 365 * 24 * time.Hour

// Generate returns a new RSA-2048 key and a self-signed certificate for it,
// with commonName as subject, valid from an hour before now for Validity.
// SAML metadata certificates are trusted as such, so self-signed is the
// norm.
func Generate(commonName string, now time.Time) (*rsa.PrivateKey, *x509.Certificate, error) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, nil, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 126))
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: commonName, Organization: []string{"samlha"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(Validity),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, err
	}
	return key, cert, nil
}

// Encode returns key as a PKCS #8 PEM block and cert as a PEM certificate.
func Encode(key crypto.Signer, cert *x509.Certificate) (keyPEM, certPEM []byte, err error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw}), nil
}

// Write writes key (mode 0600) and cert (0644) to keyPath and certPath,
// each through a temporary file, so that a reader never sees half a file.
// The certificate is written last: a crash in between leaves only the key,
// which Load reports instead of pairing it with another certificate.
func Write(keyPath, certPath string, key crypto.Signer, cert *x509.Certificate) error {
	keyPEM, certPEM, err := Encode(key, cert)
	if err != nil {
		return err
	}
	if err := writeFileAtomic(keyPath, keyPEM, 0o600); err != nil {
		return err
	}
	return writeFileAtomic(certPath, certPEM, 0o644)
}

// Load reads a PEM key and certificate (see Parse).
func Load(keyPath, certPath string) (crypto.Signer, *x509.Certificate, error) {
	keyPEM, err := os.ReadFile(keyPath)
	if err != nil {
		return nil, nil, err
	}
	certPEM, err := os.ReadFile(certPath)
	if err != nil {
		return nil, nil, err
	}
	key, cert, err := Parse(keyPEM, certPEM)
	if err != nil {
		return nil, nil, fmt.Errorf("%s and %s: %w", keyPath, certPath, err)
	}
	return key, cert, nil
}

// ParseSigner parses a PEM private key (PKCS #8, PKCS #1 RSA or SEC 1 EC)
// that can sign.
func ParseSigner(keyPEM []byte) (crypto.Signer, error) {
	kb, _ := pem.Decode(keyPEM)
	if kb == nil {
		return nil, errors.New("no PEM block in the key file")
	}
	var key any
	var err error
	switch kb.Type {
	case "PRIVATE KEY":
		key, err = x509.ParsePKCS8PrivateKey(kb.Bytes)
	case "RSA PRIVATE KEY":
		key, err = x509.ParsePKCS1PrivateKey(kb.Bytes)
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(kb.Bytes)
	default:
		return nil, fmt.Errorf("unexpected PEM block %q in the key file", kb.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("parse private key: %w", err)
	}
	signer, ok := key.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("a private key of type %T cannot sign", key)
	}
	return signer, nil
}

// Parse parses a PEM private key (PKCS #8, PKCS #1 RSA or SEC 1 EC) and a
// PEM certificate, and checks that the certificate is for the key.
func Parse(keyPEM, certPEM []byte) (crypto.Signer, *x509.Certificate, error) {
	signer, err := ParseSigner(keyPEM)
	if err != nil {
		return nil, nil, err
	}
	cb, _ := pem.Decode(certPEM)
	if cb == nil || cb.Type != "CERTIFICATE" {
		return nil, nil, errors.New("no CERTIFICATE PEM block in the certificate file")
	}
	cert, err := x509.ParseCertificate(cb.Bytes)
	if err != nil {
		return nil, nil, fmt.Errorf("parse certificate: %w", err)
	}
	pub, ok := signer.Public().(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(cert.PublicKey) {
		return nil, nil, errors.New("the certificate is not for this key")
	}
	return signer, cert, nil
}

// Fingerprint is a short SHA-256 fingerprint of cert, to compare replicas'
// keys in their logs at a glance.
func Fingerprint(cert *x509.Certificate) string {
	sum := sha256.Sum256(cert.Raw)
	return hex.EncodeToString(sum[:8])
}

func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp) // a no-op after the rename
	if err := f.Chmod(mode); err != nil {
		f.Close()
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// TryKeys decodes a signed value with key and, only where the signature
// does not verify with it (decode's error matches sig), with each of next
// in turn: the SP key and, during a rollover, the next one. Any other
// failure (expired, wrong audience, malformed) is final. When no key
// verifies, the error is key's.
func TryKeys[T any](key crypto.Signer, next []crypto.Signer, sig error, decode func(crypto.Signer) (T, error)) (T, error) {
	v, err := decode(key)
	if err == nil || !errors.Is(err, sig) {
		return v, err
	}
	for _, k := range next {
		if nv, nerr := decode(k); nerr == nil || !errors.Is(nerr, sig) {
			return nv, nerr
		}
	}
	return v, err
}
