package loginstate

import (
	"context"
	"encoding/base64"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/samlha/samlha/sp/failure"
	"github.com/samlha/samlha/sp/keyring/keyringtest"
	"github.com/samlha/samlha/sp/relaystate"
)

// cookieJar is the few rules of a browser's jar these tests need: a
// Set-Cookie replaces the cookie of the same name, Max-Age<0 deletes it.
type cookieJar map[string]*http.Cookie

func (j cookieJar) store(rec *httptest.ResponseRecorder) {
	for _, c := range rec.Result().Cookies() {
		if c.MaxAge < 0 {
			delete(j, c.Name)
		} else {
			j[c.Name] = &http.Cookie{Name: c.Name, Value: c.Value}
		}
	}
}

func (j cookieJar) list() []*http.Cookie {
	var out []*http.Cookie
	for _, c := range j {
		out = append(out, c)
	}
	return out
}

// Two tabs of one browser begin logins at the same moment: both requests
// leave before either answer arrives, so both carry the same cookies (none).
// Each login gets a cookie of its own, so both finish, in either order.
func TestBindingTwoTabsAtOnce(t *testing.T) {
	t.Parallel()
	for _, order := range []string{"first-begun first", "second-begun first"} {
		t.Run(order, func(t *testing.T) {
			t.Parallel()
			f := newTrackerFixture(t, true)
			jar := cookieJar{}
			recA, recB := httptest.NewRecorder(), httptest.NewRecorder()
			rsA, err := f.sp1.Begin(recA, httptest.NewRequest("GET", "/app?tab=a", nil), "id-a", "/app?tab=a")
			if err != nil {
				t.Fatal(err)
			}
			rsB, err := f.sp2.Begin(recB, httptest.NewRequest("GET", "/app?tab=b", nil), "id-b", "/app?tab=b")
			if err != nil {
				t.Fatal(err)
			}
			jar.store(recA) // the answers arrive in order; B's Set-Cookie must not undo A's
			jar.store(recB)
			logins := [][2]string{{rsA, "/app?tab=a"}, {rsB, "/app?tab=b"}}
			if order == "second-begun first" {
				logins[0], logins[1] = logins[1], logins[0]
			}
			for _, l := range logins {
				rec := httptest.NewRecorder()
				tr, fail := f.sp1.Finish(rec, acsRequest(l[0], jar.list()...), l[0])
				if fail != nil {
					t.Fatalf("login of %s: %s (%s)", l[1], fail.Cause, fail.Detail)
				}
				if tr.URI != l[1] {
					t.Errorf("login %s returned to %s", l[1], tr.URI)
				}
				jar.store(rec)
			}
			if len(jar) != 0 {
				t.Errorf("binding cookies left after both logins finished: %v", jar.list())
			}
		})
	}
}

