package memory_test

import (
	"testing"

	"github.com/samlha/samlha/store/memory"
	"github.com/samlha/samlha/store/storetest"
)

// FuzzKeys: the memory store validates and keeps keys byte for byte.
//
//	go test -run '^$' -fuzz '^FuzzKeys$' -fuzztime 10s ./store/memory
func FuzzKeys(f *testing.F) {
	st := memory.New(memory.Options{})
	f.Cleanup(func() { st.Close() })
	storetest.FuzzKeys(f, st)
}
