package store

import "context"

// Exporter is implemented by stores that can list their live entries: the
// memory backend, so that a replica moving from its own memory to a shared
// store can hand its state over (store/handoff). It is optional; a shared
// store has nothing to hand over.
type Exporter interface {
	// Export calls fn with the store's live entries, at most batch (at
	// least 1) at a time, each with the time it has left to live as TTL.
	// The entries of one call are copied out under the store's locks;
	// writes made while Export runs may or may not be seen. It stops at
	// fn's first error and returns it, or with an error matching ctx's
	// once ctx is done, or ErrClosed after Close. The slices passed to
	// fn belong to fn.
	Export(ctx context.Context, batch int, fn func([]Write) error) error
}
