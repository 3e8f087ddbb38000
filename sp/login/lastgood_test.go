package login

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const testMetadata = `<EntityDescriptor xmlns="urn:oasis:names:tc:SAML:2.0:metadata" entityID="https://idp.example/metadata"%s>
<IDPSSODescriptor protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol">
<SingleSignOnService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect" Location="https://idp.example/sso"/>
</IDPSSODescriptor></EntityDescriptor>`

// A kept copy is used only for the URL it was fetched from, while younger
// than MaxStale and inside its validUntil; anything else is refused with
// the reason, never a panic.
func TestLastGoodCopyIsUsedOnlyWhenSafe(t *testing.T) {
	t.Parallel()
	const src = "https://idp.example/metadata"
	now := time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC)
	md := []byte(strings.Replace(testMetadata, "%s", "", 1))
	valid := encodeLastGood(src, now.Add(-time.Hour), md)
	if got, at, err := decodeLastGood(valid, src, now, 24*time.Hour); err != nil || got.EntityID != src || !at.Equal(now.Add(-time.Hour)) {
		t.Fatalf("a good copy: %v %v %v", got, at, err)
	}
	expiring := []byte(strings.Replace(testMetadata, "%s", ` validUntil="2026-12-05T11:30:00Z"`, 1))
	for _, tc := range []struct {
		name string
		b    []byte
		want string
	}{
		{"another URL", encodeLastGood("https://other.example/metadata", now, md), "not of"},
		{"too old", encodeLastGood(src, now.Add(-25*time.Hour), md), "more than the"},
		{"from the future", encodeLastGood(src, now.Add(time.Hour), md), "future"},
		{"past validUntil", encodeLastGood(src, now.Add(-time.Hour), expiring), "validUntil"},
		{"not a copy", md, "not a samlha copy"},
		{"damaged header", []byte(lastGoodMagic + "x\n" + src + "\n"), "damaged"},
		{"no metadata", encodeLastGood(src, now, []byte("<html>")), "does not parse"},
		{"too large", append(encodeLastGood(src, now, md), bytes.Repeat([]byte(" "), maxLastGood)...), "more than"},
		{"empty", nil, "not a samlha copy"},
	} {
		_, _, err := decodeLastGood(tc.b, src, now, 24*time.Hour)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want one saying %q", tc.name, err, tc.want)
		}
	}
}

// The file is replaced whole: a reader never sees half a copy, and no
// temporary file is left behind.
func TestWriteAtomic(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	name := filepath.Join(dir, "idp.xml")
	for _, b := range []string{"first", "second"} {
		if err := writeAtomic(name, []byte(b)); err != nil {
			t.Fatal(err)
		}
		if got, _ := os.ReadFile(name); string(got) != b {
			t.Fatalf("read %q, want %q", got, b)
		}
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Fatalf("%d files in the directory, want 1", len(ents))
	}
	if _, err := readBounded(name, 3); err == nil {
		t.Fatal("readBounded read a file over its limit")
	}
}
