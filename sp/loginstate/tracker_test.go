package loginstate

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"

	"github.com/samlha/samlha/sp/failure"
	"github.com/samlha/samlha/sp/keyring/keyringtest"
	"github.com/samlha/samlha/sp/relaystate"
	"github.com/samlha/samlha/store"
	"github.com/samlha/samlha/store/memory"
)

type trackerFixture struct {
	clock   *clockwork.FakeClock
	store   store.Store
	sp1     *StoreTracker
	sp2     *StoreTracker
	storeEr atomic.Int64
}

func newTrackerFixture(t *testing.T, shared bool) *trackerFixture {
	t.Helper()
	f := &trackerFixture{clock: clockwork.NewFakeClockAt(time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC))}
	st := memory.New(memory.Options{Now: f.clock.Now, JanitorInterval: -1})
	t.Cleanup(func() { st.Close() })
	f.store = st
	kind := "memory"
	if shared {
		kind = "redis" // what the tracker believes; the bytes go to one memory store either way
	}
	mk := func(inst string) *StoreTracker {
		return &StoreTracker{store: st, storeKind: kind, shared: shared, instance: inst, ttl: 10 * time.Minute, tombstone: 15 * time.Minute,
			opTimeout: time.Second, now: f.clock.Now, cookie: CookieSettings{SameSite: http.SameSiteLaxMode, Ring: keyringtest.Ring(t, "k1")},
			onStoreErr: func(string, error) { f.storeEr.Add(1) }}
	}
	f.sp1, f.sp2 = mk("sp-1"), mk("sp-2")
	return f
}

// begin starts a login on tr, from a browser holding cookies, and returns
// its RelayState and the binding cookie the browser got for it.
func begin(t *testing.T, tr *StoreTracker, cookies ...*http.Cookie) (string, *http.Cookie) {
	t.Helper()
	rec := httptest.NewRecorder()
	req := httptest.NewRequest("GET", "/app", nil)
	for _, c := range cookies {
		if c != nil {
			req.AddCookie(c)
		}
	}
	rs, err := tr.Begin(rec, req, "id-123", "/app")
	if err != nil {
		t.Fatalf("begin: %v", err)
	}
	var binding *http.Cookie
	for _, c := range rec.Result().Cookies() {
		if c.Name == tr.cookie.bindingName(rs) {
			binding = c
		}
	}
	if binding == nil || binding.Value == "" {
		t.Fatal("begin set no binding cookie")
	}
	return rs, binding
}

