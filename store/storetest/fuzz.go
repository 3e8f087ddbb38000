package storetest

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"

	"github.com/samlha/samlha/store"
)

// FuzzKeys is the fuzz body of a backend's key encoding: every operation on
// an arbitrary key (any bytes: separators, CR LF, braces that Redis Cluster
// reads as hash tags, the backend's own prefix, invalid UTF-8) either
// refuses it as invalid, exactly when store.CheckKey does, or stores and
// returns the value under exactly that key, without touching a neighbour
// key. A backend's fuzz test is a few lines:
//
//	func FuzzKeys(f *testing.F) {
//		st := memory.New(memory.Options{})
//		f.Cleanup(func() { st.Close() })
//		storetest.FuzzKeys(f, st)
//	}
func FuzzKeys(f *testing.F, st store.Store) {
	for _, k := range []string{"req:sp-1~abc", "a b\r\nc", "{slot}tag", "samlha:req:x", "\xff\xfe", "", string(make([]byte, store.MaxKeyLen+1))} {
		f.Add(k, []byte("v"))
	}
	const neighbour = "fuzz-neighbour"
	f.Fuzz(func(t *testing.T, key string, value []byte) {
		if len(value) > 4096 {
			value = value[:4096]
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if key == neighbour {
			return
		}
		if err := st.Put(ctx, neighbour, []byte("untouched"), time.Minute); err != nil {
			t.Fatalf("Put(neighbour): %v", err)
		}
		invalid := store.CheckKey(key) != nil
		check := func(op string, err error, want error) {
			t.Helper()
			switch {
			case invalid && !errors.Is(err, store.ErrInvalid):
				t.Fatalf("%s(%q): %v, want ErrInvalid", op, key, err)
			case !invalid && want == nil && err != nil:
				t.Fatalf("%s(%q): %v", op, key, err)
			case !invalid && want != nil && !errors.Is(err, want):
				t.Fatalf("%s(%q): %v, want %v", op, key, err, want)
			}
		}
		check("Put", st.Put(ctx, key, value, time.Minute), nil)
		got, err := st.Get(ctx, key)
		check("Get", err, nil)
		if !invalid && !bytes.Equal(got, value) {
			t.Fatalf("Get(%q) = %q, want %q", key, got, value)
		}
		check("PutIfAbsent", st.PutIfAbsent(ctx, key, []byte("other"), time.Minute), store.ErrExists)
		old, err := st.Swap(ctx, key, []byte("swapped"), time.Minute)
		check("Swap", err, nil)
		if !invalid && !bytes.Equal(old, value) {
			t.Fatalf("Swap(%q) returned %q, want %q", key, old, value)
		}
		got, err = st.Get(ctx, key)
		check("Get after Swap", err, nil)
		if !invalid && string(got) != "swapped" {
			t.Fatalf("Get(%q) after Swap = %q, want %q", key, got, "swapped")
		}
		check("Delete", st.Delete(ctx, key), nil)
		_, err = st.Get(ctx, key)
		check("Get after Delete", err, store.ErrNotFound)
		res := st.PutBatch(ctx, []store.Write{{Key: key, Value: value, TTL: time.Minute}, {Key: key, Value: value, TTL: time.Minute, IfAbsent: true}})
		check("PutBatch[0]", res[0], nil)
		check("PutBatch[1]", res[1], store.ErrExists)
		check("Delete", st.Delete(ctx, key), nil)
		if n, err := st.Get(ctx, neighbour); err != nil || string(n) != "untouched" {
			t.Fatalf("the neighbour key holds %q (%v) after operations on %q", n, err, key)
		}
	})
}
