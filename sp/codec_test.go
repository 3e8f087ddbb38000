package sp

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestTrackedRequestEncoding(t *testing.T) {
	t.Parallel()
	now := time.UnixMilli(1764000000123)
	tr := trackedRequest{RequestID: "id-" + strings.Repeat("ab", 20), URI: "/app?x=1", Origin: "sp-2",
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
	full := (&trackedRequest{RequestID: "id-1", URI: "/", Origin: "sp-1"}).encode()
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
	f.Add((&trackedRequest{RequestID: "id-1", URI: "/app", Origin: "sp-1"}).encode())
	f.Add((&tombstone{Kind: tombstoneExpired, Instance: "sp-2"}).encode())
	f.Fuzz(func(t *testing.T, b []byte) {
		tr, ts, err := decodeState(b) // must never panic
		if err == nil && (tr == nil) == (ts == nil) {
			t.Fatalf("decodeState returned neither or both: %v %v", tr, ts)
		}
	})
}
