package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/skiffhq/skiff/internal/chaos"
	"github.com/skiffhq/skiff/internal/multinode"
	"github.com/skiffhq/skiff/internal/testserver"
	"k8s.io/client-go/kubernetes"
)

// TestHAServerKilled runs three `skiff server` processes as one HA
// cluster (at 127.0.0.1, .2 and .3 on one port, as three machines would
// be) and a hollow-node agent that was told about the first server only.
// The first server is killed with SIGKILL: the other two keep serving
// writes and reads, the agent moves to a live server (its nodes stay
// Ready, their Leases renewed), the `kubernetes` Endpoints drop the dead
// server when its identity Lease expires, and the server restarted on its
// data dir rejoins and serves again. Last, `skiff etcd member list` names
// the three members and `remove` takes out a stopped one; the two left
// keep serving writes.
func TestHAServerKilled(t *testing.T) {
	ips := []string{"127.0.0.1", "127.0.0.2", "127.0.0.3"}
	port := testserver.SharedPort(t, ips...)
	url := func(ip string) string { return fmt.Sprintf("https://%s:%d", ip, port) }
	args := func(dir, ip string, extra ...string) []string {
		return append([]string{"server", "--data-dir", dir, "--bind-address", ip, "--advertise-address", ip,
			"--https-listen-port", fmt.Sprint(port), "--etcd-client-port", "0", "--etcd-peer-port", "0",
			"--disable-agent", "--ingress-http-port", "0", "--ingress-https-port", "0", "--dashboard-port", "0",
			"--disable", "dns,etcd-snapshot"}, extra...)
	}
	dirs := []string{t.TempDir(), t.TempDir(), t.TempDir()}
	s1 := startServer(t, dirs[0], args(dirs[0], ips[0], "--cluster-init")...)
	tok, err := os.ReadFile(filepath.Join(dirs[0], "server", "token"))
	if err != nil {
		t.Fatal(err)
	}
	token := strings.TrimSpace(string(tok))
	s2 := startServer(t, dirs[1], args(dirs[1], ips[1], "--server", url(ips[0]), "--token", token)...)
	// Any server admits the next one.
	s3 := startServer(t, dirs[2], args(dirs[2], ips[2], "--server", url(ips[1]), "--token", token)...)

	endpoints := func(c *cluster) string {
		out, _ := c.run("get", "endpoints", "kubernetes", "-o", "jsonpath={.subsets[*].addresses[*].ip}")
		return strings.TrimSpace(out)
	}
	eventually(t, 30*time.Second, func() string {
		if got := endpoints(s3); got != strings.Join(ips, " ") {
			return "kubernetes endpoints: " + got
		}
		return ""
	})

	// Each server's log store holds what was shipped to it; every server
	// searches all three.
	servers := []*cluster{s1, s2, s3}
	for i, c := range servers {
		logsBulk(t, c, fmt.Sprintf("from-%d", i+1))
	}
	for i, c := range servers {
		eventually(t, 30*time.Second, func() string {
			if got := logsSearch(t, c); got != "3 of 3 servers: from-3 from-2 from-1" {
				return fmt.Sprintf("logs searched on server %d: %s", i+1, got)
			}
			return ""
		})
	}

	// The agent knows the first server only; it learns the others from
	// the endpoints.
	agentLog := startHollowNodes(t, s1, "2")
	eventually(t, 30*time.Second, func() string {
		if l := agentLog.String(); !strings.Contains(l, "API servers learned") || !strings.Contains(l, ips[2]) {
			return "the agent has not learned the other servers"
		}
		return ""
	})

	// Ledgers of acknowledged writes through servers 2 and 3 run across
	// the kill of server 1 and its etcd member (the first member, most
	// likely the leader: writes in flight meet an election).
	loads := []*chaos.APILoad{ledgerLoad(t, s2, "ledger-2"), ledgerLoad(t, s3, "ledger-3")}
	loadCtx, stopLoads := context.WithCancel(context.Background())
	var loadsDone sync.WaitGroup
	for _, l := range loads {
		loadsDone.Go(func() { l.Run(loadCtx) })
	}
	t.Cleanup(func() { stopLoads(); loadsDone.Wait() })
	time.Sleep(2 * time.Second)

	killed := time.Now()
	if err := s1.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = s1.cmd.Wait()

	// Writes and reads through the others (a write may fail while etcd
	// elects a new leader).
	eventually(t, 30*time.Second, func() string {
		if out, err := s2.run("create", "configmap", "after-kill", "--from-literal=k=v"); err != nil {
			return "write through server 2: " + out
		}
		return ""
	})
	if got := s3.k(t, "get", "configmap", "after-kill", "-o", "jsonpath={.data.k}"); got != "v" {
		t.Fatalf("read through server 3: %q", got)
	}
	time.Sleep(3 * time.Second) // the ledgers go on with two members
	stopLoads()
	loadsDone.Wait()

	// The agent moved: both nodes' Leases are renewed after the kill and
	// the nodes stay Ready.
	eventually(t, 60*time.Second, func() string {
		for _, n := range []string{"hollow-0", "hollow-1"} {
			out, err := s2.run("get", "lease", "-n", "kube-node-lease", n, "-o", "jsonpath={.spec.renewTime}")
			if err != nil {
				return out
			}
			at, err := time.Parse(time.RFC3339Nano, strings.TrimSpace(out))
			if err != nil || !at.After(killed.Add(time.Second)) {
				return fmt.Sprintf("lease %s renewed at %q", n, out)
			}
		}
		return ""
	})
	if out := s3.k(t, "get", "nodes", "--no-headers"); strings.Count(out, " Ready ") != 2 {
		t.Fatalf("nodes after the kill:\n%s", out)
	}
	if l := agentLog.String(); !strings.Contains(l, "API server failover") {
		t.Fatalf("the agent log does not show a failover:\n%s", tail(l, 3000))
	}

	// The killed server's identity Lease expires: the endpoints drop it.
	eventually(t, 60*time.Second, func() string {
		if got := endpoints(s2); got != strings.Join(ips[1:], " ") {
			return "kubernetes endpoints: " + got
		}
		return ""
	})

	// The killed server's logs are out of the searches, the rest is there.
	eventually(t, 30*time.Second, func() string {
		if got := logsSearch(t, s3); got != "2 of 2 servers: from-3 from-2" {
			return "logs searched on server 3 after the kill: " + got
		}
		return ""
	})

	// Restarted on its data dir, it rejoins as the member it was.
	s1 = startServer(t, dirs[0], args(dirs[0], ips[0], "--cluster-init")...)
	if got := s1.k(t, "get", "configmap", "after-kill", "-o", "jsonpath={.data.k}"); got != "v" {
		t.Fatalf("read through the restarted server: %q", got)
	}
	s1.k(t, "create", "configmap", "after-restart")
	// Every write the ledgers saw acknowledged is read back through the
	// rejoined member's server, with its last acknowledged value.
	for _, l := range loads {
		l.Client = clientFor(t, s1)
		vctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		err := l.Verify(vctx)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		acked, unknown, applied, violations := l.Ledger.Counts()
		t.Logf("ledger %s: %d writes acknowledged, %d unknown outcome (%d of them applied)", l.Namespace, acked, unknown, applied)
		if acked < 20 {
			t.Errorf("ledger %s: only %d writes acknowledged: the load did not run", l.Namespace, acked)
		}
		for _, v := range violations {
			t.Errorf("ledger %s: %s", l.Namespace, v)
		}
	}
	eventually(t, 30*time.Second, func() string {
		if out, err := s3.run("get", "configmap", "after-restart"); err != nil {
			return out
		}
		if got := endpoints(s3); got != strings.Join(ips, " ") {
			return "kubernetes endpoints: " + got
		}
		return ""
	})
	// Its log store comes back with what it held.
	eventually(t, 30*time.Second, func() string {
		if got := logsSearch(t, s2); got != "3 of 3 servers: from-3 from-2 from-1" {
			return "logs searched on server 2 after the restart: " + got
		}
		return ""
	})

	// `skiff etcd member`: list on any server; a server leaving for good
	// is removed from another, and the two left keep quorum.
	memberName := func(dir string) string {
		b, err := os.ReadFile(filepath.Join(dir, "server", "etcd-name"))
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(string(b))
	}
	members := func() string {
		out, err := exec.Command(skiffBin(t), "etcd", "member", "list", "--data-dir", dirs[1]).CombinedOutput()
		if err != nil {
			t.Fatalf("etcd member list: %v\n%s", err, out)
		}
		return string(out)
	}
	list := members()
	for _, d := range dirs {
		if n := memberName(d); !strings.Contains(list, n) {
			t.Fatalf("member list lacks %s:\n%s", n, list)
		}
	}
	if out, err := exec.Command(skiffBin(t), "etcd", "member", "remove", "no-such-member", "--data-dir", dirs[1]).CombinedOutput(); err == nil || !strings.Contains(string(out), `no etcd member named "no-such-member"`) {
		t.Fatalf("removing an unknown member: %v\n%s", err, out)
	}
	if err := s3.stop(); err != nil {
		t.Fatal(err)
	}
	gone := memberName(dirs[2])
	out, err := exec.Command(skiffBin(t), "etcd", "member", "remove", gone, "--data-dir", dirs[1]).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "removed etcd member "+gone) {
		t.Fatalf("etcd member remove: %v\n%s", err, out)
	}
	if list := members(); strings.Contains(list, gone) || strings.Count(strings.TrimSpace(list), "\n") != 2 {
		t.Fatalf("members after the removal:\n%s", list)
	}
	eventually(t, 30*time.Second, func() string {
		if out, err := s2.run("create", "configmap", "after-remove"); err != nil {
			return "write with two members: " + out
		}
		return ""
	})
	eventually(t, 30*time.Second, func() string {
		if out, err := s1.run("get", "configmap", "after-remove"); err != nil {
			return "read through server 1: " + out
		}
		return ""
	})
}

