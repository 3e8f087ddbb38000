package store

import (
	"errors"
	"fmt"
	"time"
)

// Sentinels. Backends wrap them (with %w, or with errors that also match
// them) so callers test with errors.Is, never with == or by message.
var (
	// ErrNotFound: the key holds no live value.
	ErrNotFound = errors.New("store: not found")

	// ErrExists: PutIfAbsent found a live value under the key.
	ErrExists = errors.New("store: key already exists")

	// ErrConflict: a Commit's guard failed: the live value does not begin
	// with the prefix it requires. Nothing was written.
	ErrConflict = errors.New("store: guard failed")

	// ErrUnavailable: the store could not perform the operation: the
	// connection was refused or lost, a call timed out, the server is
	// loading or read-only, or the store is closed. The operation may or
	// may not have been applied. It never means the key is absent.
	ErrUnavailable = errors.New("store: unavailable")

	// ErrClosed: the store has been closed. It also matches ErrUnavailable.
	ErrClosed = &classified{msg: "store: closed", kinds: []error{ErrUnavailable}}

	// ErrFull: the store holds as many entries as it may and refuses new
	// ones rather than evict live state. Existing keys can still be
	// replaced, taken and deleted.
	ErrFull = errors.New("store: full")

	// ErrInvalid: the arguments break the contract: an empty or too long
	// key, a TTL that is not positive, a value that is too large.
	ErrInvalid = errors.New("store: invalid argument")
)

// classified is an error with its own message that also matches kinds.
type classified struct {
	msg   string
	cause error
	kinds []error
}

func (e *classified) Error() string {
	if e.cause != nil {
		return e.msg + ": " + e.cause.Error()
	}
	return e.msg
}

func (e *classified) Unwrap() []error {
	if e.cause == nil {
		return e.kinds
	}
	return append([]error{e.cause}, e.kinds...)
}

// Unavailable returns an error that describes op failing because of cause,
// matching both ErrUnavailable and cause.
func Unavailable(op string, cause error) error {
	return &classified{msg: "store: " + op + ": unavailable", cause: cause, kinds: []error{ErrUnavailable}}
}

// IsUnavailable reports whether err says the store could not be used.
func IsUnavailable(err error) bool { return errors.Is(err, ErrUnavailable) }

// CheckKey returns an error matching ErrInvalid if key breaks the contract.
func CheckKey(key string) error {
	switch {
	case key == "":
		return fmt.Errorf("%w: empty key", ErrInvalid)
	case len(key) > MaxKeyLen:
		return fmt.Errorf("%w: key of %d bytes is longer than %d", ErrInvalid, len(key), MaxKeyLen)
	}
	return nil
}

// CheckTTL returns an error matching ErrInvalid if ttl is not positive.
func CheckTTL(ttl time.Duration) error {
	if ttl <= 0 {
		return fmt.Errorf("%w: TTL %v is not positive", ErrInvalid, ttl)
	}
	return nil
}

// CheckValue returns an error matching ErrInvalid if value is too large for
// a backend whose limit is max bytes.
func CheckValue(value []byte, max int) error {
	if len(value) > max {
		return fmt.Errorf("%w: value of %d bytes is larger than %d", ErrInvalid, len(value), max)
	}
	return nil
}
