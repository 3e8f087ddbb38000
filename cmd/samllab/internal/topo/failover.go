package topo

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

// switchWait bounds how long a failover watch listens for +switch-master.
const switchWait = time.Minute

// heldMsg is the line a replica's store logs once its operations go
// through again after a failover (store/redis).
const heldMsg = "redis-sentinel: operations go through again after the master was unreachable"

// failoverWatch is what the lab saw of a Sentinel failover: when it killed
// the master, and when the Sentinel announced the switch.
type failoverWatch struct {
	killed time.Time

	mu       sync.Mutex
	switched time.Time // zero until +switch-master
	addr     string    // the new master
	err      error     // why no switch was heard
}

// KillMasterWatched kills the Redis master of a Sentinel topology and
// watches for the Sentinel's +switch-master on a goroutine of its own, so
// that the fault returns at once and the load goes on through the failover
// window: blocking the fault's caller until the switch would stall what
// it drives and hide the window. FailoverNotes reports what it saw.
func (t *Topology) KillMasterWatched() error {
	if t.Sentinel == nil {
		return errors.New("this topology has no Sentinel")
	}
	ctx, cancel := context.WithTimeout(context.Background(), switchWait)
	sc := goredis.NewSentinelClient(&goredis.Options{Addr: fmt.Sprintf("127.0.0.1:%d", t.sentinelPt), DisableIdentity: true})
	ps := sc.Subscribe(ctx, "+switch-master")
	// Subscribed before the kill, so the switch cannot be missed.
	if _, err := ps.ReceiveTimeout(ctx, 5*time.Second); err != nil {
		ps.Close()
		sc.Close()
		cancel()
		return fmt.Errorf("subscribe to the Sentinel's +switch-master: %w", err)
	}
	if err := t.StopRedis(); err != nil {
		ps.Close()
		sc.Close()
		cancel()
		return err
	}
	w := &failoverWatch{killed: time.Now()}
	t.failover.Store(w)
	go func() {
		defer cancel()
		defer sc.Close()
		defer ps.Close()
		w.listen(ctx, ps)
	}()
	return nil
}

// listen records the first +switch-master about the lab's master.
func (w *failoverWatch) listen(ctx context.Context, ps *goredis.PubSub) {
	for {
		msg, err := ps.ReceiveMessage(ctx)
		if err != nil {
			w.mu.Lock()
			w.err = err
			w.mu.Unlock()
			return
		}
		// "<name> <old ip> <old port> <new ip> <new port>"
		if f := strings.Fields(msg.Payload); len(f) == 5 && f[0] == "samlha" {
			w.mu.Lock()
			w.switched, w.addr = time.Now(), f[3]+":"+f[4]
			w.mu.Unlock()
			return
		}
	}
}

// FailoverWindow is what the lab saw of a failover begun with
// KillMasterWatched: the time from the kill to the Sentinel's
// +switch-master (Switched false if none was heard, Why says why), the
// new master, and how long each replica's store held its operations (from
// the first that found the master gone to the first that went through
// again), as the replica logged it, by replica ID.
type FailoverWindow struct {
	Switch   time.Duration
	Switched bool
	Why      string
	Master   string
	Held     map[string]time.Duration
}

// Failover returns the failover window, false if the topology's master
// was not killed with KillMasterWatched.
func (t *Topology) Failover() (FailoverWindow, bool) {
	w := t.failover.Load()
	if w == nil {
		return FailoverWindow{}, false
	}
	w.mu.Lock()
	fw := FailoverWindow{Switched: !w.switched.IsZero(), Master: w.addr, Held: map[string]time.Duration{}}
	if fw.Switched {
		fw.Switch = w.switched.Sub(w.killed)
	} else {
		fw.Why = "the run ended first"
		if w.err != nil {
			fw.Why = w.err.Error()
		}
	}
	w.mu.Unlock()
	for _, r := range t.Replicas {
		if d, ok := heldFor(r.Proc.LogPath); ok {
			fw.Held[r.ID] = d
		}
	}
	return fw, true
}

// FailoverNotes says the failover window in words (see Failover); nil if
// there was none.
func (t *Topology) FailoverNotes() []string {
	fw, ok := t.Failover()
	if !ok {
		return nil
	}
	var notes []string
	if fw.Switched {
		notes = append(notes, fmt.Sprintf("failover window: the Sentinel announced the new master (%s) %.2fs after the master was killed (+switch-master)",
			fw.Master, fw.Switch.Seconds()))
	} else {
		notes = append(notes, fmt.Sprintf("failover window: no +switch-master heard (%s)", fw.Why))
	}
	var held []string
	for id, d := range fw.Held {
		held = append(held, fmt.Sprintf("%s %.2fs", id, d.Seconds()))
	}
	if len(held) > 0 {
		slices.Sort(held)
		notes = append(notes, "store operations held through the failover, per replica (its log): "+strings.Join(held, ", "))
	}
	return notes
}

// heldFor returns the longest hold a replica's log reports.
func heldFor(path string) (time.Duration, bool) {
	f, err := os.Open(path)
	if err != nil {
		return 0, false
	}
	defer f.Close()
	var longest time.Duration
	found := false
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Bytes()
		if !strings.Contains(string(line), heldMsg) {
			continue
		}
		var rec struct {
			Held json.RawMessage `json:"held"`
		}
		if json.Unmarshal(line, &rec) != nil {
			continue
		}
		if d, ok := duration(rec.Held); ok {
			longest, found = max(longest, d), true
		}
	}
	return longest, found
}

// duration reads a duration as slog's JSON handler writes it (a number of
// nanoseconds) or as a string ("2.4s").
func duration(raw json.RawMessage) (time.Duration, bool) {
	var ns int64
	if json.Unmarshal(raw, &ns) == nil {
		return time.Duration(ns), true
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		d, err := time.ParseDuration(s)
		return d, err == nil
	}
	return 0, false
}
