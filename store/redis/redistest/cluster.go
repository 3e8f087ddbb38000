package redistest

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/samlha/samlha/store/localproc"
	"github.com/samlha/samlha/store/redis"
)

// clusterTimeout bounds the wait for a new cluster to agree that it is
// whole.
const clusterTimeout = 30 * time.Second

// Cluster is a Redis Cluster of masters, each a private redis-server, and
// (StartClusterWithReplicas) their replicas.
type Cluster struct {
	Nodes    []*Server // the masters, each with an even share of the slots
	Replicas []*Server // Replicas[i] replicates Nodes[i % len(Nodes)]
	ca       *localproc.CA
}

// StartCluster builds a Redis Cluster of masters (at least 1) from private
// redis-server processes on free loopback ports (each started with opts
// too, such as an ACL user): it starts each with
// cluster mode on, gives each an even share of the 16384 hash slots
// (CLUSTER ADDSLOTSRANGE), introduces them to each other (CLUSTER MEET), and
// waits until every node reports cluster_state:ok and knows every other.
// The nodes stop when the test ends. Without redis-server on PATH it skips
// the test (fails it under CI=true): REDIS_URL cannot stand in for a cluster.
func StartCluster(tb testing.TB, masters int, opts ...Option) *Cluster {
	tb.Helper()
	return StartClusterWithReplicas(tb, masters, 0, opts...)
}

// clusterNodeTimeout is the nodes' cluster-node-timeout: how long a master
// may fail to answer before the others take it for failed and one of its
// replicas is promoted (Redis's default is 15 s).
const clusterNodeTimeout = 3 * time.Second

// StartClusterWithReplicas is StartCluster with replicas more nodes, each
// made a replica (CLUSTER REPLICATE) of a master in turn; it waits also
// until each replicates. When a master fails, the cluster promotes one of
// its replicas within a few seconds (cluster-node-timeout 3 s, then the
// election).
func StartClusterWithReplicas(tb testing.TB, masters, replicas int, opts ...Option) *Cluster {
	tb.Helper()
	if masters < 1 || replicas < 0 {
		tb.Fatalf("redistest: StartClusterWithReplicas(%d, %d): want at least one master", masters, replicas)
	}
	if _, err := exec.LookPath("redis-server"); err != nil {
		unavailable(tb, "a Redis Cluster needs redis-server on PATH")
	}
	c := &Cluster{}
	// With TLS every node has a certificate from one CA, and the cluster
	// bus and replication run over TLS too.
	var probe config
	for _, o := range opts {
		o(&probe)
	}
	if probe.tls {
		ca, err := localproc.NewCA(tb.TempDir(), "127.0.0.1", "localhost")
		if err != nil {
			tb.Fatalf("redistest: TLS files: %v", err)
		}
		opts = append(opts, func(c *config) { c.ca = ca },
			WithArgs("--tls-cluster", "yes", "--tls-replication", "yes"))
		c.ca = ca
	}
	node := func() *Server {
		return Start(tb, append([]Option{WithArgs(
			"--cluster-enabled", "yes",
			"--cluster-config-file", "nodes.conf",
			"--cluster-node-timeout", strconv.FormatInt(clusterNodeTimeout.Milliseconds(), 10),
			"--cluster-announce-ip", "127.0.0.1",
		)}, opts...)...)
	}
	for range masters {
		c.Nodes = append(c.Nodes, node())
	}
	for range replicas {
		c.Replicas = append(c.Replicas, node())
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
	all := append(append([]*Server{}, c.Nodes...), c.Replicas...)
	for _, n := range all[1:] {
		if err := seed.ClusterMeet(ctx, "127.0.0.1", strconv.Itoa(n.port)).Err(); err != nil {
			tb.Fatalf("redistest: CLUSTER MEET %s from %s: %v", n.Addr(), c.Nodes[0].Addr(), err)
		}
	}
	for _, n := range all {
		if err := waitClusterOK(ctx, n, masters, len(all)); err != nil {
			tb.Fatalf("redistest: cluster node %s: %v\n%s", n.Addr(), err, tail(n.logPath()))
		}
	}
	for i, r := range c.Replicas {
		m := c.Nodes[i%masters]
		id, err := m.Client().ClusterMyID(ctx).Result()
		if err == nil {
			// The replica must know the master as a master first: gossip
			// may still be on its way (CLUSTER REPLICATE then fails with
			// "Unknown node"), so it is polled.
			err = localproc.Poll(ctx, func(ctx context.Context) error {
				return r.Client().ClusterReplicate(ctx, id).Err()
			})
		}
		if err != nil {
			tb.Fatalf("redistest: CLUSTER REPLICATE %s on %s: %v", m.Addr(), r.Addr(), err)
		}
		r.WaitReplicating(tb)
	}
	return c
}

// MasterOf returns the address of the node that serves key's slot now, as
// node asks the cluster (CLUSTER SHARDS is not in Redis 7.0's every build;
// CLUSTER KEYSLOT and CLUSTER SLOTS are).
func (c *Cluster) MasterOf(ctx context.Context, node *Server, key string) (string, error) {
	cl := node.Client()
	slot, err := cl.ClusterKeySlot(ctx, key).Result()
	if err != nil {
		return "", err
	}
	ranges, err := cl.ClusterSlots(ctx).Result()
	if err != nil {
		return "", err
	}
	for _, r := range ranges {
		if int64(r.Start) <= slot && slot <= int64(r.End) && len(r.Nodes) > 0 {
			return r.Nodes[0].Addr, nil
		}
	}
	return "", fmt.Errorf("no node serves slot %d", slot)
}

// waitClusterOK polls CLUSTER INFO on n until it reports the cluster ok with
// all masters serving and all nodes known, or ctx ends.
func waitClusterOK(ctx context.Context, n *Server, masters, nodes int) error {
	client := n.Client()
	want := []string{"cluster_state:ok", "cluster_known_nodes:" + strconv.Itoa(nodes), "cluster_size:" + strconv.Itoa(masters)}
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
	for _, w := range want {
		k, v, _ := strings.Cut(w, ":")
		if redis.InfoField(info, k) != v {
			return false
		}
	}
	return true
}

// Addrs returns the masters' host:port addresses.
func (c *Cluster) Addrs() []string {
	addrs := make([]string, len(c.Nodes))
	for i, n := range c.Nodes {
		addrs[i] = n.Addr()
	}
	return addrs
}

// URL returns a redis-cluster:// URL that lists every master, with
// tls=true and the CA's file for a cluster started WithTLS.
func (c *Cluster) URL() string {
	u := "redis-cluster://" + strings.Join(c.Addrs(), ",")
	if c.ca != nil {
		u += "?" + url.Values{"tls": {"true"}, "tls_ca_file": {c.ca.CAFile}}.Encode()
	}
	return u
}
