package loginstate

import (
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestTrackedRequestEncoding(t *testing.T) {
	t.Parallel()
	now := time.UnixMilli(1764000000123)
	tr := Tracked{RequestID: "id-" + strings.Repeat("ab", 20), URI: "/app?x=1", Origin: "sp-2",
		Created: now, Expires: now.Add(10 * time.Minute), Binding: bindingHash("cookie-value")}
	b := tr.encode()
	if len(b) > 128 {
		t.Errorf("encoded tracked request is %d bytes; keep it compact (memory goal 512 B per pending login)", len(b))
	}
	got, ts, err := decodeState(b)
	if err != nil || ts != nil {
		t.Fatalf("decodeState: %v, tombstone %v", err, ts)
	}
	if diff := cmp.Diff(tr, *got, cmp.Comparer(func(a, b time.Time) bool { return a.Equal(b) })); diff != "" {
		t.Errorf("round trip (-want +got):\n%s", diff)
	}
	if !got.bindingMatches("cookie-value") || got.bindingMatches("other") {
		t.Error("binding comparison is wrong")
	}

	tomb := tombstone{Kind: tombstoneUsed, At: now, Instance: "sp-3"}
	_, gotTS, err := decodeState(tomb.encode())
	if err != nil || gotTS == nil || gotTS.Kind != tombstoneUsed || gotTS.Instance != "sp-3" || !gotTS.At.Equal(now) {
		t.Errorf("tombstone round trip: %+v, %v", gotTS, err)
	}
}

func TestDecodeStateRejectsGarbage(t *testing.T) {
	t.Parallel()
	full := (&Tracked{RequestID: "id-1", URI: "/", Origin: "sp-1"}).encode()
	for name, b := range map[string][]byte{
		"empty":       nil,
		"one byte":    {magicTracked},
		"bad version": {magicTracked, 9},
		"bad magic":   {'Z', trackedVersion},
		"truncated":   full[:len(full)-3],
		"huge length": {magicTracked, trackedVersion, 0xff, 0xff, 0xff, 0x7f},
	} {
		if _, _, err := decodeState(b); err == nil {
			t.Errorf("%s: decodeState accepted %x", name, b)
		}
	}
}

func FuzzDecodeState(f *testing.F) {
	f.Add((&Tracked{RequestID: "id-1", URI: "/app", Origin: "sp-1"}).encode())
	f.Add((&tombstone{Kind: tombstoneExpired, Instance: "sp-2"}).encode())
	f.Fuzz(func(t *testing.T, b []byte) {
		tr, ts, err := decodeState(b) // must never panic
		if err == nil && (tr == nil) == (ts == nil) {
			t.Fatalf("decodeState returned neither or both: %v %v", tr, ts)
		}
	})
}

// Whatever begin agrees to store, finish can read, and what it refuses the
// decoder would refuse too: the encoder's check and the decoder use the
// same limit for every field, at every length around it. (The old decoder
// capped strings at 4096 bytes while the encoder wrote any length, so a
// return URL of 4,100 characters made the ACS fail with "truncated".)
func TestTrackedCodecAgreesOnLimits(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(7, 11))
	now := time.UnixMilli(1764000000123)
	lengths := func(max int) []int {
		ls := []int{0, 1, max - 1, max, max + 1, 4095, 4096, 4097, 4100}
		for range 40 {
			ls = append(ls, rng.IntN(2*max+2))
		}
		return ls
	}
	fields := []struct {
		name string
		max  int
		set  func(*Tracked, string)
	}{
		{"RequestID", maxEncodedRequestID, func(tr *Tracked, v string) { tr.RequestID = v }},
		{"URI", MaxURI, func(tr *Tracked, v string) { tr.URI = v }},
		{"Origin", maxEncodedInstance, func(tr *Tracked, v string) { tr.Origin = v }},
	}
	for _, f := range fields {
		for _, n := range lengths(f.max) {
			tr := Tracked{RequestID: "id-1", URI: "/app", Origin: "sp-1", Created: now, Expires: now.Add(time.Minute),
				Binding: bindingHash("b")}
			f.set(&tr, strings.Repeat("x", n))
			checkErr := tr.check()
			got, _, decErr := decodeState(tr.encode())
			switch {
			case (checkErr == nil) != (n <= f.max):
				t.Fatalf("%s of %d bytes: check() = %v, limit %d", f.name, n, checkErr, f.max)
			case (checkErr == nil) != (decErr == nil):
				t.Fatalf("%s of %d bytes: check() = %v but decode = %v: encoder and decoder disagree", f.name, n, checkErr, decErr)
			case decErr == nil:
				if diff := cmp.Diff(tr, *got, cmp.Comparer(func(a, b time.Time) bool { return a.Equal(b) })); diff != "" {
					t.Fatalf("%s of %d bytes: round trip (-want +got):\n%s", f.name, n, diff)
				}
			}
		}
	}
}

// The tombstone's instance uses the same limit as the tracked request's.
func TestTombstoneCodecLimit(t *testing.T) {
	t.Parallel()
	for _, n := range []int{maxEncodedInstance, maxEncodedInstance + 1} {
		ts := tombstone{Kind: tombstoneUsed, At: time.UnixMilli(1), Instance: strings.Repeat("i", n)}
		_, got, err := decodeState(ts.encode())
		if (err == nil) != (n <= maxEncodedInstance) || (err == nil && got.Instance != ts.Instance) {
			t.Errorf("tombstone instance of %d bytes: %v %+v", n, err, got)
		}
	}
}
