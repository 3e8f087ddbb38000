// Package walk holds only tests: a headless Chromium walks every page a
// person meets in each mode of samlsp (login, the app, the logout button,
// the signed-out page, each error page) and checks that each one looks
// right: its status and cause, its title and heading, its one style sheet
// loaded and applied, no console error, no blocked request, no
// Content-Security-Policy violation, and a screenshot that is not blank.
// TestLooksRightCatches proves that each check can fail.
//
// TestWalkApp walks app mode; TestWalkGateway gateway mode (samlsp
// --upstream go-httpbin) and TestWalkForwardAuth forward-auth mode (nginx
// on deploy/nginx-forward-auth.conf, only its addresses moved, before
// samlsp and go-httpbin), each with its refusals (an --allow rule, a
// ;jsessionid path, no IdP metadata), which must come from samlsp and
// never reach go-httpbin. The three run in parallel, one Chromium each.
//
// SAMLHA_WALK_SHOTS=DIR keeps the screenshots. Without Chromium (or nginx,
// for forward-auth) the tests skip with the reason; with CI=true they fail
// instead.
package walk
