package redistest

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/samlha/samlha/store/localproc"
)

// clusterTimeout bounds the wait for a new cluster to agree that it is
// whole.
const clusterTimeout = 30 * time.Second

// Cluster is a Redis Cluster of masters without replicas, each a private
// redis-server.
type Cluster struct {
	Nodes []*Server
}

// StartCluster builds a Redis Cluster of masters (at least 1) from private
// redis-server processes on free loopback ports: it starts each with
// cluster mode on, gives each an even share of the 16384 hash slots
// (CLUSTER ADDSLOTSRANGE), introduces them to each other (CLUSTER MEET), and
// waits until every node reports cluster_state:ok and knows every other.
// The nodes stop when the test ends. Without redis-server on PATH it skips
// the test (fails it under CI=true): REDIS_URL cannot stand in for a cluster.
func StartCluster(tb testing.TB, masters int) *Cluster {
	tb.Helper()
	if masters < 1 {
		tb.Fatalf("redistest: StartCluster(%d): want at least one master", masters)
	}
	if _, err := exec.LookPath("redis-server"); err != nil {
		unavailable(tb, "a Redis Cluster needs redis-server on PATH")
	}
	c := &Cluster{}
	for range masters {
		c.Nodes = append(c.Nodes, Start(tb, WithArgs(
			"--cluster-enabled", "yes",
			"--cluster-config-file", "nodes.conf",
			"--cluster-node-timeout", "3000",
			"--cluster-announce-ip", "127.0.0.1",
		)))
	}
	ctx, cancel := context.WithTimeout(context.Background(), clusterTimeout)
	defer cancel()
	const slots = 16384
	for i, n := range c.Nodes {
		first, last := i*slots/masters, (i+1)*slots/masters-1
		if err := n.Client().ClusterAddSlotsRange(ctx, first, last).Err(); err != nil {
			tb.Fatalf("redistest: CLUSTER ADDSLOTSRANGE %d %d on %s: %v", first, last, n.Addr(), err)
		}
	}
	seed := c.Nodes[0].Client()
	for _, n := range c.Nodes[1:] {
		if err := seed.ClusterMeet(ctx, "127.0.0.1", strconv.Itoa(n.port)).Err(); err != nil {
			tb.Fatalf("redistest: CLUSTER MEET %s from %s: %v", n.Addr(), c.Nodes[0].Addr(), err)
		}
	}
	for _, n := range c.Nodes {
		if err := waitClusterOK(ctx, n, masters); err != nil {
			tb.Fatalf("redistest: cluster node %s: %v\n%s", n.Addr(), err, tail(n.logPath()))
		}
	}
	return c
}

// waitClusterOK polls CLUSTER INFO on n until it reports the cluster ok with
// all masters known, or ctx ends.
func waitClusterOK(ctx context.Context, n *Server, masters int) error {
	client := n.Client()
	want := []string{"cluster_state:ok", "cluster_known_nodes:" + strconv.Itoa(masters), "cluster_size:" + strconv.Itoa(masters)}
	var last string
	err := localproc.Poll(ctx, func(ctx context.Context) error {
		info, err := client.ClusterInfo(ctx).Result()
		if err != nil {
			return err
		}
		last = info
		if !hasAll(info, want) {
			return errors.New("not yet")
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("not %s within %v; last CLUSTER INFO:\n%s", strings.Join(want, ", "), clusterTimeout, last)
	}
	return nil
}

func hasAll(info string, want []string) bool {
	lines := map[string]bool{}
	for l := range strings.Lines(info) {
		lines[strings.TrimSpace(l)] = true
	}
	for _, w := range want {
		if !lines[w] {
			return false
		}
	}
	return true
}

// Addrs returns the nodes' host:port addresses.
func (c *Cluster) Addrs() []string {
	addrs := make([]string, len(c.Nodes))
	for i, n := range c.Nodes {
		addrs[i] = n.Addr()
	}
	return addrs
}

// URL returns a redis-cluster:// URL that lists every node.
func (c *Cluster) URL() string {
	return "redis-cluster://" + strings.Join(c.Addrs(), ",")
}
