//go:build race

package sp_test

// raceEnabled reports whether the race detector is on: the 20,000-request
// flood is run without it (.ci/run runs it in a step of its own), since
// under it the flood alone takes minutes.
const raceEnabled = true
