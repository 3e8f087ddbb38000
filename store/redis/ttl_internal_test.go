package redis

import (
	"math"
	"testing"
	"time"
)

func TestTTLArgRoundsUp(t *testing.T) {
	tests := []struct {
		ttl  time.Duration
		want int64
	}{
		{time.Nanosecond, 1},
		{time.Millisecond, 1},
		{time.Millisecond + time.Nanosecond, 2},
		{1500 * time.Microsecond, 2},
		{time.Minute, 60_000},
		{math.MaxInt64, math.MaxInt64/int64(time.Millisecond) + 1},
	}
	for _, tc := range tests {
		if got := ttlArg(tc.ttl); got != tc.want {
			t.Errorf("ttlArg(%v) = %d, want %d", tc.ttl, got, tc.want)
		}
	}
}
