package topo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
)

// MigrateReplica moves a memory replica with --store-handoff (Spec.Handoff)
// to the shared store, as an operator's rolling deploy does: SIGTERM (the
// replica hands its state to Redis before it stops accepting), then the
// same replica again with --store redis --store-url <the handoff URL>, and
// waits until the proxy lets it back in.
func (t *Topology) MigrateReplica(ctx context.Context, id string) error {
	if t.HandoffURL == "" {
		return errors.New("this topology has no store to migrate to (Spec.Handoff)")
	}
	return t.restartWith(ctx, id, func(args []string) ([]string, error) { return redisArgs(args, t.HandoffURL) })
}

// restartWith restarts replica id with its arguments rewritten by rewrite.
func (t *Topology) restartWith(ctx context.Context, id string, rewrite func([]string) ([]string, error)) error {
	r, err := t.Replica(id)
	if err != nil {
		return err
	}
	args, err := rewrite(r.Proc.Args)
	if err != nil {
		return fmt.Errorf("%s: %w", id, err)
	}
	r.Proc.Args = args
	return t.RestartReplica(ctx, id)
}

// redisArgs turns a memory replica's arguments with --store-handoff URL
// into those of a replica on --store redis --store-url URL.
func redisArgs(args []string, shared string) ([]string, error) {
	var out []string
	seen := 0
	for i := 0; i < len(args); i++ {
		switch a := args[i]; {
		case a == "--store-handoff" && i+1 < len(args):
			i++
			seen++
		case a == "--store" && i+1 < len(args) && args[i+1] == "memory":
			out = append(out, "--store", "redis")
			i++
			seen++
		case a == "--store-url" && i+1 < len(args):
			out = append(out, "--store-url", shared)
			i++
			seen++
		default:
			out = append(out, a)
		}
	}
	if seen != 3 {
		return nil, fmt.Errorf("not a memory replica with --store-url and --store-handoff: %q", strings.Join(args, " "))
	}
	return out, nil
}

// MigrateReplicaBack moves a replica on --store redis back to memory, with
// --store-handoff to the same Redis, as an operator's rolling deploy does:
// SIGTERM, then the same replica again on memory, reading through to
// Redis, and waits until the proxy lets it back in.
func (t *Topology) MigrateReplicaBack(ctx context.Context, id string) error {
	if t.Spec.Store != "redis" {
		return errors.New("this topology's replicas are not on redis")
	}
	return t.restartWith(ctx, id, func(args []string) ([]string, error) { return memoryArgs(args, t.StoreURL) })
}

// memoryArgs turns a replica's arguments on --store redis --store-url URL
// into those of a memory replica with --store-handoff URL.
func memoryArgs(args []string, shared string) ([]string, error) {
	var out []string
	seen := 0
	for i := 0; i < len(args); i++ {
		switch a := args[i]; {
		case a == "--store" && i+1 < len(args) && args[i+1] == "redis":
			out = append(out, "--store", "memory")
			i++
			seen++
		case a == "--store-url" && i+1 < len(args) && args[i+1] == shared:
			out = append(out, "--store-url", "memory://", "--store-handoff", shared)
			i++
			seen++
		default:
			out = append(out, a)
		}
	}
	if seen != 2 {
		return nil, fmt.Errorf("not a replica on --store redis --store-url %s: %q", shared, strings.Join(args, " "))
	}
	return out, nil
}

// SetStickiness turns the proxy's stickiness off (or on again) at run
// time through its admin API, as an ALB target group's stickiness.enabled
// does: the last step of a move to shared state.
func (t *Topology) SetStickiness(ctx context.Context, on bool) error {
	path := "/stickiness/off"
	if on {
		path = "/stickiness/on"
	}
	resp, err := t.admin(ctx, "POST", path)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
		return fmt.Errorf("stickiness %s: %s: %s", path, resp.Status, strings.TrimSpace(string(b)))
	}
	return nil
}
