package redis

// DialVia makes s, a store behind Sentinels, dial via(master) instead of
// the master the Sentinels name: a test puts a proxy in between.
func DialVia(s *Store, via func(master string) string) {
	s.follow.via.Store(&via)
}
