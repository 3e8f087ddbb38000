package limits

import (
	"net/netip"
	"testing"
	"time"
)

var t0 = time.Unix(1764000000, 0)

func addr(i int) netip.Addr {
	return netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
}

// admitN starts n logins for client at now, failing the test on a refusal.
func admitN(t *testing.T, g *Gate, client netip.Addr, now time.Time, n int) {
	t.Helper()
	for i := range n {
		if f, _ := g.Admit(client, now); f != nil {
			t.Fatalf("start %d of %s refused: %v", i+1, client, f)
		}
	}
}

func reasonOf(g *Gate, client netip.Addr, now time.Time) string {
	f, _ := g.Admit(client, now)
	if f == nil {
		return ""
	}
	return f.Reason
}

const window = 25 * time.Minute

// A client may hold its share of pending logins and no more; a finished
// login (the ACS) gives it one back; other clients are not affected.
func TestClientShare(t *testing.T) {
	t.Parallel()
	g := gate(LoginLimits{MaxPending: 1000, PerClientRate: 1000, PerClientBurst: 1000, TotalRate: -1})
	a := addr(1)
	admitN(t, g, a, t0, 10) // the default share: 1% of 1000, at least 10
	if r := reasonOf(g, a, t0); r != "client-share" {
		t.Fatalf("11th pending login of one client: reason %q, want client-share", r)
	}
	if r := reasonOf(g, addr(2), t0); r != "" {
		t.Fatalf("another client refused (%s)", r)
	}
	g.Done(a, t0)
	if r := reasonOf(g, a, t0); r != "" {
		t.Fatalf("a client that finished a login was refused (%s)", r)
	}
	// A start whose store write failed is given back too.
	g.Release(a, t0)
	if r := reasonOf(g, a, t0); r != "" {
		t.Fatalf("a client whose start was released was refused (%s)", r)
	}
	// Off without the per-client rate.
	off := gate(LoginLimits{MaxPending: 1000, PerClientRate: -1, TotalRate: -1})
	admitN(t, off, a, t0, 50)
}

// Past half the ceiling only light clients start; a client holding
// nothing is refused only at the ceiling itself.
func TestSheddingHeavyClientsFirst(t *testing.T) {
	t.Parallel()
	g := gate(LoginLimits{MaxPending: 100, PerClientPending: 60, PerClientRate: 1000, PerClientBurst: 1000, TotalRate: -1})
	heavy := addr(1)
	admitN(t, g, heavy, t0, 50)
	if r := reasonOf(g, heavy, t0); r != "shedding" {
		t.Fatalf("a heavy client past half the ceiling: reason %q, want shedding", r)
	}
	admitN(t, g, addr(2), t0, 3) // light: fewer than 4 starts
	for i := range 47 {
		admitN(t, g, addr(100+i), t0, 1)
	}
	if r := reasonOf(g, addr(9999), t0); r != "pending-logins" {
		t.Fatalf("a new client at the ceiling: reason %q, want pending-logins", r)
	}
}

// The last quarter of the replica's burst is kept for light clients.
func TestReplicaReserveForLightClients(t *testing.T) {
	t.Parallel()
	g := gate(LoginLimits{MaxPending: -1, PerClientRate: 1000, PerClientBurst: 1000, TotalRate: 0.001, TotalBurst: 20})
	heavy := addr(1)
	admitN(t, g, heavy, t0, 15) // 20 - 5 reserved
	if r := reasonOf(g, heavy, t0); r != "shedding" {
		t.Fatalf("a heavy client on the reserve: reason %q, want shedding", r)
	}
	for i := range 5 {
		admitN(t, g, addr(10+i), t0, 1)
	}
	if r := reasonOf(g, addr(99), t0); r != "replica" {
		t.Fatalf("the burst spent: reason %q, want replica", r)
	}
}

// Retry-After is honest: a copy of the limits moved forward by the wait
// admits the start, and (for waits over a second) a copy moved forward by
// a second less still refuses it.
func TestRetryAfterIsHonest(t *testing.T) {
	t.Parallel()
	step := func(i int) time.Time { return t0.Add(time.Duration(i) * 7 * time.Second) }
	cases := []struct {
		name   string
		limits LoginLimits
		build  func(t *testing.T, g *Gate) (netip.Addr, time.Time)
	}{
		{"ceiling", LoginLimits{MaxPending: 40, PerClientRate: 1000, PerClientBurst: 1000, TotalRate: -1}, func(t *testing.T, g *Gate) (netip.Addr, time.Time) {
			for i := range 40 {
				admitN(t, g, addr(i), step(i), 1)
			}
			return addr(1000), step(41)
		}},
		{"client-share", LoginLimits{MaxPending: 1000, PerClientRate: 1000, PerClientBurst: 1000, TotalRate: -1}, func(t *testing.T, g *Gate) (netip.Addr, time.Time) {
			for i := range 10 {
				admitN(t, g, addr(1), step(i*3), 1)
			}
			return addr(1), step(30)
		}},
		{"shedding", LoginLimits{MaxPending: 20, PerClientPending: 20, PerClientRate: 1000, PerClientBurst: 1000, TotalRate: -1}, func(t *testing.T, g *Gate) (netip.Addr, time.Time) {
			for i := range 10 {
				admitN(t, g, addr(1), step(i*20), 1)
			}
			return addr(1), step(200)
		}},
		{"client rate", LoginLimits{MaxPending: -1, PerClientRate: 0.01, PerClientBurst: 3, TotalRate: -1}, func(t *testing.T, g *Gate) (netip.Addr, time.Time) {
			admitN(t, g, addr(1), t0, 3)
			return addr(1), t0.Add(5 * time.Second)
		}},
		{"replica rate", LoginLimits{MaxPending: -1, PerClientRate: -1, TotalRate: 0.1, TotalBurst: 4}, func(t *testing.T, g *Gate) (netip.Addr, time.Time) {
			for i := range 4 {
				admitN(t, g, addr(i), t0, 1)
			}
			return addr(9), t0.Add(time.Second)
		}},
		{"replica reserve", LoginLimits{MaxPending: -1, PerClientRate: 1000, PerClientBurst: 1000, TotalRate: 0.1, TotalBurst: 8}, func(t *testing.T, g *Gate) (netip.Addr, time.Time) {
			admitN(t, g, addr(1), t0, 6)
			return addr(1), t0.Add(time.Second)
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			g := gate(c.limits)
			client, now := c.build(t, g)
			f, wait := g.Admit(client, now)
			if f == nil || wait <= 0 {
				t.Fatalf("not refused (%v, %v)", f, wait)
			}
			later := gate(c.limits)
			c.build(t, later)
			if f, _ := later.Admit(client, now.Add(wait)); f != nil {
				t.Errorf("refused %v (%s) after its Retry-After of %v: %v", f.Cause, f.Reason, wait, f)
			}
			if wait > time.Second {
				early := gate(c.limits)
				c.build(t, early)
				if f, _ := early.Admit(client, now.Add(wait-time.Second)); f == nil {
					t.Errorf("admitted a second before its Retry-After of %v", wait)
				}
			}
		})
	}
}

// gate is the Gate of l, with the defaults, over a 25-minute window.
func gate(l LoginLimits) *Gate {
	l.SetDefaults()
	return NewGate(l, window, false)
}
