package httphead

import (
	"strings"
	"testing"
)

// Every line the scanner takes is a plain "Name: value" line; everything
// that net/http reads another way, or refuses, is refused here so that it
// goes to net/http.
func TestNextLine(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		line       string
		key, value string // when taken
		refused    bool
	}{
		{line: "Host: example.com\r\n", key: "Host", value: "example.com"},
		{line: "X-A:\t  padded \t\r\n", key: "X-A", value: "padded"},
		{line: "X-Empty:\r\n", key: "X-Empty", value: ""},
		{line: "X-Tab: a\tb\r\n", key: "X-Tab", value: "a\tb"},
		{line: "Host : example.com\r\n", refused: true}, // space before the colon (smuggling)
		{line: " Folded: x\r\n", refused: true},         // obs-fold continuation
		{line: ": no-name\r\n", refused: true},          // empty name
		{line: "No-Colon\r\n", refused: true},           // no colon
		{line: "X-A: b\n", refused: true},               // bare LF
		{line: "X-A: b\rc\r\n", refused: true},          // bare CR in the value
		{line: "X-A: b\x00c\r\n", refused: true},        // NUL
		{line: "X-A: b\x7fc\r\n", refused: true},        // DEL
		{line: "X(A): b\r\n", refused: true},            // not a token
		{line: "X-\xc3\xa9: b\r\n", refused: true},      // non-ASCII name
	} {
		sp, next, ok := NextLine([]byte(tc.line), 0)
		if ok == tc.refused {
			t.Errorf("NextLine(%q): ok = %v, want %v", tc.line, ok, !tc.refused)
			continue
		}
		if !ok {
			continue
		}
		if got := tc.line[sp.K0:sp.K1]; got != tc.key {
			t.Errorf("NextLine(%q): name %q, want %q", tc.line, got, tc.key)
		}
		if got := tc.line[sp.V0:sp.V1]; got != tc.value {
			t.Errorf("NextLine(%q): value %q, want %q", tc.line, got, tc.value)
		}
		if next != len(tc.line) {
			t.Errorf("NextLine(%q): next %d, want %d", tc.line, next, len(tc.line))
		}
	}
}

// A Content-Length is 1 to 18 digits: 19 could overflow int64, and a sign,
// blank, comma list or empty value is net/http's to judge.
func TestContentLength(t *testing.T) {
	t.Parallel()
	for v, want := range map[string]int64{"0": 0, "7": 7, "000123": 123, strings.Repeat("9", 18): 999999999999999999} {
		if n, ok := ContentLength([]byte(v)); !ok || n != want {
			t.Errorf("ContentLength(%q) = %d, %v; want %d", v, n, ok, want)
		}
	}
	for _, v := range []string{"", strings.Repeat("9", 19), "-1", "+1", "1 ", "1,1", "0x10", "1e3"} {
		if n, ok := ContentLength([]byte(v)); ok {
			t.Errorf("ContentLength(%q) = %d, taken; want refused", v, n)
		}
	}
}

func TestCanonicalKeyAndEqualFold(t *testing.T) {
	t.Parallel()
	for k, want := range map[string]bool{"Content-Type": true, "X": true, "X-Samlha-User": true, "content-type": false, "Content-type": false, "HOST": false} {
		if got := CanonicalKey(k); got != want {
			t.Errorf("CanonicalKey(%q) = %v, want %v", k, got, want)
		}
	}
	if !EqualFold([]byte("cOnTeNt-LeNgTh"), "Content-Length") || EqualFold([]byte("Content-Lengt"), "Content-Length") ||
		EqualFold([]byte("Content_Length"), "Content-Length") {
		t.Error("EqualFold is not ASCII case-insensitive equality")
	}
}
