package topo

import (
	"context"
	"errors"
	"fmt"
	"strings"
)

// MigrateStatelessReplica moves a stateless replica with --store-handoff
// (Spec.Store stateless, Spec.Handoff) to the shared store, as the second
// rolling deploy of README "From stateless to shared state" does: SIGTERM,
// then the same replica again with --store redis --store-url <the handoff
// URL> --accept-stateless, and waits until the proxy lets it back in.
func (t *Topology) MigrateStatelessReplica(ctx context.Context, id string) error {
	if t.HandoffURL == "" || t.Spec.Store != "stateless" {
		return errors.New("this topology has no stateless replicas with a store to migrate to (Spec.Handoff)")
	}
	return t.restartWith(ctx, id, func(args []string) ([]string, error) { return acceptStatelessArgs(args, t.HandoffURL) })
}

// acceptStatelessArgs turns a stateless replica's arguments with
// --store-handoff URL into those of a replica on --store redis
// --store-url URL --accept-stateless.
func acceptStatelessArgs(args []string, shared string) ([]string, error) {
	var out []string
	seen := 0
	for i := 0; i < len(args); i++ {
		switch a := args[i]; {
		case a == "--store-handoff" && i+1 < len(args) && args[i+1] == shared:
			i++
			seen++
		case a == "--store" && i+1 < len(args) && args[i+1] == "stateless":
			out = append(out, "--store", "redis", "--store-url", shared, "--accept-stateless")
			i++
			seen++
		default:
			out = append(out, a)
		}
	}
	if seen != 2 {
		return nil, fmt.Errorf("not a stateless replica with --store-handoff %s: %q", shared, strings.Join(args, " "))
	}
	return out, nil
}
