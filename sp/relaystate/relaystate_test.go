package relaystate

import (
	"strings"
	"testing"
)

func TestRelayStateRoundTrip(t *testing.T) {
	t.Parallel()
	for _, inst := range []string{"sp-1", "a", strings.Repeat("x", 40), "node_7.eu-west-1"} {
		rs := New(inst)
		if len(rs) > 80 {
			t.Errorf("RelayState %q is %d bytes, over SAML's 80", rs, len(rs))
		}
		got, nonce, err := Parse(rs)
		if err != nil || got != inst || len(nonce) != NonceLen {
			t.Errorf("Parse(%q) = %q, %q, %v", rs, got, nonce, err)
		}
	}
	if New("sp-1") == New("sp-1") {
		t.Error("two RelayStates are equal: the nonce is not random")
	}
}

func TestParseRelayStateRejects(t *testing.T) {
	t.Parallel()
	good := strings.Repeat("A", NonceLen)
	for name, rs := range map[string]string{
		"empty":            "",
		"no separator":     "sp-1" + good,
		"empty instance":   "~" + good,
		"bad instance":     "sp/1~" + good,
		"long instance":    strings.Repeat("a", 41) + "~" + good,
		"short nonce":      "sp-1~" + good[:10],
		"nonce not base64": "sp-1~" + strings.Repeat("*", NonceLen),
		"crewjam default":  "dGhpcyBpcyBjcmV3amFtJ3MgZGVmYXVsdCBpbmRleCBvZiA0MiBieXRlcw",
		"way too long":     strings.Repeat("a", 500),
	} {
		if _, _, err := Parse(rs); err == nil {
			t.Errorf("%s: Parse(%q) accepted it", name, rs)
		}
	}
}

func TestSanitizeInstanceID(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"web-7f9c":               "web-7f9c",
		"host.example.com":       "host.example.com",
		"weird host!":            "weird-host-",
		"":                       "sp",
		strings.Repeat("h", 100): strings.Repeat("h", 40),
	} {
		if got := SanitizeInstanceID(in); got != want || !ValidInstanceID(got) {
			t.Errorf("SanitizeInstanceID(%q) = %q, want %q (valid)", in, got, want)
		}
	}
}
