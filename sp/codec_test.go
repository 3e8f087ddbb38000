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

func TestEveryCauseIsExplained(t *testing.T) {
	t.Parallel()
	seen := map[string]Cause{}
	for _, c := range AllCauses {
		ex := explain(&Failure{Cause: c, Origin: "sp-2"}, "sp-1", "memory")
		if ex.Title == "" || ex.What == "" || len(ex.Fixes) == 0 {
			t.Errorf("cause %s has no full explanation: %+v", c, ex)
		}
		if prev, dup := seen[ex.Title]; dup && c != CauseRequestMalformed {
			t.Errorf("causes %s and %s share the title %q", prev, c, ex.Title)
		}
		seen[ex.Title] = c
		if s := c.Status(); s < 400 || s > 599 {
			t.Errorf("cause %s has status %d", c, s)
		}
	}
	ex := explain(&Failure{Cause: CauseStateCrossInstance, Origin: "sp-2"}, "sp-1", "memory")
	if !strings.Contains(ex.What, `"sp-2"`) || !strings.Contains(ex.What, `"sp-1"`) {
		t.Errorf("cross-instance explanation must name both instances: %s", ex.What)
	}
}
