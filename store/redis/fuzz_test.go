package redis_test

import (
	"testing"

	"github.com/samlha/samlha/store/redis/redistest"
	"github.com/samlha/samlha/store/storetest"
)

// FuzzKeys: the Redis store builds its keys (prefix + key) binary-safe,
// on a private redis-server (skipped without one outside CI).
//
//	go test -run '^$' -fuzz '^FuzzKeys$' -fuzztime 10s ./store/redis
func FuzzKeys(f *testing.F) {
	srv := redistest.Start(f)
	st := open(f, with(srv.URL(), suiteParams))
	storetest.FuzzKeys(f, st)
}
