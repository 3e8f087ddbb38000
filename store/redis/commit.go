package redis

import (
	"context"
	"errors"
	"fmt"
	"strings"

	goredis "github.com/redis/go-redis/v9"

	"github.com/samlha/samlha/store"
)

var (
	_ store.Committer   = (*Store)(nil)
	_ store.MultiGetter = (*Store)(nil)
)

// commitScript is Commit's step on the server: the guard, the swap and
// the Then writes whose keys it is given, atomically (a script runs alone).
//
//	KEYS[1]      the key to swap; KEYS[2..] the Then writes' keys, then
//	             the record's key if ARGV[4] is not 0 (see once.go)
//	ARGV[1..4]   the new value, its TTL in ms, the guard's prefix, the
//	             record's TTL in ms (0: no record)
//	ARGV[5..]    per Then write: value, TTL in ms, "nx" or ""
//
// Reply: {0} no live value; {1, live} guard failed; {2, old, r...} swapped,
// with r 1 for a write made and 0 for an NX write refused. Nothing is
// written before the guard passes, so a refusal (READONLY, OOM) of the
// first write leaves everything as it was. With a record, a swap writes
// "r...:old" under it, and a call that finds it (its own earlier attempt
// ran) returns that swap's reply without running again.
var commitScript = newScript(`
local rec = tonumber(ARGV[4])
local n = #KEYS - 1
local recKey
if rec > 0 then
  recKey = KEYS[#KEYS]
  n = n - 1
  local done = redis.call('GET', recKey)
  if done then
    local sep = string.find(done, ':', 1, true)
    local res = {2, string.sub(done, sep + 1)}
    for i = 1, sep - 1 do res[i + 2] = tonumber(string.sub(done, i, i)) end
    return res
  end
end
local old = redis.call('GET', KEYS[1])
if old == false then return {0} end
local p = ARGV[3]
if string.sub(old, 1, #p) ~= p then return {1, old} end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
local res = {2, old}
local made = ''
for i = 1, n do
  local a = 5 + (i - 1) * 3
  local r
  if ARGV[a + 2] == 'nx' then
    r = redis.call('SET', KEYS[i + 1], ARGV[a], 'PX', ARGV[a + 1], 'NX')
  else
    r = redis.call('SET', KEYS[i + 1], ARGV[a], 'PX', ARGV[a + 1])
  end
  res[i + 2] = r and 1 or 0
  made = made .. (r and '1' or '0')
end
if recKey then redis.call('SET', recKey, made .. ':' .. old, 'PX', rec) end
return res
`)

// Commit implements store.Committer with commitScript: one round trip
// (EVALSHA; the first call after a server starts is answered NOSCRIPT and
// sent again as EVAL). On a Cluster the script takes the Then writes whose
// keys hash to the swapped key's slot; the others follow in one pipeline
// (split by node, sent to each at once) if the swap happened: two round
// trips, and a failure of the second is reported per write.
func (s *Store) Commit(ctx context.Context, c store.Commit) ([]byte, []error, error) {
	const op = "commit"
	if err := checkCommit(c); err != nil {
		return nil, nil, err
	}
	cctx, cancel, err := s.call(ctx, op)
	if err != nil {
		return nil, nil, err
	}
	defer cancel()
	inScript, after := s.splitBySlot(c)
	keys := make([]string, 0, 2+len(inScript))
	args := make([]any, 0, 4+3*len(inScript))
	keys = append(keys, s.prefix+c.Key)
	var rec int64
	if s.recording() {
		rec = s.recordTTL()
	}
	args = append(args, c.Value, ttlArg(c.TTL), c.IfPrefix, rec)
	for _, i := range inScript {
		w := c.Then[i]
		nx := ""
		if w.IfAbsent {
			nx = "nx"
		}
		keys = append(keys, s.prefix+w.Key)
		args = append(args, w.Value, ttlArg(w.TTL), nx)
	}
	if rec > 0 {
		keys = append(keys, s.recordKey())
	}
	reply, err := s.runOnce(cctx, commitScript, keys, args, rec > 0)
	if err != nil {
		return nil, nil, s.fail(ctx, cctx, op, err)
	}
	r, ok := reply.([]any)
	if !ok || len(r) == 0 {
		return nil, nil, s.fail(ctx, cctx, op, fmt.Errorf("unexpected reply %T to the commit script", reply))
	}
	switch code, _ := r[0].(int64); {
	case code == 0:
		return nil, nil, store.ErrNotFound
	case code == 1 && len(r) == 2:
		live, _ := r[1].(string)
		return []byte(live), nil, fmt.Errorf("%w: the live value does not begin with the guard's prefix", store.ErrConflict)
	case code != 2 || len(r) != 2+len(inScript):
		return nil, nil, s.fail(ctx, cctx, op, fmt.Errorf("unexpected reply %v to the commit script", r))
	}
	old, _ := r[1].(string)
	errs := make([]error, len(c.Then))
	for j, i := range inScript {
		if made, _ := r[2+j].(int64); made == 0 {
			errs[i] = store.ErrExists
		}
	}
	s.pipeWrites(ctx, cctx, op, c.Then, after, errs)
	return []byte(old), errs, nil
}