func acsRequest(rs string, cookies ...*http.Cookie) *http.Request {
	form := url.Values{"RelayState": {rs}, "SAMLResponse": {"x"}}
	req := httptest.NewRequest("POST", "/saml/acs", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for _, c := range cookies {
		req.AddCookie(c)
	}
	return req
}

func finish(tr *StoreTracker, req *http.Request, rs string) (*Tracked, *failure.Failure) {
	return tr.Finish(httptest.NewRecorder(), req, rs)
}

func wantCause(t *testing.T, f *failure.Failure, want failure.Cause) {
	t.Helper()
	if f == nil {
		t.Fatalf("finish succeeded, want failure %s", want)
	}
	if f.Cause != want {
		t.Fatalf("cause %s (%s), want %s", f.Cause, f.Detail, want)
	}
}

func TestTrackerFinishOnce(t *testing.T) {
	t.Parallel()
	f := newTrackerFixture(t, false)
	rs, bind := begin(t, f.sp1, nil)
	tr, fail := finish(f.sp1, acsRequest(rs, bind), rs)
	if fail != nil {
		t.Fatalf("first finish: %v", fail)
	}
	if tr.RequestID != "id-123" || tr.URI != "/app" || tr.Origin != "sp-1" {
		t.Errorf("tracked request %+v", tr)
	}
	_, fail = finish(f.sp1, acsRequest(rs, bind), rs)
	wantCause(t, fail, failure.CauseStateAlreadyUsed)
	if !strings.Contains(fail.Detail, "sp-1") {
		t.Errorf("already-used detail should say who consumed it: %q", fail.Detail)
	}
	// The tombstone outlives the request's own TTL but not its own.
	f.clock.Advance(14 * time.Minute)
	_, fail = finish(f.sp1, acsRequest(rs, bind), rs)
	wantCause(t, fail, failure.CauseStateAlreadyUsed)
	f.clock.Advance(2 * time.Minute)
	_, fail = finish(f.sp1, acsRequest(rs, bind), rs)
	wantCause(t, fail, failure.CauseStateUnknown)
}

func TestTrackerFinishExactlyOneWinner(t *testing.T) {
	t.Parallel()
	f := newTrackerFixture(t, true)
	rs, bind := begin(t, f.sp1, nil)
	const n = 32
	var wins, used atomic.Int64
	var wg sync.WaitGroup
	for i := range n {
		tr := f.sp1
		if i%2 == 1 {
			tr = f.sp2
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, fail := finish(tr, acsRequest(rs, bind), rs)
			switch {
			case fail == nil:
				wins.Add(1)
			case fail.Cause == failure.CauseStateAlreadyUsed:
				used.Add(1)
			default:
				t.Errorf("unexpected failure %v", fail)
			}
		}()
	}
	wg.Wait()
	if wins.Load() != 1 || used.Load() != n-1 {
		t.Fatalf("%d winners and %d already-used of %d; want exactly one winner", wins.Load(), used.Load(), n)
	}
}

func TestTrackerExpired(t *testing.T) {
	t.Parallel()
	f := newTrackerFixture(t, false)
	rs, bind := begin(t, f.sp1, nil)
	f.clock.Advance(11 * time.Minute)
	_, fail := finish(f.sp1, acsRequest(rs, bind), rs)
	wantCause(t, fail, failure.CauseStateExpired)
	_, fail = finish(f.sp1, acsRequest(rs, bind), rs)
	wantCause(t, fail, failure.CauseStateExpired) // a retry is told the same
}

func TestTrackerCrossInstance(t *testing.T) {
	t.Parallel()
	// Two replicas with their own memory: sp-2 has a store of its own.
	f := newTrackerFixture(t, false)
	other := memory.New(memory.Options{Now: f.clock.Now, JanitorInterval: -1})
	t.Cleanup(func() { other.Close() })
	f.sp2.store = other
	rs, bind := begin(t, f.sp1, nil)
	_, fail := finish(f.sp2, acsRequest(rs, bind), rs)
	wantCause(t, fail, failure.CauseStateCrossInstance)
	if fail.Origin != "sp-1" || !strings.Contains(fail.Detail, "sp-2") {
		t.Errorf("cross-instance failure must name both: origin %q detail %q", fail.Origin, fail.Detail)
	}
	if fail.Cause.Status() != http.StatusMisdirectedRequest {
		t.Errorf("status %d", fail.Cause.Status())
	}
	// The login is still there for the replica that began it.
	if _, fail := finish(f.sp1, acsRequest(rs, bind), rs); fail != nil {
		t.Fatalf("origin replica could not finish: %v", fail)
	}
}

func TestTrackerSharedStoreAnyReplica(t *testing.T) {
	t.Parallel()
	f := newTrackerFixture(t, true)
	rs, bind := begin(t, f.sp1, nil)
	if _, fail := finish(f.sp2, acsRequest(rs, bind), rs); fail != nil {
		t.Fatalf("shared store: sp-2 could not finish sp-1's login: %v", fail)
	}
}

func TestTrackerUnknown(t *testing.T) {
	t.Parallel()
	f := newTrackerFixture(t, false)
	for name, rs := range map[string]string{
		"never issued, this instance": relaystate.New("sp-1"),
		"not samlha format":           "some-idp-initiated-relaystate",
	} {
		_, fail := finish(f.sp1, acsRequest(rs), rs)
		if fail == nil || fail.Cause != failure.CauseStateUnknown {
			t.Errorf("%s: got %v, want state-unknown", name, fail)
		}
	}
}

func TestTrackerBinding(t *testing.T) {
	t.Parallel()
	f := newTrackerFixture(t, true)
	rs, bind := begin(t, f.sp1, nil)

	_, fail := finish(f.sp1, acsRequest(rs), rs)
	wantCause(t, fail, failure.CauseBindingCookieMissing)

	_, otherBind := begin(t, f.sp1, nil) // another browser's cookie
	_, fail = finish(f.sp2, acsRequest(rs, otherBind), rs)
	wantCause(t, fail, failure.CauseBindingMismatch)

	// Neither forged post burned the real login.
	if _, fail := finish(f.sp2, acsRequest(rs, bind), rs); fail != nil {
		t.Fatalf("the real browser could not finish after forged posts: %v", fail)
	}
}

func TestTrackerStoreDown(t *testing.T) {
	t.Parallel()
	f := newTrackerFixture(t, true)
	rs, bind := begin(t, f.sp1, nil)
	f.store.Close()
	_, fail := finish(f.sp1, acsRequest(rs, bind), rs)
	wantCause(t, fail, failure.CauseStoreUnavailable)
	if fail.Cause.Status() != http.StatusServiceUnavailable {
		t.Errorf("status %d", fail.Cause.Status())
	}
	_, err := f.sp1.Begin(httptest.NewRecorder(), httptest.NewRequest("GET", "/app", nil), "id", "/")
	if !errors.Is(err, store.ErrUnavailable) {
		t.Errorf("begin on a closed store: %v, want ErrUnavailable", err)
	}
	if f.storeEr.Load() < 2 {
		t.Errorf("store errors reported %d times, want at least 2", f.storeEr.Load())
	}
}

func TestTrackerStoreFull(t *testing.T) {
	t.Parallel()
	clock := clockwork.NewFakeClockAt(time.Now())
	st := memory.New(memory.Options{Now: clock.Now, JanitorInterval: -1, MaxEntries: 2, Shards: 1})
	t.Cleanup(func() { st.Close() })
	tr := &StoreTracker{store: st, storeKind: "memory", instance: "sp-1", ttl: time.Minute, tombstone: time.Minute,
		opTimeout: time.Second, now: clock.Now, onStoreErr: func(string, error) {}, cookie: CookieSettings{Ring: keyringtest.Ring(t, "k1")}}
	for i := range 2 {
		if _, err := tr.Begin(httptest.NewRecorder(), httptest.NewRequest("GET", "/", nil), "id", "/"); err != nil {
			t.Fatalf("begin %d: %v", i, err)
		}
	}
	_, err := tr.Begin(httptest.NewRecorder(), httptest.NewRequest("GET", "/", nil), "id", "/")
	if f := failure.FromStore(err, ""); !errors.Is(err, store.ErrFull) || f.Cause != failure.CauseStoreFull {
		t.Fatalf("third begin: %v (cause %s), want store-full", err, f.Cause)
	}
}