// A binding value the browser presents that this SP never issued for that
// login is refused as binding-mismatch, and does not burn the login.
func TestBindingPlantedValueRefused(t *testing.T) {
	t.Parallel()
	f := newTrackerFixture(t, true)
	rs, real := begin(t, f.sp1)
	otherRS, otherReal := begin(t, f.sp1)
	foreign := &StoreTracker{cookie: CookieSettings{Ring: keyringtest.Ring(t, "another deployment's key")}}
	named := func(v string) *http.Cookie { return &http.Cookie{Name: real.Name, Value: v} }

	raw := []byte(real.Value)
	raw[len(raw)-3] ^= 1 // still base64url, MAC broken
	if raw[len(raw)-3] == real.Value[len(raw)-3] {
		t.Fatal("tamper did nothing")
	}
	for name, planted := range map[string]*http.Cookie{
		// An attacker on a sibling subdomain sets this login's cookie to
		// a value of their choosing...
		"made-up value of the right form": named(relaystate.Token(bindingRawLen)),
		"tampered real value":             named(string(raw)),
		"not of the form at all":          named("attacker"),
		// ...or to a real value they were issued for their own login...
		"real value of another login": named(otherReal.Value),
		// ...or to one made by another SP (another key ring).
		"value signed by another SP": named(issueBinding(foreign.cookie.Ring, rs, testRequestID, f.clock.Now())),
	} {
		_, fail := finish(f.sp2, acsRequest(rs, planted), rs)
		wantCause(t, fail, failure.CauseBindingMismatch)
		if name != "real value of another login" && !strings.Contains(fail.Detail, "not") {
			t.Errorf("%s: detail %q does not say the value is not this SP's", name, fail.Detail)
		}
	}
	// The browser that began another login posts this login's response:
	// it sends binding cookies, but not this login's.
	_, fail := finish(f.sp2, acsRequest(rs, otherReal), rs)
	wantCause(t, fail, failure.CauseBindingMismatch)
	// A browser that sends no binding cookie at all is told so.
	_, fail = finish(f.sp2, acsRequest(rs), rs)
	wantCause(t, fail, failure.CauseBindingCookieMissing)

	if _, fail := finish(f.sp2, acsRequest(rs, real), rs); fail != nil {
		t.Fatalf("the real browser could not finish after planted values: %s (%s)", fail.Cause, fail.Detail)
	}

	// The SP does not take the store's word for what it issued: a tracked
	// request rewritten (by a writer to the store) to bind a value of the
	// writer's choosing is still refused, for the value lacks the SP's
	// signature.
	rs3, _ := begin(t, f.sp1)
	ctx := context.Background()
	b, err := f.store.Get(ctx, keyRequest+rs3)
	if err != nil {
		t.Fatal(err)
	}
	tr, _, err := decodeState(b)
	if err != nil {
		t.Fatal(err)
	}
	chosen := relaystate.Token(bindingRawLen)
	tr.Binding = bindingHash(chosen)
	if err := f.store.Put(ctx, keyRequest+rs3, tr.encode(), time.Hour); err != nil {
		t.Fatal(err)
	}
	_, fail = finish(f.sp2, acsRequest(rs3, &http.Cookie{Name: f.sp1.cookie.bindingName(rs3), Value: chosen}), rs3)
	wantCause(t, fail, failure.CauseBindingMismatch)
	if _, fail := finish(f.sp1, acsRequest(otherRS, otherReal), otherRS); fail != nil {
		t.Fatalf("the other login: %s (%s)", fail.Cause, fail.Detail)
	}
}

// The ring rotates: a value issued under the old key verifies on a replica
// that has the new key first and the old one second, and not on one that
// has dropped the old key.
func TestBindingKeyRotation(t *testing.T) {
	t.Parallel()
	old := keyringtest.Ring(t, "old")
	rs := relaystate.New("sp-1")
	v := issueBinding(old, rs, testRequestID, time.Now())
	if err := verifyBinding(keyringtest.Ring(t, "new", "old"), rs, v); err != nil {
		t.Errorf("ring [new old] refused a value of old: %v", err)
	}
	if err := verifyBinding(keyringtest.Ring(t, "new"), rs, v); !errors.Is(err, errBindingForged) {
		t.Errorf("ring [new] accepted a value of the dropped key: %v", err)
	}
	if err := verifyBinding(old, relaystate.New("sp-1"), v); !errors.Is(err, errBindingForged) {
		t.Errorf("a value verified for another login: %v", err)
	}
	if got := issueBinding(keyringtest.Ring(t, "new", "old"), rs, testRequestID, time.Now()); verifyBinding(keyringtest.Ring(t, "new"), rs, got) != nil {
		t.Error("the first key of the ring does not sign")
	}
}