// ledgerLoad is chaos's API load (4 workers, 10 keys each) writing
// through c into its own new namespace ns.
func ledgerLoad(t *testing.T, c *cluster, ns string) *chaos.APILoad {
	t.Helper()
	c.k(t, "create", "namespace", ns)
	return &chaos.APILoad{Client: clientFor(t, c), Namespace: ns, Workers: 4, Keys: 10, Ledger: chaos.NewLedger(), Retry: 100 * time.Millisecond}
}

// logsBulk ships one log document with message msg to c's embedded log
// store, as an agent connected to that server would.
func logsBulk(t *testing.T, c *cluster, msg string) {
	t.Helper()
	// Later servers' documents are newer.
	ts := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(msg[len(msg)-1]) * time.Second)
	body := fmt.Sprintf(`{"create":{"_index":"logs-kubernetes-ha","_id":%q}}`+"\n"+`{"@timestamp":%q,"message":%q}`+"\n", msg, ts.Format(time.RFC3339), msg)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := clientFor(t, c).Discovery().RESTClient().Post().AbsPath("/logs/_bulk").Body([]byte(body)).DoRaw(ctx)
	if err != nil || bytes.Contains(out, []byte(`"errors":true`)) {
		t.Fatalf("bulk to %s: %v %s", c.dir, err, out)
	}
}

