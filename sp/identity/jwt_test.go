package identity

import (
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"testing"
	"time"
)

// A token is reused for the first half of its life and only for the same
// identity; then a new one is signed. The cache is bounded.
func TestIdentityTokenReuse(t *testing.T) {
	_, k, _ := ed25519.GenerateKey(rand.Reader)
	j, err := newJWTSigner(&JWT{Keys: []crypto.Signer{k}, TTL: 2 * time.Minute}, "http://gw", "http://app")
	if err != nil {
		t.Fatal(err)
	}
	order := []PassAttribute{{Attribute: "mail", Header: "X-Email"}}
	now := time.Unix(1_800_000_000, 0)
	alice := Identity{NameID: "alice", User: "alice"}
	a1, _ := j.token(alice, map[string][]string{"mail": {"a@x"}}, order, now)
	a2, _ := j.token(alice, map[string][]string{"mail": {"a@x"}}, order, now.Add(59*time.Second))
	if a1 != a2 {
		t.Fatal("a token was not reused within the first half of its life")
	}
	other, _ := j.token(alice, map[string][]string{"mail": {"a@y"}}, order, now.Add(time.Second))
	bob, _ := j.token(Identity{NameID: "bob", User: "bob"}, map[string][]string{"mail": {"a@x"}}, order, now)
	if other == a1 || bob == a1 {
		t.Fatal("a token was reused for a different identity")
	}
	a3, _ := j.token(alice, map[string][]string{"mail": {"a@x"}}, order, now.Add(61*time.Second))
	if a3 == a1 {
		t.Fatal("a token was reused past half its life")
	}
	// The bound: past maxCachedTokens live entries, nothing more is kept.
	for i := range maxCachedTokens + 10 {
		j.tokens[[32]byte{byte(i), byte(i >> 8), byte(i >> 16)}] = cachedToken{until: now.Add(time.Hour)}
	}
	before := len(j.tokens)
	if _, err := j.token(Identity{NameID: "carol"}, nil, order, now); err != nil {
		t.Fatal(err)
	}
	if len(j.tokens) > before {
		t.Fatalf("the token cache grew past its bound: %d > %d", len(j.tokens), before)
	}
}