// One browser holds at most maxBindingCookies binding cookies: beginning one
// more login expires the oldest.
func TestBindingCookiesBounded(t *testing.T) {
	t.Parallel()
	f := newTrackerFixture(t, true)
	jar := cookieJar{}
	var first, firstRS string
	for i := range maxBindingCookies + 3 {
		rec := httptest.NewRecorder()
		req := httptest.NewRequest("GET", "/app", nil)
		for _, c := range jar.list() {
			req.AddCookie(c)
		}
		rs, err := f.sp1.Begin(rec, req, "id", "/app")
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			first, firstRS = f.sp1.cookie.bindingName(rs), rs
		}
		jar.store(rec)
		f.clock.Advance(time.Second)
		if len(jar) > maxBindingCookies {
			t.Fatalf("after %d logins begun the browser holds %d binding cookies, want at most %d", i+1, len(jar), maxBindingCookies)
		}
	}
	if len(jar) != maxBindingCookies {
		t.Errorf("browser holds %d binding cookies, want %d", len(jar), maxBindingCookies)
	}
	if _, ok := jar[first]; ok {
		t.Error("the oldest binding cookie survived; a newer one was expired instead")
	}
	// The evicted login is refused, and the detail says why it may be.
	_, fail := finish(f.sp1, acsRequest(firstRS, jar.list()...), firstRS)
	wantCause(t, fail, failure.CauseBindingMismatch)
	if !strings.Contains(fail.Detail, "expired as the oldest") {
		t.Errorf("detail %q does not mention the eviction", fail.Detail)
	}
}

// On https without a cookie domain the binding cookies carry the __Host-
// prefix, which a sibling subdomain cannot set.
func TestBindingHostPrefix(t *testing.T) {
	t.Parallel()
	f := newTrackerFixture(t, true)
	f.sp1.cookie.Secure, f.sp1.cookie.SameSite = true, http.SameSiteNoneMode
	rs, c := begin(t, f.sp1)
	if !strings.HasPrefix(c.Name, "__Host-samlha_binding_") || !c.Secure || c.Path != "/" || c.Domain != "" {
		t.Errorf("https binding cookie %s; Secure=%v Path=%q Domain=%q: want __Host-, Secure, Path=/ and no Domain", c.Name, c.Secure, c.Path, c.Domain)
	}
	if _, fail := finish(f.sp1, acsRequest(rs, c), rs); fail != nil {
		t.Fatalf("%s (%s)", fail.Cause, fail.Detail)
	}
	f.sp1.cookie.Domain = "example.org"
	if _, c := begin(t, f.sp1); strings.HasPrefix(c.Name, "__Host-") {
		t.Errorf("a cookie with a Domain cannot be __Host-: %s", c.Name)
	}
}

// testRequestID is an AuthnRequest ID of crewjam's form.
const testRequestID = "id-0123456789abcdef0123456789abcdef01234567"

// A version 2 binding value carries the AuthnRequest ID, signed; a value of
// a release before it (version 1) still verifies, without one.
func TestBindingCarriesTheRequestID(t *testing.T) {
	t.Parallel()
	ring := keyringtest.Ring(t, "k1")
	rs := "sp-1~AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
	now := time.Unix(1_800_000_000, 0)
	b, err := openBinding(ring, rs, issueBinding(ring, rs, testRequestID, now))
	if err != nil || b.requestID != testRequestID || !b.issued.Equal(now) {
		t.Fatalf("openBinding = %+v, %v; want %s issued %v", b, err, testRequestID, now)
	}
	v1 := issueBinding(ring, rs, "not-crewjams-form", now)
	if b, err := openBinding(ring, rs, v1); err != nil || b.requestID != "" || len(v1) != bindingValueLen {
		t.Fatalf("version 1 value %q: %+v, %v", v1, b, err)
	}
	// The ID is signed: another ID in the same value does not verify.
	raw, _ := base64.RawURLEncoding.DecodeString(issueBinding(ring, rs, testRequestID, now))
	raw[9] ^= 1
	if _, err := openBinding(ring, rs, base64.RawURLEncoding.EncodeToString(raw)); !errors.Is(err, errBindingForged) {
		t.Fatalf("a changed request ID verified: %v", err)
	}
}
