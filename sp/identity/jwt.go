package identity

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/samlha/samlha/sp/keypair"
)

// JWT signs the identity the gateway passes upstream, so the
// upstream can tell it came from samlha: a JWT with iss = the root URL,
// aud = Audience, sub = the NameID, valid for TTL. Keys[0] signs; every key
// is published at /saml/jwks.json, so a key can be published before it
// signs and kept published after it stops (rotation).
type JWT struct {
	// Keys is the ring: ECDSA P-256 (ES256) or Ed25519 (EdDSA) private
	// keys. The first signs.
	Keys []crypto.Signer
	// Audience is the aud claim; default the upstream URL, or the root
	// URL in forward-auth only mode.
	Audience string
	// TTL is the lifetime of each token; default 2m.
	TTL time.Duration
}

// KeyProblems reports what is wrong with the key ring.
func (j *JWT) KeyProblems() []error {
	var errs []error
	if len(j.Keys) == 0 {
		errs = append(errs, errors.New("identity JWT: no signing key (every replica needs the same key ring)"))
	}
	for i, k := range j.Keys {
		if _, err := jwkOf(k.Public()); err != nil {
			errs = append(errs, fmt.Errorf("identity JWT key %d: %w", i+1, err))
		}
	}
	return errs
}

// jwtSigner is an IdentityJWT ready to sign.
type jwtSigner struct {
	issuer, audience string
	ttl              time.Duration
	key              crypto.Signer
	method           jwt.SigningMethod
	kid              string
	jwks             []byte // the JSON served at /saml/jwks.json

	// Tokens are reused for the first half of their life: signing costs
	// tens of microseconds, and an identity is asked for on every request.
	// At most maxCachedTokens are kept; beyond that, tokens are signed
	// every time.
	mu        sync.Mutex
	nextSweep time.Time
	tokens    map[[32]byte]cachedToken
}

const maxCachedTokens = 100000

type cachedToken struct {
	tok   string
	until time.Time
}

func newJWTSigner(j *JWT, issuer, audience string) (*jwtSigner, error) {
	if j.Audience != "" {
		audience = j.Audience
	}
	ttl := j.TTL
	if ttl == 0 {
		ttl = 2 * time.Minute
	}
	set := struct {
		Keys []jwk `json:"keys"`
	}{}
	for _, k := range j.Keys {
		pub, err := jwkOf(k.Public())
		if err != nil {
			return nil, err
		}
		set.Keys = append(set.Keys, pub)
	}
	b, err := json.Marshal(set)
	if err != nil {
		return nil, err
	}
	s := &jwtSigner{issuer: issuer, audience: audience, ttl: ttl, key: j.Keys[0], kid: set.Keys[0].Kid, jwks: b,
		tokens: map[[32]byte]cachedToken{}}
	switch j.Keys[0].(type) {
	case *ecdsa.PrivateKey:
		s.method = jwt.SigningMethodES256
	case ed25519.PrivateKey:
		s.method = jwt.SigningMethodEdDSA
	default:
		return nil, fmt.Errorf("identity JWT: key type %T cannot sign", j.Keys[0])
	}
	return s, nil
}

// identityClaims are the identity JWT's claims.
type identityClaims struct {
	jwt.RegisteredClaims
	User       string              `json:"user,omitempty"`
	Attributes map[string][]string `json:"attrs,omitempty"`
}

// token returns a token for id and attrs: a cached one in the first half
// of its life, else a new one.
func (j *jwtSigner) token(id Identity, attrs map[string][]string, order []PassAttribute, now time.Time) (string, error) {
	key := identityKey(id, attrs, order)
	j.mu.Lock()
	c, ok := j.tokens[key]
	j.mu.Unlock()
	if ok && now.Before(c.until) {
		return c.tok, nil
	}
	tok, err := j.sign(id, attrs, now)
	if err != nil {
		return "", err
	}
	j.mu.Lock()
	if len(j.tokens) >= maxCachedTokens && !now.Before(j.nextSweep) {
		// A full cache of live tokens is swept at most once per half
		// TTL, not on every new identity under the lock.
		j.nextSweep = now.Add(j.ttl / 2)
		for k, e := range j.tokens {
			if !now.Before(e.until) {
				delete(j.tokens, k)
			}
		}
	}
	if len(j.tokens) < maxCachedTokens {
		j.tokens[key] = cachedToken{tok: tok, until: now.Add(j.ttl / 2)}
	}
	j.mu.Unlock()
	return tok, nil
}

