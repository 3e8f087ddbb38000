package relaystate

import (
	"strings"
	"testing"
)

// FuzzParse: Parse never panics, and accepts exactly what New can issue:
// a valid instance ID, the separator and a nonce of the token form, which
// put back together are the input, at most MaxLen bytes.
//
//	go test -run '^$' -fuzz '^FuzzParse$' -fuzztime 10s ./sp/relaystate
func FuzzParse(f *testing.F) {
	f.Add(New("sp-1"))
	f.Add(New(strings.Repeat("a", MaxInstanceIDLen)))
	f.Add("sp-1~")
	f.Add("~" + Token(NonceBytes))
	f.Add("sp-1~" + Token(NonceBytes) + "~x")
	f.Add("sp 1~" + Token(NonceBytes))
	f.Fuzz(func(t *testing.T, rs string) {
		instance, nonce, err := Parse(rs)
		if err != nil {
			if instance != "" || nonce != "" {
				t.Fatalf("Parse(%q) failed but returned %q, %q", rs, instance, nonce)
			}
			return
		}
		if !ValidInstanceID(instance) || !ValidToken(nonce, NonceBytes) || instance+Sep+nonce != rs || len(rs) > MaxLen {
			t.Fatalf("Parse(%q) accepted %q, %q", rs, instance, nonce)
		}
	})
}
