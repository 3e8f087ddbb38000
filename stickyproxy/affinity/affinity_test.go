package affinity

import (
	"encoding/base64"
	"errors"
	"strings"
	"testing"
	"time"
)

func mustKey(t testing.TB, secret string) [32]byte {
	t.Helper()
	k, err := DeriveKey(secret)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func mustCodec(t testing.TB, purpose string, keys ...[32]byte) *Codec {
	t.Helper()
	c, err := New(purpose, keys...)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestOpen(t *testing.T) {
	t.Parallel()
	now := time.Unix(1_700_000_000, 0)
	k1 := mustKey(t, "first key, long enough")
	k2 := mustKey(t, "second key, long enough")
	k3 := mustKey(t, "a key nobody else has")
	sealer := mustCodec(t, "AWSALB", k1)
	value, err := sealer.Seal("sp-1", now.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := base64.RawURLEncoding.DecodeString(value)
	flip := func(i int) string {
		b := append([]byte(nil), raw...)
		b[i] ^= 0x01
		return base64.RawURLEncoding.EncodeToString(b)
	}
	rotated := mustCodec(t, "AWSALB", k2, k1) // new key seals, old still opens
	rotatedValue, err := rotated.Seal("sp-2", now.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name    string
		codec   *Codec
		value   string
		now     time.Time
		wantID  string
		wantErr error
	}{
		{"valid", sealer, value, now, "sp-1", nil},
		{"second proxy instance with the same key", mustCodec(t, "AWSALB", k1), value, now, "sp-1", nil},
		{"rotation: old cookie opens under new ring", rotated, value, now, "sp-1", nil},
		{"rotation: new cookie opens under new ring", rotated, rotatedValue, now, "sp-2", nil},
		{"rotation: new cookie refused by instance without new key", sealer, rotatedValue, now, "", ErrForged},
		{"other proxy's key", mustCodec(t, "AWSALB", k3), value, now, "", ErrForged},
		{"other purpose (cookie name)", mustCodec(t, "AWSALBAPP", k1), value, now, "", ErrForged},
		{"expired exactly at expiry", sealer, value, now.Add(time.Hour), "sp-1", ErrExpired},
		{"expired later", sealer, value, now.Add(48 * time.Hour), "sp-1", ErrExpired},
		{"one second before expiry", sealer, value, now.Add(time.Hour - time.Second), "sp-1", nil},
		{"tampered version", sealer, flip(0), now, "", ErrMalformed},
		{"tampered key id", sealer, flip(1), now, "", ErrForged},
		{"tampered nonce", sealer, flip(5), now, "", ErrForged},
		{"tampered expiry", sealer, flip(headerSize + 3), now, "", ErrForged},
		{"tampered id", sealer, flip(headerSize + expSize), now, "", ErrForged},
		{"tampered tag", sealer, flip(len(raw) - 1), now, "", ErrForged},
		{"truncated by one char", sealer, value[:len(value)-1], now, "", ErrForged},
		{"truncated to half", sealer, value[:len(value)/2], now, "", ErrMalformed},
		{"extended", sealer, value + "AAAA", now, "", ErrForged},
		{"empty", sealer, "", now, "", ErrMalformed},
		{"not base64", sealer, strings.Repeat("!", len(value)), now, "", ErrMalformed},
		{"standard base64 padding", sealer, value + "==", now, "", ErrMalformed},
		{"too long", sealer, strings.Repeat("A", MaxValueLen+1), now, "", ErrMalformed},
		{"plain target name", sealer, "sp-1", now, "", ErrMalformed},
		{"address", sealer, "http://127.0.0.1:8081", now, "", ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var buf Buffer
			o, err := tt.codec.Open(&buf, tt.value, tt.now.Unix())
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Open error = %v, want %v", err, tt.wantErr)
			}
			if string(o.ID) != tt.wantID {
				t.Errorf("Open ID = %q, want %q", o.ID, tt.wantID)
			}
		})
	}
}

func TestSealHidesID(t *testing.T) {
	t.Parallel()
	c := mustCodec(t, "AWSALB", mustKey(t, "first key, long enough"))
	a, _ := c.Seal("sp-1", time.Unix(2e9, 0))
	b, _ := c.Seal("sp-1", time.Unix(2e9, 0))
	if a == b {
		t.Error("two seals of the same ID and expiry are equal: nonce not random")
	}
	raw, _ := base64.RawURLEncoding.DecodeString(a)
	if strings.Contains(string(raw), "sp-1") || strings.Contains(a, "sp-1") {
		t.Errorf("value %q shows the target ID", a)
	}
	if len(a) > 100 {
		t.Errorf("value is %d chars, want a short cookie", len(a))
	}
}

func TestSealRejectsBadID(t *testing.T) {
	t.Parallel()
	c := mustCodec(t, "AWSALB", mustKey(t, "first key, long enough"))
	for _, id := range []string{"", strings.Repeat("x", MaxIDLen+1)} {
		if _, err := c.Seal(id, time.Unix(2e9, 0)); err == nil {
			t.Errorf("Seal(%d-byte id) succeeded", len(id))
		}
	}
	long := strings.Repeat("x", MaxIDLen)
	v, err := c.Seal(long, time.Unix(2e9, 0))
	if err != nil {
		t.Fatal(err)
	}
	var buf Buffer
	if o, err := c.Open(&buf, v, 1); err != nil || string(o.ID) != long {
		t.Fatalf("longest ID: %q, %v", o.ID, err)
	}
}

func TestDeriveKey(t *testing.T) {
	t.Parallel()
	raw := make([]byte, 32)
	for i := range raw {
		raw[i] = byte(i)
	}
	var want [32]byte
	copy(want[:], raw)
	hexKey := "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
	tests := []struct {
		name, secret string
		wantRaw      bool
		wantErr      bool
	}{
		{"base64 std", base64.StdEncoding.EncodeToString(raw), true, false},
		{"base64url raw", base64.RawURLEncoding.EncodeToString(raw), true, false},
		{"hex", hexKey, true, false},
		{"passphrase", "correct horse battery staple", false, false},
		{"too short", "short", false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			k, err := DeriveKey(tt.secret)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v", err)
			}
			if !tt.wantErr && (k == want) != tt.wantRaw {
				t.Errorf("key used raw = %v, want %v", k == want, tt.wantRaw)
			}
		})
	}
	if _, err := DeriveKey(NewKey()); err != nil {
		t.Errorf("NewKey not accepted: %v", err)
	}
}

