//go:build !race

package sp_test

// raceEnabled: see race_on_test.go.
const raceEnabled = false
