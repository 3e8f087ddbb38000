package main

import (
	"bufio"
	"io"
	"sync"
	"time"
)

// flushWriter buffers log output and writes it out every interval (or when
// the buffer fills), so that the access log costs one write system call per
// batch instead of one per request. Close flushes what is left.
type flushWriter struct {
	mu   sync.Mutex
	bw   *bufio.Writer
	stop chan struct{}
	done chan struct{}
}

func newFlushWriter(w io.Writer, interval time.Duration) *flushWriter {
	f := &flushWriter{bw: bufio.NewWriterSize(w, 64<<10), stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(f.done)
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				f.flush()
			case <-f.stop:
				f.flush()
				return
			}
		}
	}()
	return f
}

func (f *flushWriter) Write(p []byte) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.bw.Write(p)
}

func (f *flushWriter) flush() {
	f.mu.Lock()
	defer f.mu.Unlock()
	_ = f.bw.Flush()
}

// Close stops the flusher and flushes.
func (f *flushWriter) Close() error {
	close(f.stop)
	<-f.done
	return nil
}