func TestOpenDoesNotAllocate(t *testing.T) {
	c := mustCodec(t, "AWSALB", mustKey(t, "first key, long enough"))
	v, _ := c.Seal("sp-1", time.Unix(2e9, 0))
	buf := new(Buffer) // a caller keeps these in a sync.Pool
	allocs := testing.AllocsPerRun(100, func() {
		if _, err := c.Open(buf, v, 1); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("Open allocates %v times per call", allocs)
	}
}

func BenchmarkOpen(b *testing.B) {
	c := mustCodec(b, "AWSALB", mustKey(b, "first key, long enough"))
	v, _ := c.Seal("sp-1", time.Unix(2e9, 0))
	buf := new(Buffer)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.Open(buf, v, 1); err != nil {
			b.Fatal(err)
		}
	}
}

// FuzzOpen feeds arbitrary values to the decoder. It must never panic, and
// it may accept only what Seal produced: under the fuzzing key only "sp-1"
// with expiry 2e9 was ever sealed (see testdata/fuzz/FuzzOpen, which holds
// such values as well as near-misses), so anything else that opens is a
// forgery.
func FuzzOpen(f *testing.F) {
	c := mustCodec(f, "AWSALB", mustKey(f, "fuzzing key, long enough"))
	good, _ := c.Seal("sp-1", time.Unix(2e9, 0))
	f.Add(good)
	f.Add("")
	f.Add("sp-1")
	f.Add(good[:len(good)-2])
	f.Add(good + "A")
	f.Fuzz(func(t *testing.T, value string) {
		var buf Buffer
		o, err := c.Open(&buf, value, 1_700_000_000)
		switch {
		case err == nil:
			if string(o.ID) != "sp-1" || o.Expires != 2e9 {
				t.Fatalf("forged value %q opened as %q until %d", value, o.ID, o.Expires)
			}
		case errors.Is(err, ErrMalformed), errors.Is(err, ErrForged), errors.Is(err, ErrExpired):
		default:
			t.Fatalf("unexpected error %v", err)
		}
	})
}
