package limits

import (
	"net/netip"
	"testing"
	"time"
)

// The pending window refuses the start past its limit, says when a slot
// frees, and counts a start no longer than its window plus one bucket.
func TestPendingWindow(t *testing.T) {
	t.Parallel()
	const window = 60 * time.Minute
	p := newPendingWindow(window, 3)
	t0 := time.Unix(1764000000, 0)
	for i := range 3 {
		if ok, _, n := p.add(t0.Add(time.Duration(i) * time.Second)); !ok || n != i+1 {
			t.Fatalf("start %d refused (count %d)", i+1, n)
		}
	}
	ok, wait, n := p.add(t0.Add(10 * time.Second))
	if ok || n != 3 {
		t.Fatalf("4th start within the window: ok=%v count=%d, want refused at 3", ok, n)
	}
	if wait < window-10*time.Second || wait > window+p.width {
		t.Errorf("retry after %v, want about the window (%v)", wait, window)
	}
	// A start whose store write failed is given back.
	p.remove(t0.Add(2 * time.Second))
	if ok, _, _ := p.add(t0.Add(2 * time.Second)); !ok {
		t.Fatal("a released slot was not reusable")
	}
	// Still counted just before window + width after the first start;
	// gone after.
	if got := p.count(t0.Add(window - time.Millisecond)); got != 3 {
		t.Errorf("count just inside the window = %d, want 3", got)
	}
	if got := p.count(t0.Add(window + p.width + 3*time.Second)); got != 0 {
		t.Errorf("count after window + bucket width = %d, want 0", got)
	}
	if ok, _, _ := p.add(t0.Add(window + p.width + 3*time.Second)); !ok {
		t.Error("a start after the window was refused")
	}
}

// The per-client limiter tracks at most its maximum of clients, limits each
// on its own, and counts an IPv6 /64 as one client.
func TestClientLimiter(t *testing.T) {
	t.Parallel()
	now := time.Unix(1764000000, 0)
	c := newClientLimiter(1, 2, 100, time.Hour)
	a := netip.MustParseAddr("192.0.2.1")
	for i := range 2 {
		if ok, _ := c.allow(a, now); !ok {
			t.Fatalf("start %d within the burst refused", i+1)
		}
	}
	ok, wait := c.allow(a, now)
	if ok || wait <= 0 || wait > time.Second {
		t.Fatalf("3rd start at once: ok=%v wait=%v, want refused for up to 1s", ok, wait)
	}
	if ok, _ := c.allow(netip.MustParseAddr("192.0.2.2"), now); !ok {
		t.Fatal("another client was limited by the first one's starts")
	}
	if ok, _ := c.allow(a, now.Add(time.Second)); !ok {
		t.Fatal("a start a second later (rate 1/s) was refused")
	}
	// Two addresses of one /64 are one client.
	v6 := newClientLimiter(1, 1, 100, time.Hour)
	if ok, _ := v6.allow(netip.MustParseAddr("2001:db8:1:2::1"), now); !ok {
		t.Fatal("first IPv6 start refused")
	}
	if ok, _ := v6.allow(netip.MustParseAddr("2001:db8:1:2:ffff::9"), now); ok {
		t.Fatal("a second address in the same /64 got a fresh bucket")
	}
	if ok, _ := v6.allow(netip.MustParseAddr("2001:db8:1:3::1"), now); !ok {
		t.Fatal("another /64 was limited")
	}
	// A flood from many addresses costs at most max entries.
	for i := range 1000 {
		c.allow(netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)}), now)
	}
	if n := c.len(); n != 100 {
		t.Fatalf("limiter tracks %d clients, want its maximum 100", n)
	}
}