// identityKey hashes everything a token says about its subject, each part
// length-prefixed, so that two identities never share a token.
func identityKey(id Identity, attrs map[string][]string, order []PassAttribute) [32]byte {
	h := sha256.New()
	var n [8]byte
	put := func(s string) {
		binary.BigEndian.PutUint64(n[:], uint64(len(s)))
		h.Write(n[:])
		h.Write([]byte(s))
	}
	put(id.NameID)
	put(id.User)
	for _, a := range order {
		vals := attrs[a.Attribute]
		put(a.Attribute)
		binary.BigEndian.PutUint64(n[:], uint64(len(vals)))
		h.Write(n[:])
		for _, v := range vals {
			put(v)
		}
	}
	var k [32]byte
	h.Sum(k[:0])
	return k
}

func (j *jwtSigner) sign(id Identity, attrs map[string][]string, now time.Time) (string, error) {
	c := identityClaims{
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer:    j.issuer,
			Subject:   id.NameID,
			Audience:  jwt.ClaimStrings{j.audience},
			IssuedAt:  jwt.NewNumericDate(now),
			NotBefore: jwt.NewNumericDate(now.Add(-30 * time.Second)), // clock skew
			ExpiresAt: jwt.NewNumericDate(now.Add(j.ttl)),
		},
		User:       id.User,
		Attributes: attrs,
	}
	t := jwt.NewWithClaims(j.method, c)
	t.Header["kid"] = j.kid
	return t.SignedString(j.key)
}

// jwk is a public JSON Web Key (RFC 7517) for ES256 or EdDSA.
type jwk struct {
	Kty string `json:"kty"`
	Crv string `json:"crv"`
	X   string `json:"x"`
	Y   string `json:"y,omitempty"`
	Kid string `json:"kid"`
	Alg string `json:"alg"`
	Use string `json:"use"`
}

// jwkOf returns pub as a JWK whose kid is its RFC 7638 thumbprint.
func jwkOf(pub crypto.PublicKey) (jwk, error) {
	b64 := base64.RawURLEncoding.EncodeToString
	var k jwk
	var thumb string
	switch p := pub.(type) {
	case *ecdsa.PublicKey:
		if p.Curve != elliptic.P256() {
			return jwk{}, errors.New("ECDSA keys must be on P-256 (ES256)")
		}
		raw, err := p.Bytes() // 0x04 || X || Y
		if err != nil {
			return jwk{}, err
		}
		k = jwk{Kty: "EC", Crv: "P-256", X: b64(raw[1:33]), Y: b64(raw[33:]), Alg: "ES256"}
		thumb = `{"crv":"P-256","kty":"EC","x":"` + k.X + `","y":"` + k.Y + `"}`
	case ed25519.PublicKey:
		k = jwk{Kty: "OKP", Crv: "Ed25519", X: b64(p), Alg: "EdDSA"}
		thumb = `{"crv":"Ed25519","kty":"OKP","x":"` + k.X + `"}`
	default:
		return jwk{}, fmt.Errorf("key type %T: want ECDSA P-256 or Ed25519", pub)
	}
	sum := sha256.Sum256([]byte(thumb))
	k.Kid, k.Use = b64(sum[:]), "sig"
	return k, nil
}

// LoadJWTKeys reads the identity JWT key ring. Each path is a PEM file
// (PKCS#8 "PRIVATE KEY" or SEC 1 "EC PRIVATE KEY") or a directory, whose
// *.pem files are read in name order, last first: name them by date
// (2026-11-30.pem) and the newest signs. Across paths the order is kept:
// the first key found signs.
func LoadJWTKeys(paths []string) ([]crypto.Signer, error) {
	var keys []crypto.Signer
	for _, p := range paths {
		fi, err := os.Stat(p)
		if err != nil {
			return nil, err
		}
		files := []string{p}
		if fi.IsDir() {
			files, err = filepath.Glob(filepath.Join(p, "*.pem"))
			if err != nil {
				return nil, err
			}
			if len(files) == 0 {
				return nil, fmt.Errorf("%s: no *.pem keys", p)
			}
			slices.Sort(files)
			slices.Reverse(files)
		}
		for _, f := range files {
			k, err := readJWTKey(f)
			if err != nil {
				return nil, err
			}
			keys = append(keys, k)
		}
	}
	return keys, nil
}

func readJWTKey(file string) (crypto.Signer, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	s, err := keypair.ParseSigner(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	if _, err := jwkOf(s.Public()); err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	return s, nil
}

// MarshalJWTKey returns k as a PKCS#8 PEM block, as LoadJWTKeys reads it.
func MarshalJWTKey(k crypto.Signer) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}
