package failure

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/samlha/samlha/store"
)

// README's failure taxonomy names every cause the SP can answer with, with
// its status: the table is what an operator reads when a page says a cause.
func TestREADMETaxonomyListsEveryCause(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	readme := string(b)
	for _, c := range AllCauses {
		row := "| `" + string(c) + "` | "
		i := strings.Index(readme, row)
		if i < 0 {
			t.Errorf("README's failure taxonomy has no row %q", row)
			continue
		}
		status := strings.TrimSpace(strings.SplitN(readme[i+len(row):], "|", 2)[0])
		if want := strconv.Itoa(c.Status()); status != want {
			t.Errorf("README gives %s status %s; the SP answers %s", c, status, want)
		}
	}
}

func TestEveryCauseIsExplained(t *testing.T) {
	t.Parallel()
	seen := map[string]Cause{}
	for _, c := range AllCauses {
		ex := Explain(&Failure{Cause: c, Origin: "sp-2"}, Context{Instance: "sp-1", StoreKind: "memory"})
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
	ex := Explain(&Failure{Cause: CauseStateCrossInstance, Origin: "sp-2"}, Context{Instance: "sp-1", StoreKind: "memory"})
	if !strings.Contains(ex.What, `"sp-2"`) || !strings.Contains(ex.What, `"sp-1"`) {
		t.Errorf("cross-instance explanation must name both instances: %s", ex.What)
	}
}

// Only store errors are called store errors: anything else is internal,
// so an outage is never claimed for what was not one.
func TestStoreFailure(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		err    error
		cause  Cause
		status int
	}{
		{store.Unavailable("get", errors.New("connection refused")), CauseStoreUnavailable, 503},
		{store.ErrClosed, CauseStoreUnavailable, 503},
		{fmt.Errorf("redis get: %w", context.DeadlineExceeded), CauseStoreUnavailable, 503},
		{fmt.Errorf("put: %w", store.ErrFull), CauseStoreFull, 503},
		{fmt.Errorf("redis put: %w", context.DeadlineExceeded), CauseStoreUnavailable, 503}, // the SP's --store-timeout ran out
		{errors.New("cannot sign the tracking cookie"), CauseInternal, 500},
		{fmt.Errorf("put: %w", store.ErrInvalid), CauseInternal, 500},
	} {
		f := FromStore(tc.err, "sp-1")
		if f.Cause != tc.cause || f.Cause.Status() != tc.status || f.Detail == "" {
			t.Errorf("%v: %s (%d), want %s (%d)", tc.err, f.Cause, f.Cause.Status(), tc.cause, tc.status)
		}
	}
}

// Advice names what the operator would change for the cause at hand.
func TestAdviceSpecificToTheCause(t *testing.T) {
	t.Parallel()
	c := Context{Instance: "sp-1", StoreKind: "redis", MetadataSource: "--idp-metadata-file /etc/idp.xml"}
	ex := Explain(&Failure{Cause: CauseStateUnknown, Reason: ReasonUnsolicited}, c)
	if !strings.Contains(strings.Join(ex.Fixes, " "), "--allow-idp-initiated") {
		t.Errorf("an unsolicited response's advice does not mention --allow-idp-initiated: %v", ex.Fixes)
	}
	ex = Explain(&Failure{Cause: CauseIdPMetadataUnavailable}, c)
	if f := strings.Join(ex.Fixes, " "); !strings.Contains(f, "--idp-metadata-file /etc/idp.xml") || strings.Contains(f, "--idp-metadata-url") {
		t.Errorf("the metadata advice does not name the flag in use: %v", ex.Fixes)
	}
	ex = Explain(&Failure{Cause: CauseResponseInvalid, Reason: "status", IdPStatus: `Responder / AuthnFailed ("locked")`}, c)
	if !strings.Contains(ex.What, "AuthnFailed") {
		t.Errorf("the IdP's status is not shown: %s", ex.What)
	}
	ex = Explain(&Failure{Cause: CauseResponseInvalid, Reason: "expired"}, c)
	if f := strings.Join(ex.Fixes, " "); !strings.Contains(f, "clocks") {
		t.Errorf("an expired response's advice does not mention clocks: %v", ex.Fixes)
	}
	ex = Explain(&Failure{Cause: CauseResponseInvalid, Reason: "audience"}, c)
	if f := strings.Join(ex.Fixes, " "); strings.Contains(f, "clocks") || !strings.Contains(f, "--root-url") {
		t.Errorf("an audience mismatch's advice: %v", ex.Fixes)
	}
}
