package manager_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/skiffhq/skiff/controlplane/controllers"
	"github.com/skiffhq/skiff/controlplane/controllers/manager"
	"github.com/skiffhq/skiff/internal/testserver"
	"github.com/skiffhq/skiff/server"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestSelection(t *testing.T) {
	specs := []manager.Spec{
		{Name: "replicaset-controller", Aliases: []string{"replicaset"}},
		{Name: "deployment-controller", Aliases: []string{"deployment"}},
		{Name: "bootstrap-signer-controller", Aliases: []string{"bootstrapsigner"}, DisabledByDefault: true},
	}
	cases := []struct {
		in      []string
		disable []string
		want    []string
		err     string
	}{
		{in: nil, want: []string{"replicaset-controller", "deployment-controller"}},
		{in: []string{"*"}, want: []string{"replicaset-controller", "deployment-controller"}},
		{in: []string{"*", "-replicaset"}, want: []string{"deployment-controller"}},
		{in: []string{"*", "bootstrapsigner"}, want: []string{"replicaset-controller", "deployment-controller", "bootstrap-signer-controller"}},
		{in: []string{"deployment"}, want: []string{"deployment-controller"}},
		{in: []string{"*", "-deployment-controller"}, want: []string{"replicaset-controller"}},
		{in: []string{"*"}, disable: []string{"replicaset", "traefik"}, want: []string{"deployment-controller"}},
		{in: []string{"*", "nope"}, err: `"nope" is not in the list of known controllers`},
		{in: []string{"-nope"}, err: `"nope" is not in the list of known controllers`},
	}
	for _, c := range cases {
		t.Run(strings.Join(c.in, ","), func(t *testing.T) {
			sel, err := manager.ParseSelection(c.in, specs)
			if c.err != "" {
				if err == nil || err.Error() != c.err {
					t.Fatalf("err = %v, want %q", err, c.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			sel.Disable(c.disable, specs)
			var got []string
			for _, s := range specs {
				if sel.Enabled(s) {
					got = append(got, s.Name)
				}
			}
			if !slices.Equal(got, c.want) {
				t.Fatalf("enabled = %v, want %v", got, c.want)
			}
		})
	}
}

// queueController runs one named queue and reconciles a key once.
type queueController struct{ name string }

func (q queueController) Name() string { return q.name }
func (q queueController) Run(ctx context.Context, workers int) error {
	queue := controllers.NewQueue(q.name)
	queue.Add("k")
	controllers.RunWorkers(ctx, queue, workers, testLogger(), func(context.Context, string) (controllers.Result, error) {
		return controllers.Result{}, nil
	})
	return nil
}

func testLogger() *slog.Logger { return discardLogger }

var discardLogger = slog.New(slog.NewTextHandler(io.Discard, nil))

func TestLeaderElectionAndMetrics(t *testing.T) {
	s := testserver.Start(t, func(c *server.Config) { c.Disable = append(c.Disable, "controller-manager") })
	specs := []manager.Spec{{Name: "probe-controller", Workers: 1, New: func(*manager.Context) (controllers.Controller, error) {
		return queueController{name: "probe"}, nil
	}}}
	start := func(id, metrics string) (*manager.Manager, context.CancelFunc, chan error) {
		m, err := manager.NewWithSpecs(manager.Config{RestConfig: s.Config, LeaderElect: true, Identity: id, MetricsBindAddress: metrics,
			LeaseDuration: 3 * time.Second, RenewDeadline: 2 * time.Second, RetryPeriod: 200 * time.Millisecond, Logger: discardLogger}, specs)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- m.Run(ctx) }()
		t.Cleanup(cancel)
		return m, cancel, done
	}
	a, cancelA, doneA := start("a", "127.0.0.1:0")
	waitFor(t, "a leads", a.Leading)
	b, _, _ := start("b", "")
	time.Sleep(time.Second)
	if b.Leading() {
		t.Fatal("two managers lead at once")
	}
	lease, err := s.Client.CoordinationV1().Leases("kube-system").Get(context.Background(), "kube-controller-manager", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if lease.Spec.HolderIdentity == nil || *lease.Spec.HolderIdentity != "a" {
		t.Fatalf("lease holder = %v, want a", lease.Spec.HolderIdentity)
	}

	resp, err := http.Get("http://" + a.MetricsAddr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{`workqueue_adds_total{name="probe"}`, `workqueue_depth{name="probe"}`, `workqueue_retries_total`, `workqueue_queue_duration_seconds_bucket{name="probe"`} {
		if !strings.Contains(string(body), want) {
			t.Errorf("metrics lack %s", want)
		}
	}

	cancelA()
	if err := <-doneA; err != nil {
		t.Fatalf("a stopped with %v", err)
	}
	waitFor(t, "b takes over after a releases the lease", b.Leading)
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting: %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