func checkCommit(c store.Commit) error {
	if err := c.Check(); err != nil {
		return err
	}
	if err := store.CheckValue(c.Value, MaxValueLen); err != nil {
		return err
	}
	for i, w := range c.Then {
		if err := store.CheckValue(w.Value, MaxValueLen); err != nil {
			return fmt.Errorf("then[%d]: %w", i, err)
		}
	}
	return nil
}

// splitBySlot returns the indexes of c's Then writes that the script can
// make (all of them, except on a Cluster: those whose key hashes to the
// swapped key's slot) and of those that must follow it.
func (s *Store) splitBySlot(c store.Commit) (inScript, after []int) {
	_, cluster := s.cli().(*goredis.ClusterClient)
	slot := keySlot(s.prefix + c.Key)
	for i, w := range c.Then {
		if !cluster || keySlot(s.prefix+w.Key) == slot {
			inScript = append(inScript, i)
		} else {
			after = append(after, i)
		}
	}
	return inScript, after
}

// runOnce runs script by its SHA, and by its source if the server answers
// NOSCRIPT (it has not seen it since it started): a NOSCRIPT reply means
// the script did not run, so sending it again is its first run. Neither
// command is ever resent by go-redis (see once); the store resends them
// after a lost reply only if recorded (the script records its result).
func (s *Store) runOnce(ctx context.Context, sc script, keys []string, args []any, recorded bool) (any, error) {
	run := func(name, body string) (any, error) {
		cmdArgs := make([]any, 0, 3+len(keys)+len(args))
		cmdArgs = append(cmdArgs, name, body, len(keys))
		for _, k := range keys {
			cmdArgs = append(cmdArgs, k)
		}
		cmdArgs = append(cmdArgs, args...)
		cmd := goredis.NewCmd(ctx, cmdArgs...)
		err := s.process(ctx, once{Cmder: cmd, recorded: recorded})
		return cmd.Val(), err
	}
	reply, err := run("evalsha", sc.sha)
	if err != nil && goredis.HasErrorPrefix(err, "NOSCRIPT") {
		reply, err = run("eval", sc.src)
	}
	return reply, err
}

// GetMany implements store.MultiGetter: one MGET, or on a Cluster a
// pipeline of GETs that the client splits by node and sends to each at
// once.
func (s *Store) GetMany(ctx context.Context, keys []string) ([][]byte, error) {
	const op = "get-many"
	for _, k := range keys {
		if err := store.CheckKey(k); err != nil {
			return nil, err
		}
	}
	if len(keys) == 0 {
		if s.closed.Load() {
			return nil, fmt.Errorf("redis %s: %w", op, store.ErrClosed)
		}
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("redis %s: %w", op, err)
		}
		return [][]byte{}, nil
	}
	cctx, cancel, err := s.call(ctx, op)
	if err != nil {
		return nil, err
	}
	defer cancel()
	vals := make([][]byte, len(keys))
	if _, cluster := s.cli().(*goredis.ClusterClient); cluster {
		cmds := make([]*goredis.StringCmd, len(keys))
		sent := make([]goredis.Cmder, len(keys))
		for i, k := range keys {
			cmds[i] = goredis.NewStringCmd(cctx, "get", s.prefix+k)
			sent[i] = cmds[i]
		}
		s.pipeline(cctx, sent)
		for i, cmd := range cmds {
			switch err := cmd.Err(); {
			case err == nil:
				vals[i] = []byte(cmd.Val())
			case !errors.Is(err, goredis.Nil):
				return nil, s.fail(ctx, cctx, op, err)
			}
		}
		return vals, nil
	}
	args := make([]any, 0, 1+len(keys))
	args = append(args, "mget")
	for _, k := range keys {
		args = append(args, s.prefix+k)
	}
	cmd := goredis.NewSliceCmd(cctx, args...)
	if err := s.process(cctx, cmd); err != nil {
		return nil, s.fail(ctx, cctx, op, err)
	}
	if len(cmd.Val()) != len(keys) {
		return nil, s.fail(ctx, cctx, op, fmt.Errorf("MGET of %d keys returned %d values", len(keys), len(cmd.Val())))
	}
	for i, v := range cmd.Val() {
		if str, ok := v.(string); ok {
			vals[i] = []byte(str)
		}
	}
	return vals, nil
}

// keySlot is the Redis Cluster hash slot of key: CRC16 (XMODEM) of its
// hash tag (the part between the first "{" and the next "}", if not
// empty) or of the whole key, modulo 16384.
func keySlot(key string) int {
	if i := strings.IndexByte(key, '{'); i >= 0 {
		if j := strings.IndexByte(key[i+1:], '}'); j > 0 {
			key = key[i+1 : i+1+j]
		}
	}
	var crc uint16
	for k := 0; k < len(key); k++ {
		crc ^= uint16(key[k]) << 8
		for range 8 {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
	}
	return int(crc) % 16384
}

// script is a Lua script and its SHA-1, for EVALSHA.
type script struct{ src, sha string }

func newScript(src string) script { return script{src: src, sha: goredis.NewScript(src).Hash()} }
