// Package load drives scripted logins through a topology, injects faults at
// set points of the run, and turns what the browsers saw into the lab's
// results.
package load

import (
	"context"
	"crypto/x509"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/samlha/samlha/sp/sptest"
)

// Target is where the logins go.
type Target struct {
	// PublicURL is the service's URL (the balancer's).
	PublicURL string
	Resolve   map[string]string
	RootCAs   *x509.CertPool
}

// Options shape the load. Every loop is bounded: Logins in count,
// Deadline in time.
type Options struct {
	Logins      int
	Concurrency int
	// ThinkTime is spent at the IdP's login form.
	ThinkTime time.Duration
	// FollowUps is how many times each logged-in user requests /app
	// again, FollowUpGap apart, to see whether the session holds.
	FollowUps   int
	FollowUpGap time.Duration
	// Users log in in turn; default alice and bob.
	Users [][2]string
	// LoginTimeout bounds one login with its follow-ups (default 30s).
	LoginTimeout time.Duration
	// Deadline bounds the whole run (default 5m); logins not started by
	// then are not tried.
	Deadline time.Duration
	// Pace, if set, is the shortest time a worker spends on one user: a
	// login that fails fast does not make the next one start sooner. It
	// keeps the arrival of users steady through an outage.
	Pace time.Duration
	// Revisit: once every login is done (and every fault injected), each
	// user who logged in requests /app once more.
	Revisit bool
	// Settle is a pause before the revisit, for a fault whose recovery
	// outlasts the load (a Redis failover): the revisit then asks whether
	// the sessions were kept, not whether the store is back yet.
	Settle time.Duration
	// LaxPlusPOST and SimulatedThink configure each browser (see
	// sptest.Options); SimulatedThink, if set, gives user i's think time
	// on the browser's clock.
	LaxPlusPOST    bool
	SimulatedThink func(i int) time.Duration
	// OnDone is called after each login (from several goroutines).
	OnDone func(r *Record)
}

// Fault is injected once After (a fraction, 0..1) of the logins have
// completed. Faults run one after another on a goroutine of their own;
// the load goes on meanwhile. Target names what it hits ("sp-2", "redis",
// "all replicas").
type Fault struct {
	Kind   string
	Target string
	After  float64
	Do     func(ctx context.Context) error
}

// Record is one simulated user's login and follow-ups.
type Record struct {
	Index     int
	User      string
	Start     time.Time
	Login     *sptest.Result
	FollowUps []FollowUp
	// Think is the think time actually spent in the login (0 if the IdP
	// did not show its form).
	Think time.Duration
	// Revisit is the request to /app at the end of the run (nil if the
	// login failed or Options.Revisit is off).
	Revisit *FollowUp

	browser *sptest.Browser
}

// FollowUp is one request to /app after login: it Held the session, or
// found it Lost (sent to log in again, or a session-* cause), or failed
// with an Error that says nothing of the session (a 502 from a killed
// replica, a 503, a transport error).
type FollowUp struct {
	Held  bool
	Error bool
	Cause string
	Hops  []sptest.Hop
}

// AppliedFault is a fault as it happened.
type AppliedFault struct {
	Kind, Target string
	At           time.Duration
	Err          error
}

// Outcome is everything a Drive saw.
type Outcome struct {
	Start    time.Time
	Duration time.Duration
	Records  []*Record
	Faults   []AppliedFault
	// NotTried counts logins never started because the deadline passed
	// or the context ended.
	NotTried int
}

func (o *Options) defaults() {
	if o.Concurrency <= 0 {
		o.Concurrency = 1
	}
	if len(o.Users) == 0 {
		o.Users = [][2]string{{"alice", "alice-password"}, {"bob", "bob-password"}}
	}
	if o.LoginTimeout <= 0 {
		o.LoginTimeout = 30 * time.Second
	}
	if o.Deadline <= 0 {
		o.Deadline = 5 * time.Minute
	}
}

