package podgc_test

import (
	"context"
	"io"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/skiffhq/skiff/controlplane/controllers/manager"
	"github.com/skiffhq/skiff/controlplane/controllers/podgc"
	"github.com/skiffhq/skiff/internal/testserver"
	"github.com/skiffhq/skiff/server"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestTerminatedToDelete(t *testing.T) {
	now := time.Now()
	mk := func(name string, phase corev1.PodPhase, age time.Duration) *corev1.Pod {
		return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, CreationTimestamp: metav1.NewTime(now.Add(-age))}, Status: corev1.PodStatus{Phase: phase}}
	}
	pods := []*corev1.Pod{mk("run", corev1.PodRunning, 5*time.Hour), mk("old", corev1.PodSucceeded, 4*time.Hour),
		mk("mid", corev1.PodFailed, 3*time.Hour), mk("new", corev1.PodSucceeded, time.Hour)}
	var got []string
	for _, p := range podgc.TerminatedToDelete(pods, 1) {
		got = append(got, p.Name)
	}
	if !slices.Equal(got, []string{"old", "mid"}) {
		t.Fatalf("deleted %v, want [old mid]", got)
	}
	if n := len(podgc.TerminatedToDelete(pods, 0)); n != 0 {
		t.Fatalf("threshold 0 deleted %d", n)
	}
}

func TestPodGC(t *testing.T) {
	s := testserver.Start(t, func(c *server.Config) { c.Disable = append(c.Disable, "controller-manager") })
	ctx := context.Background()
	c := s.Client
	mk := func(name, node string, phase corev1.PodPhase) {
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: corev1.PodSpec{NodeName: node, Containers: []corev1.Container{{Name: "c", Image: "x"}}}}
		created, err := c.CoreV1().Pods("default").Create(ctx, p, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if phase != "" {
			created.Status.Phase = phase
			if _, err := c.CoreV1().Pods("default").UpdateStatus(ctx, created, metav1.UpdateOptions{}); err != nil {
				t.Fatal(err)
			}
		}
		time.Sleep(1100 * time.Millisecond) // distinct creation seconds
	}
	// The manager runs only PodGC here: create what the ServiceAccount
	// controller would, for the ServiceAccount admission plugin.
	if _, err := c.CoreV1().ServiceAccounts("default").Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	mk("done-1", "n1", corev1.PodSucceeded)
	mk("done-2", "n1", corev1.PodFailed)
	mk("done-3", "n1", corev1.PodSucceeded)
	mk("live", "n1", corev1.PodRunning)
	mk("lost", "gone-node", corev1.PodRunning)

	m, err := manager.New(manager.Config{RestConfig: s.Config, Controllers: []string{"podgc"}, TerminatedPodGCThreshold: 1,
		PodGCQuarantine: time.Second, PodGCPeriod: 200 * time.Millisecond, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	mctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() { _ = m.Run(mctx) }()
	deadline := time.Now().Add(20 * time.Second)
	for {
		l, err := c.CoreV1().Pods("default").List(ctx, metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, p := range l.Items {
			names = append(names, p.Name)
		}
		slices.Sort(names)
		if slices.Equal(names, []string{"done-3", "live"}) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("pods left %v, want [done-3 live]", names)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
