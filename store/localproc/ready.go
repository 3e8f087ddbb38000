package localproc

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/cenkalti/backoff/v5"
	goredis "github.com/redis/go-redis/v9"
)

// Poll intervals while waiting for a child: short at first (most start in
// tens of milliseconds), growing to a cap so a slow start on a loaded
// machine does not cost a busy loop.
const (
	pollFirst = 10 * time.Millisecond
	pollMax   = 250 * time.Millisecond
)

// Poll calls op until it returns nil, backing off from 10 ms to 250 ms
// between calls, or until ctx ends (the error then names op's last error).
// An error wrapped with backoff.Permanent stops it at once.
func Poll(ctx context.Context, op func(context.Context) error) error {
	b := backoff.NewExponentialBackOff()
	b.InitialInterval, b.MaxInterval, b.Multiplier = pollFirst, pollMax, 1.5
	_, err := backoff.Retry(ctx, func() (struct{}, error) {
		return struct{}{}, op(ctx)
	}, backoff.WithBackOff(b), backoff.WithMaxElapsedTime(0))
	return err
}

// Ready waits until probe succeeds against p, then checks that p itself
// holds the listener on each of ports (see Owns). It fails at once, with
// the end of p's log, if p exits first; the error wraps ErrPortTaken when p
// exited because a port was taken, or when a port is answered by another
// process (p is then killed). extraLogs are log files of p's own to search
// for the bind failure and to quote (redis-server's --logfile).
func Ready(ctx context.Context, p *Proc, ports []int, probe func(context.Context) error, extraLogs ...string) error {
	var last error
	err := Poll(ctx, func(ctx context.Context) error {
		select {
		case <-p.Exited():
			return backoff.Permanent(errExited)
		default:
		}
		last = probe(ctx)
		return last
	})
	if errors.Is(err, errExited) {
		// The log may still be being written: wait for the exit to be
		// fully recorded (Exited is closed after the log is closed).
		msg := fmt.Sprintf("%s exited before it was ready (%v); end of %s:\n%s", p.Name, p.ExitErr(), p.LogPath, p.LogTail(2000))
		for _, l := range extraLogs {
			msg += "\nend of " + l + ":\n" + tail(l, 2000)
		}
		if p.BindFailed(extraLogs...) {
			return fmt.Errorf("%s: %w", msg, ErrPortTaken)
		}
		return errors.New(msg)
	}
	if err != nil {
		if errors.Is(err, ErrPortTaken) {
			p.Kill()
			return fmt.Errorf("%s: %w", p.Name, err)
		}
		return fmt.Errorf("%s not ready (last: %v; %w); end of %s:\n%s", p.Name, last, err, p.LogPath, p.LogTail(2000))
	}
	for _, port := range ports {
		if err := Owns(p.Pid(), port); err != nil {
			p.Kill()
			return fmt.Errorf("%s: %w", p.Name, err)
		}
	}
	return nil
}

var errExited = errors.New("exited")

// HTTPProbe returns a probe that GETs url and wants 200. If header is
// given as name and value, the response must carry it too (an instance ID,
// say).
func HTTPProbe(client *http.Client, url string, header ...string) func(context.Context) error {
	if client == nil {
		client = &http.Client{Timeout: time.Second}
	}
	return func(ctx context.Context) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return backoff.Permanent(err)
		}
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16))
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("GET %s: %s", url, resp.Status)
		}
		if len(header) == 2 && resp.Header.Get(header[0]) != header[1] {
			return backoff.Permanent(fmt.Errorf("GET %s: %s is %q, want %q: %w", url, header[0], resp.Header.Get(header[0]), header[1], ErrPortTaken))
		}
		return nil
	}
}

// RedisPID asks the Redis server that opts names for its process ID (PING,
// then INFO server), through go-redis. A server still loading its data
// answers LOADING, which is an error here: it is not ready.
func RedisPID(ctx context.Context, opts *goredis.Options) (int, error) {
	o := *opts
	o.DisableIdentity = true
	o.MaxRetries = -1
	o.DialTimeout, o.ReadTimeout, o.WriteTimeout = time.Second, time.Second, time.Second
	c := goredis.NewClient(&o)
	defer c.Close()
	if err := c.Ping(ctx).Err(); err != nil {
		return 0, err
	}
	info, err := c.Info(ctx, "server").Result()
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "process_id:"); ok {
			return strconv.Atoi(v)
		}
	}
	return 0, errors.New("INFO server has no process_id")
}

// RedisProbe returns a probe that succeeds when the Redis server at opts
// answers and is process p (its process_id), failing with ErrPortTaken
// when another server answers.
func RedisProbe(p *Proc, opts *goredis.Options) func(context.Context) error {
	return func(ctx context.Context) error {
		pid, err := RedisPID(ctx, opts)
		if err != nil {
			return err
		}
		if pid != p.Pid() {
			return backoff.Permanent(fmt.Errorf("%s is answered by pid %d, not ours (%d): %w", opts.Addr, pid, p.Pid(), ErrPortTaken))
		}
		return nil
	}
}

// Launch starts a process on ports it really got. For up to tries rounds it
// takes n fresh ports (Port), builds the process with build, starts it and
// waits until it is Ready under the probe that probe returns; when a port
// turns out to be taken (ErrPortTaken) it stops that process and goes
// again on new ports. Any other failure ends it. It returns the running
// process and its ports.
func Launch(ctx context.Context, n, tries int, build func(ports []int) (*Proc, []string), probe func(p *Proc, ports []int) func(context.Context) error) (*Proc, []int, error) {
	var err error
	for range max(tries, 1) {
		ps := make([]int, n)
		for i := range ps {
			ps[i] = Port()
		}
		p, extraLogs := build(ps)
		if err = p.Start(); err != nil {
			return nil, nil, err
		}
		if err = Ready(ctx, p, ps, probe(p, ps), extraLogs...); err == nil {
			return p, ps, nil
		}
		p.Kill()
		if !errors.Is(err, ErrPortTaken) {
			return nil, nil, err
		}
	}
	return nil, nil, fmt.Errorf("gave up after %d tries: %w", tries, err)
}
