package serviceaccount_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/skiffhq/skiff/controlplane/controllers/serviceaccount"
	"github.com/skiffhq/skiff/internal/testserver"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestEveryNamespaceGetsDefaultSAAndRootCA(t *testing.T) {
	s := testserver.Start(t)
	ctx := context.Background()
	c := s.Client
	ca := string(s.Config.CAData)
	if ca == "" {
		t.Fatal("admin config has no CA data")
	}
	check := func(ns string) error {
		if _, err := c.CoreV1().ServiceAccounts(ns).Get(ctx, "default", metav1.GetOptions{}); err != nil {
			return err
		}
		cm, err := c.CoreV1().ConfigMaps(ns).Get(ctx, serviceaccount.RootCAConfig, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if cm.Data["ca.crt"] != ca {
			return fmt.Errorf("ca.crt in %s is not the cluster CA", ns)
		}
		return nil
	}
	wait := func(what string, f func() error) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for err := f(); err != nil; err = f() {
			if time.Now().After(deadline) {
				t.Fatalf("%s: %v", what, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	for _, ns := range []string{"default", "kube-system", "kube-public"} {
		wait(ns, func() error { return check(ns) })
	}
	if _, err := c.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "team-a"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	wait("new namespace", func() error { return check("team-a") })

	// Deleted or tampered objects are put back.
	if err := c.CoreV1().ServiceAccounts("team-a").Delete(ctx, "default", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	cm, err := c.CoreV1().ConfigMaps("team-a").Get(ctx, serviceaccount.RootCAConfig, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cm.Data["ca.crt"] = "tampered"
	if _, err := c.CoreV1().ConfigMaps("team-a").Update(ctx, cm, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	wait("restored", func() error { return check("team-a") })
}
