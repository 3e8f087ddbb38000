// Package localproc starts helper processes on loopback for samlha's test
// harnesses and its lab: a process on a port it really got, probed until it
// answers, proven to be the one answering, and stopped; and the throwaway
// certificate authority those processes serve TLS under.
//
// Ports are never chosen by listening and closing (the kernel hands a port
// freed that way to the next caller, so two children could be given the
// same one). Port picks a port at random from a range below Linux's
// ephemeral range, never the same one twice in this process, without
// binding it; the child binds it. A child that finds its port taken exits,
// and Exited/BindFailed say so at once; Owns checks that the listener on a
// port belongs to the process that was started, so a probe answered by a
// stranger is not mistaken for readiness. Callers then start again on a new
// port.
//
// It imports nothing of samlha's and does not link testing, so the shipped
// samllab binary and store/redis/redistest can both use it.
package localproc
