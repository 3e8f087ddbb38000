package devidp

import (
	"crypto/rsa"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/samlha/samlha/sp/keypair"
)

// The files LoadOrCreateKeyPair keeps in its directory.
const (
	KeyFile  = "idp-key.pem"  // PKCS #8 RSA private key, mode 0600
	CertFile = "idp-cert.pem" // self-signed X.509 certificate
)

// GenerateKeyPair returns a new RSA-2048 key and a self-signed certificate
// for it (keypair.Generate). It suits a development IdP or SP, and tests.
func GenerateKeyPair(commonName string, now time.Time) (*rsa.PrivateKey, *x509.Certificate, error) {
	return keypair.Generate(commonName, now)
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
	if err := keypair.Write(keyPath, certPath, key, cert); err != nil {
		return nil, nil, false, err
	}
	return key, cert, true, nil
}

// parseKeyPair parses the IdP's pair (keypair.Parse) and requires an RSA
// key, which the IdP's signatures and the SPs' encryption expect.
func parseKeyPair(keyPEM, certPEM []byte) (*rsa.PrivateKey, *x509.Certificate, error) {
	signer, cert, err := keypair.Parse(keyPEM, certPEM)
	if err != nil {
		return nil, nil, err
	}
	key, ok := signer.(*rsa.PrivateKey)
	if !ok {
		return nil, nil, fmt.Errorf("the key is a %T; the IdP needs an RSA key", signer)
	}
	return key, cert, nil
}