// logsSearch searches the logs through c's server, newest first, and
// says how many servers answered and the messages found.
func logsSearch(t *testing.T, c *cluster) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := clientFor(t, c).Discovery().RESTClient().Post().AbsPath("/logs/logs-kubernetes-ha/_search").
		Body([]byte(`{"sort":[{"@timestamp":"desc"}],"size":10}`)).DoRaw(ctx)
	if err != nil {
		return fmt.Sprintf("error %v %s", err, out)
	}
	var a struct {
		Shards struct{ Total, Successful int } `json:"_shards"`
		Hits   struct {
			Hits []struct {
				Source struct{ Message string } `json:"_source"`
			}
		}
	}
	if err := json.Unmarshal(out, &a); err != nil {
		return fmt.Sprintf("error %v %s", err, out)
	}
	var msgs []string
	for _, h := range a.Hits.Hits {
		msgs = append(msgs, h.Source.Message)
	}
	return fmt.Sprintf("%d of %d servers: %s", a.Shards.Successful, a.Shards.Total, strings.Join(msgs, " "))
}

// clientFor is a client of c's server with its admin kubeconfig.
func clientFor(t *testing.T, c *cluster) kubernetes.Interface {
	t.Helper()
	cs, err := multinode.ClientFor(c.kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	return cs
}

// syncBuffer is a log buffer the test reads while the process writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
