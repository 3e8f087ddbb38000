package localproc

import (
	"math/rand/v2"
	"sync"
	"time"
)

// The range Port draws from: below Linux's ephemeral range (32768-60999),
// from which the kernel takes the ports of outgoing connections and of ":0"
// listeners, so a port given out here is not also given to one of those,
// and a server stopped for an outage test can get its port back. The block
// 24000-24999 is left out: it is this project's convention for fixed ports
// in local runs.
const (
	portMin      = 20000
	portMax      = 31999
	reservedMin  = 24000
	reservedMax  = 24999
	portAttempts = 200
)

// ports remembers every port given out by this process, so that two
// children of one process are never given the same port (the bug that a
// listen-and-close helper had: the kernel hands the port it just freed to
// the next caller). Ports are a resource of the whole process, like the
// kernel's own table, hence one set per process.
var ports = struct {
	sync.Mutex
	given map[int]bool
	// busy is the machine's listener table, read at most every
	// busyMaxAge (it is thousands of lines on a busy machine).
	busy   map[int]bool
	busyAt time.Time
}{given: map[int]bool{}}

const busyMaxAge = 500 * time.Millisecond

// Port returns a loopback TCP port for a child to bind: drawn at random,
// never returned before by this process, and (on Linux) not listened on by
// anyone at the moment of the call. It binds nothing, so a process may
// still take it before the child does; the child then fails to bind, and
// BindFailed and Owns say so.
func Port() int {
	ports.Lock()
	defer ports.Unlock()
	if time.Since(ports.busyAt) > busyMaxAge {
		ports.busy, ports.busyAt = listeningPorts(), time.Now()
	}
	busy := ports.busy
	var p int
	for range portAttempts {
		p = portMin + rand.IntN(portMax-portMin+1)
		if (p >= reservedMin && p <= reservedMax) || ports.given[p] || busy[p] {
			continue
		}
		break
	}
	ports.given[p] = true
	return p
}
