package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	elasticsearch "github.com/elastic/go-elasticsearch/v8"
	"github.com/skiffhq/skiff/addons/logging/shipper"
	"github.com/skiffhq/skiff/internal/nodetest"
	"github.com/skiffhq/skiff/internal/testimages"
	"github.com/skiffhq/skiff/internal/testserver"
	"github.com/skiffhq/skiff/nodeagent/agent"
	"github.com/skiffhq/skiff/nodeagent/crilog"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
)

// This package's own pod range and bridge, inside the blackholed
// 10.42.0.0/16.
const (
	podCIDR = "10.42.241.0/24"
	bridge  = "skifflg0"
)

// TestRealContainerEveryLineOnce: a busybox pod on a real agent writes
// 100,000 numbered lines while its log rotates every 256 KiB; the agent is
// stopped mid-stream as a kill -9 would (no flush, no last checkpoint) and
// started again. Every line is in the embedded store exactly once.
func TestRealContainerEveryLineOnce(t *testing.T) {
	nodetest.Require(t)
	state := nodetest.StateDir(t, nodetest.Busybox)
	s := testserver.Start(t)
	nodeName := fmt.Sprintf("logs-node-%d", time.Now().UnixNano()%1e6)
	opts := nodetest.AgentOptions(nodeName, state, podCIDR, bridge)
	// Rotation keeps 8 files of 256 KiB (it rotates about 20 times over the
	// ~5.1 MB the writer below prints) and holds up to 32 files (8 MiB) the
	// shipper has not finished. That bound exceeds the whole output, so the
	// drop a too-slow shipper gets by design (counted, and tested in
	// nodeagent/crilog) cannot happen here however loaded the machine is,
	// and any line missing is a bug. With 4 files (a 4 MiB bound) a -race
	// shipper and store on a loaded 2-core machine fell more than 4 MiB
	// behind the paced writer and dropped lines as designed.
	opts.ContainerLogMaxSize, opts.ContainerLogMaxFiles = 256<<10, 8
	opts.Logs.Tune = func(c *shipper.Config) {
		c.PollInterval, c.FlushInterval, c.CheckpointInterval, c.NoFinalFlush = 50*time.Millisecond, 200*time.Millisecond, 500*time.Millisecond, true
	}
	start := func() *agent.Agent {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		a, err := s.StartAgent(ctx, opts)
		if err != nil {
			t.Fatalf("start agent: %v", err)
		}
		return a
	}
	a := start()
	t.Cleanup(func() { cleanupAgent(t, s, a, opts) })

	ctx := context.Background()
	ns := "default"
	_, _ = s.Client.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default"}}, metav1.CreateOptions{})
	const n = 100000
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "writer", Namespace: ns, Labels: map[string]string{"app": "writer"}}, Spec: corev1.PodSpec{
		NodeName: nodeName, TerminationGracePeriodSeconds: ptr.To[int64](0), RestartPolicy: corev1.RestartPolicyNever,
		Containers: []corev1.Container{{Name: "w", Image: testimages.Busybox, Command: []string{"sh", "-c",
			fmt.Sprintf(`i=0; while [ $i -lt %d ]; do echo "line $i"; i=$((i+1)); if [ $((i %% 1000)) -eq 0 ]; then sleep 0.2; fi; done; sleep 3600`, n)}}},
	}}
	for deadline := time.Now().Add(30 * time.Second); ; {
		_, err := s.Client.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{})
		if err == nil {
			break
		}
		if !apierrors.IsForbidden(err) || time.Now().After(deadline) {
			t.Fatal(err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	rt, err := rest.TransportFor(s.Config)
	if err != nil {
		t.Fatal(err)
	}
	es, err := elasticsearch.NewClient(elasticsearch.Config{Addresses: []string{strings.TrimSuffix(s.Config.Host, "/") + "/logs"}, Transport: rt})
	if err != nil {
		t.Fatal(err)
	}
	index := shipper.IndexPrefix + ns
	waitCount := func(want int, d time.Duration) int {
		deadline := time.Now().Add(d)
		got := 0
		for time.Now().Before(deadline) {
			if got = count(t, es, index); got >= want {
				return got
			}
			time.Sleep(250 * time.Millisecond)
		}
		// What reached the log files, to tell the runtime's losses from
		// the shipper's.
		t.Logf("shipper: %+v", a.LogShipper().Stats())
		_ = filepath.Walk(opts.PodLogDir, func(p string, fi os.FileInfo, err error) error {
			if err != nil || fi.IsDir() {
				return nil
			}
			b, _ := os.ReadFile(p)
			ls := strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
			t.Logf("%s: %d bytes, %d records, first %q, last %q", p, fi.Size(), len(ls), ls[0], ls[len(ls)-1])
			return nil
		})
		t.Fatalf("store holds %d lines, want %d", got, want)
		return got
	}
	waitCount(10000, 120*time.Second)
	a.Stop() // the shipper stops as if killed: no flush, no last checkpoint
	a = start()
	waitCount(n, 180*time.Second)
	time.Sleep(2 * time.Second) // duplicates, if any, would arrive now

	// Every line exactly once: page through all messages.
	seen := make([]int, n)
	var after []any
	total := 0
	for {
		q := map[string]any{"size": 10000, "sort": []any{map[string]any{"@timestamp": "asc"}, map[string]any{"_doc": "asc"}}, "_source": true}
		if after != nil {
			q["search_after"] = after
		}
		body, _ := json.Marshal(q)
		res, err := es.Search(es.Search.WithIndex(index), es.Search.WithBody(strings.NewReader(string(body))))
		if err != nil {
			t.Fatal(err)
		}
		var out struct {
			Hits struct {
				Hits []struct {
					Source struct {
						Message string `json:"message"`
					} `json:"_source"`
					Sort []any `json:"sort"`
				} `json:"hits"`
			} `json:"hits"`
		}
		err = json.NewDecoder(res.Body).Decode(&out)
		res.Body.Close()
		if err != nil || res.IsError() {
			t.Fatalf("search: %v %s", err, res.Status())
		}
		for _, h := range out.Hits.Hits {
			var i int
			if _, err := fmt.Sscanf(h.Source.Message, "line %d", &i); err != nil || i < 0 || i >= n {
				t.Fatalf("unexpected message %q", h.Source.Message)
			}
			seen[i]++
			total++
		}
		if len(out.Hits.Hits) == 0 {
			break
		}
		after = out.Hits.Hits[len(out.Hits.Hits)-1].Sort
	}
	for i, c := range seen {
		if c != 1 {
			t.Fatalf("line %d stored %d times (%d documents)", i, c, total)
		}
	}
	logDir := filepath.Join(opts.PodLogDir)
	rotated := 0
	_ = filepath.Walk(logDir, func(p string, fi os.FileInfo, err error) error {
		if err == nil && crilog.IsRotatedName(filepath.Base(p)) {
			rotated++
		}
		return nil
	})
	if rotated == 0 {
		t.Fatal("no rotated log file: rotation did not happen during the writes")
	}
	if st := a.LogShipper().Stats(); st.Dropped != 0 {
		t.Fatalf("shipper dropped lines: %+v", st)
	}
}

func cleanupAgent(t *testing.T, s *testserver.Server, a *agent.Agent, opts agent.Options) {
	ctx := context.Background()
	pods, _ := s.Client.CoreV1().Pods("").List(ctx, metav1.ListOptions{})
	for _, p := range pods.Items {
		_ = s.Client.CoreV1().Pods(p.Namespace).Delete(ctx, p.Name, metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0)})
	}
	nodetest.Sweep(t, a, opts)
}
