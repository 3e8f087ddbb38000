// Package walk holds only tests: a headless Chromium walks every page a
// person meets in each mode of samlsp (login, the app, the logout button,
// the signed-out page, each error page) and checks that each one looks
// right: its status and cause, its title and heading, its one style sheet
// loaded and applied, no console error, no blocked request, no
// Content-Security-Policy violation, and a screenshot that is not blank.
// TestLooksRightCatches proves that each check can fail.
//
// SAMLHA_WALK_SHOTS=DIR keeps the screenshots. Without Chromium the tests
// skip with the reason; with CI=true they fail instead.
package walk
