package devidp

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"os"
	"path/filepath"
	"time"
)

// The files LoadOrCreateKeyPair keeps in its directory.
const (
	KeyFile  = "idp-key.pem"  // PKCS #8 RSA private key, mode 0600
	CertFile = "idp-cert.pem" // self-signed X.509 certificate
)

// certValidity is how long a generated certificate is valid: long, since
// an SP that fetched the IdP's metadata keeps trusting this certificate.
const certValidity = 10 * 365 * 24 * time.Hour

// GenerateKeyPair returns a new 2048-bit RSA key and a self-signed
// certificate for it, with commonName as subject, valid from an hour before
// now for ten years. It suits a development IdP or SP, and tests.
func GenerateKeyPair(commonName string, now time.Time) (*rsa.PrivateKey, *x509.Certificate, error) {
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
		Subject:               pkix.Name{CommonName: commonName, Organization: []string{"samlha development"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(certValidity),
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

// LoadOrCreateKeyPair loads the key and certificate kept in dir (KeyFile
// and CertFile) or, when neither exists, generates them (GenerateKeyPair)
// and writes them there, creating dir. Reusing them across restarts keeps
// valid the IdP metadata that SPs fetched earlier. created reports whether
// they were generated. One file without the other is an error: it is not
// overwritten.
func LoadOrCreateKeyPair(dir, commonName string, now time.Time) (key *rsa.PrivateKey, cert *x509.Certificate, created bool, err error) {
	keyPath, certPath := filepath.Join(dir, KeyFile), filepath.Join(dir, CertFile)
	keyPEM, keyErr := os.ReadFile(keyPath)
	certPEM, certErr := os.ReadFile(certPath)
	switch {
	case keyErr == nil && certErr == nil:
		key, cert, err = parseKeyPair(keyPEM, certPEM)
		if err != nil {
			return nil, nil, false, fmt.Errorf("%s and %s: %w", keyPath, certPath, err)
		}
		return key, cert, false, nil
	case errors.Is(keyErr, fs.ErrNotExist) && errors.Is(certErr, fs.ErrNotExist):
		// First start: generate below.
	case keyErr != nil && !errors.Is(keyErr, fs.ErrNotExist):
		return nil, nil, false, keyErr
	case certErr != nil && !errors.Is(certErr, fs.ErrNotExist):
		return nil, nil, false, certErr
	default:
		return nil, nil, false, fmt.Errorf("%s holds only one of %s and %s: restore the other, or remove both to generate a new key pair (SPs must then fetch the IdP metadata again)", dir, KeyFile, CertFile)
	}

	key, cert, err = GenerateKeyPair(commonName, now)
	if err != nil {
		return nil, nil, false, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, nil, false, err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, false, err
	}
	// The certificate is written last: a crash in between leaves only the
	// key, which the next start reports instead of silently replacing.
	if err := writeFileAtomic(keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		return nil, nil, false, err
	}
	if err := writeFileAtomic(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw}), 0o644); err != nil {
		return nil, nil, false, err
	}
	return key, cert, true, nil
}

// parseKeyPair parses a PEM private key (PKCS #8 or PKCS #1 RSA) and a PEM
// certificate, and checks that they belong together.
func parseKeyPair(keyPEM, certPEM []byte) (*rsa.PrivateKey, *x509.Certificate, error) {
	kb, _ := pem.Decode(keyPEM)
	if kb == nil {
		return nil, nil, errors.New("no PEM block in the key file")
	}
	var key *rsa.PrivateKey
	switch kb.Type {
	case "PRIVATE KEY":
		k, err := x509.ParsePKCS8PrivateKey(kb.Bytes)
		if err != nil {
			return nil, nil, err
		}
		rk, ok := k.(*rsa.PrivateKey)
		if !ok {
			return nil, nil, fmt.Errorf("the key is a %T; the IdP needs an RSA key", k)
		}
		key = rk
	case "RSA PRIVATE KEY":
		k, err := x509.ParsePKCS1PrivateKey(kb.Bytes)
		if err != nil {
			return nil, nil, err
		}
		key = k
	default:
		return nil, nil, fmt.Errorf("unexpected PEM block %q in the key file", kb.Type)
	}
	cb, _ := pem.Decode(certPEM)
	if cb == nil || cb.Type != "CERTIFICATE" {
		return nil, nil, errors.New("no CERTIFICATE PEM block in the certificate file")
	}
	cert, err := x509.ParseCertificate(cb.Bytes)
	if err != nil {
		return nil, nil, err
	}
	if !key.PublicKey.Equal(cert.PublicKey) {
		return nil, nil, errors.New("the certificate is not for this key")
	}
	return key, cert, nil
}

// writeFileAtomic writes data to path through a temporary file in the same
// directory, so that a reader never sees half a file.
func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
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