// Drive runs opts.Logins logins at opts.Concurrency against t and injects
// faults as planned.
func Drive(ctx context.Context, t Target, opts Options, faults []Fault) *Outcome {
	opts.defaults()
	ctx, cancel := context.WithTimeout(ctx, opts.Deadline)
	defer cancel()
	transport := sptest.NewTransport(t.Resolve, t.RootCAs)
	defer transport.CloseIdleConnections()

	out := &Outcome{Start: time.Now(), Records: make([]*Record, 0, opts.Logins)}
	var (
		mu        sync.Mutex
		completed atomic.Int64
		next      atomic.Int64
		wg        sync.WaitGroup
		faultWG   sync.WaitGroup
		progress  = make(chan struct{}, opts.Logins+1)
	)
	// Faults fire from one goroutine, in order, as completions pass their
	// thresholds.
	faultCtx, stopFaults := context.WithCancel(ctx)
	faultWG.Add(1)
	go func() {
		defer faultWG.Done()
		i := 0
		for i < len(faults) {
			threshold := int64(faults[i].After * float64(opts.Logins))
			if completed.Load() >= threshold {
				f := faults[i]
				at := time.Since(out.Start)
				err := f.Do(faultCtx)
				mu.Lock()
				out.Faults = append(out.Faults, AppliedFault{Kind: f.Kind, Target: f.Target, At: at, Err: err})
				mu.Unlock()
				i++
				continue
			}
			select {
			case <-progress:
			case <-faultCtx.Done():
				return
			}
		}
	}()

	for range opts.Concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= opts.Logins || ctx.Err() != nil {
					return
				}
				began := time.Now()
				rec := runOne(ctx, t, opts, transport, i)
				mu.Lock()
				out.Records = append(out.Records, rec)
				mu.Unlock()
				completed.Add(1)
				select {
				case progress <- struct{}{}:
				default:
				}
				if opts.OnDone != nil {
					opts.OnDone(rec)
				}
				if wait := opts.Pace - time.Since(began); wait > 0 {
					select {
					case <-ctx.Done():
					case <-time.After(wait):
					}
				}
			}
		}()
	}
	wg.Wait()
	// Faults not yet reached (the deadline cut the run short) are dropped;
	// a fault under way finishes first, so the revisit sees its effect.
	stopFaults()
	faultWG.Wait()
	if opts.Revisit {
		if opts.Settle > 0 {
			select {
			case <-ctx.Done():
			case <-time.After(opts.Settle):
			}
		}
		revisit(ctx, out.Records, t, opts)
	}
	out.Duration = time.Since(out.Start)
	out.NotTried = opts.Logins - len(out.Records)
	return out
}

func runOne(ctx context.Context, t Target, opts Options, transport http.RoundTripper, i int) *Record {
	user := opts.Users[i%len(opts.Users)]
	ctx, cancel := context.WithTimeout(ctx, opts.LoginTimeout)
	defer cancel()
	bo := sptest.Options{Transport: transport, ThinkTime: opts.ThinkTime, RequestTimeout: 10 * time.Second, LaxPlusPOST: opts.LaxPlusPOST}
	if opts.SimulatedThink != nil {
		bo.SimulatedThink = opts.SimulatedThink(i)
	}
	b := sptest.NewBrowser(bo)
	rec := &Record{Index: i, User: user[0], Start: time.Now(), browser: b}
	rec.Login = b.Login(ctx, t.PublicURL+"/app", user[0], user[1])
	for _, h := range rec.Login.Hops {
		if h.Form == sptest.FormLogin {
			rec.Think = opts.ThinkTime
		}
	}
	if !rec.Login.OK {
		return rec
	}
	for range opts.FollowUps {
		select {
		case <-ctx.Done():
			return rec
		case <-time.After(opts.FollowUpGap):
		}
		rec.FollowUps = append(rec.FollowUps, followUp(ctx, b, t.PublicURL+"/app", user[0]))
	}
	return rec
}

// followUp requests the protected page again: the session held if it was
// served at once, with the user, without a trip to the IdP.
func followUp(ctx context.Context, b *sptest.Browser, u, user string) FollowUp {
	page, err := b.Get(ctx, u)
	if page == nil {
		return FollowUp{Error: true, Cause: sptest.CauseTransport}
	}
	f := FollowUp{Hops: page.Hops}
	switch {
	case err == nil && page.Status == http.StatusOK && len(page.Hops) == 1 && page.Header.Get(sptest.HeaderUser) == user:
		f.Held = true
	case page.Header.Get(sptest.HeaderCause) != "":
		f.Cause = page.Header.Get(sptest.HeaderCause)
	case len(page.Hops) > 1 && page.Hops[0].Status/100 == 3:
		// Sent to the IdP: the SP had no session for this browser.
		f.Cause = "relogin"
		if c := page.Hops[0].Cause; c != "" {
			f.Cause = c
		}
	case err != nil:
		f.Cause = sptest.CauseTransport
	default:
		f.Cause = sptest.CauseHTTP(page.Status)
	}
	f.Error = !f.Held && !SessionLost(f.Cause)
	return f
}

// SessionLost reports whether a follow-up's cause means the session is
// gone: the SP sent the browser to log in again, or named a session cause.
// Any other cause is an error of the request.
func SessionLost(cause string) bool {
	return cause == "relogin" || strings.HasPrefix(cause, "session-")
}

// revisit sends every user who logged in back to /app once, C at a time.
func revisit(ctx context.Context, recs []*Record, t Target, opts Options) {
	work := make(chan *Record)
	var wg sync.WaitGroup
	for range opts.Concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for rec := range work {
				rctx, cancel := context.WithTimeout(ctx, opts.LoginTimeout)
				f := followUp(rctx, rec.browser, t.PublicURL+"/app", rec.User)
				cancel()
				rec.Revisit = &f
			}
		}()
	}
	for _, rec := range recs {
		if rec.Login.OK && rec.browser != nil {
			work <- rec
		}
	}
	close(work)
	wg.Wait()
}
