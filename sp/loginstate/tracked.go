package loginstate

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/binary"
	"errors"
	"fmt"
	"time"
)

// Tracked is the server-side state of one login in progress, stored
// under "req:" + RelayState. It is encoded compactly (about 100 bytes) so
// that a memory store holds a pending login in well under 512 bytes.
type Tracked struct {
	RequestID string    // the AuthnRequest ID, which the response's InResponseTo must name
	URI       string    // where to send the browser after login
	Origin    string    // the instance that began the login
	Created   time.Time // when the login began
	Expires   time.Time // when it stops being accepted (Created + request TTL)
	Binding   [bindingHashLen]byte
}

// tombstone replaces a tracked request once it is consumed or found
// expired, so a second attempt can be told "already used" or "expired"
// rather than "unknown".
type tombstone struct {
	Kind     tombstoneKind
	At       time.Time
	Instance string // the replica that consumed it
}

type tombstoneKind byte

const (
	tombstoneUsed    tombstoneKind = 'u'
	tombstoneExpired tombstoneKind = 'e'
)

const (
	bindingHashLen = 16
	magicTracked   = 'R'
	magicTombstone = 'T'
	trackedVersion = 1
	// trackedVersion2 puts the binding hash first, so that "the live
	// tracked request of this login" is a prefix a store can compare
	// (store.Commit's IfPrefix) without knowing the rest. Tombstones keep
	// version 1.
	trackedVersion2 = 2
)

// The longest string each field may hold. The encoder's caller checks them
// (Tracked.check) and the decoder refuses anything longer, so the two
// agree: whatever begin stores, finish can read (TestTrackedCodecAgreesOnLimits).
const (
	maxEncodedRequestID = 256 // crewjam's IDs are "id-" and 40 hex digits
	MaxURI              = 8 << 10
	maxEncodedInstance  = 40 // relaystate.ValidInstanceID
)

// bindingHash is the part of SHA-256(cookie value) the store keeps: enough to
// compare, useless as a cookie.
func bindingHash(cookieValue string) [bindingHashLen]byte {
	sum := sha256.Sum256([]byte(cookieValue))
	var h [bindingHashLen]byte
	copy(h[:], sum[:bindingHashLen])
	return h
}

func (t *Tracked) bindingMatches(cookieValue string) bool {
	h := bindingHash(cookieValue)
	return subtle.ConstantTimeCompare(h[:], t.Binding[:]) == 1
}

// guard is the prefix of the version 2 encoding of a tracked request
// bound to the binding hash h.
func guard(h [bindingHashLen]byte) []byte {
	return append([]byte{magicTracked, trackedVersion2}, h[:]...)
}

func (t *Tracked) encode() []byte {
	b := make([]byte, 0, 2+3*2+len(t.RequestID)+len(t.URI)+len(t.Origin)+2*binary.MaxVarintLen64+bindingHashLen)
	b = append(b, guard(t.Binding)...)
	b = appendString(b, t.RequestID)
	b = appendString(b, t.URI)
	b = appendString(b, t.Origin)
	b = binary.AppendVarint(b, t.Created.UnixMilli())
	b = binary.AppendVarint(b, t.Expires.UnixMilli())
	return b
}

func (ts *tombstone) encode() []byte {
	b := []byte{magicTombstone, trackedVersion, byte(ts.Kind)}
	b = binary.AppendVarint(b, ts.At.UnixMilli())
	return appendString(b, ts.Instance)
}

var errCorrupt = errors.New("stored login state is corrupt")

// check reports a field too long for the decoder to accept; begin refuses
// to store such a request rather than write what finish cannot read.
func (t *Tracked) check() error {
	for _, f := range []struct {
		name string
		v    string
		max  int
	}{{"request ID", t.RequestID, maxEncodedRequestID}, {"return URL", t.URI, MaxURI}, {"origin", t.Origin, maxEncodedInstance}} {
		if len(f.v) > f.max {
			return fmt.Errorf("tracked request: %s is %d bytes, over the %d the codec stores", f.name, len(f.v), f.max)
		}
	}
	return nil
}

// decodeState decodes a stored value into a tracked request or a tombstone
// (exactly one of the results is non-nil when err is nil).
func decodeState(b []byte) (*Tracked, *tombstone, error) {
	if len(b) < 2 || b[1] != trackedVersion && !(b[0] == magicTracked && b[1] == trackedVersion2) {
		return nil, nil, fmt.Errorf("%w: unknown version", errCorrupt)
	}
	d := decoder{b: b[2:]}
	switch b[0] {
	case magicTracked:
		t := &Tracked{}
		v2 := b[1] == trackedVersion2
		if v2 {
			copy(t.Binding[:], d.bytes(bindingHashLen))
		}
		t.RequestID = d.string(maxEncodedRequestID)
		t.URI = d.string(MaxURI)
		t.Origin = d.string(maxEncodedInstance)
		t.Created = time.UnixMilli(d.varint())
		t.Expires = time.UnixMilli(d.varint())
		if !v2 {
			copy(t.Binding[:], d.bytes(bindingHashLen))
		}
		if d.err != nil {
			return nil, nil, d.err
		}
		return t, nil, nil
	case magicTombstone:
		ts := &tombstone{}
		k := d.bytes(1)
		if len(k) == 1 {
			ts.Kind = tombstoneKind(k[0])
		}
		ts.At = time.UnixMilli(d.varint())
		ts.Instance = d.string(maxEncodedInstance)
		if d.err != nil {
			return nil, nil, d.err
		}
		return nil, ts, nil
	default:
		return nil, nil, fmt.Errorf("%w: unknown record type", errCorrupt)
	}
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

type decoder struct {
	b   []byte
	err error
}

func (d *decoder) fail() {
	if d.err == nil {
		d.err = fmt.Errorf("%w: truncated", errCorrupt)
	}
	d.b = nil
}

func (d *decoder) bytes(n int) []byte {
	if d.err != nil || len(d.b) < n {
		d.fail()
		return nil
	}
	v := d.b[:n]
	d.b = d.b[n:]
	return v
}

func (d *decoder) string(max int) string {
	if d.err != nil {
		return ""
	}
	n, k := binary.Uvarint(d.b)
	if k <= 0 {
		d.fail()
		return ""
	}
	if n > uint64(max) {
		d.err = fmt.Errorf("%w: a field of %d bytes, over its limit of %d", errCorrupt, n, max)
		d.b = nil
		return ""
	}
	d.b = d.b[k:]
	return string(d.bytes(int(n)))
}

func (d *decoder) varint() int64 {
	if d.err != nil {
		return 0
	}
	v, k := binary.Varint(d.b)
	if k <= 0 {
		d.fail()
		return 0
	}
	d.b = d.b[k:]
	return v
}
