package server_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/skiffhq/skiff/internal/testserver"
	"github.com/skiffhq/skiff/server"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// TestWatchLimitPerUser: a user holding the most watches allowed gets 429
// with Retry-After for one more; other users and system:masters are
// still served, and closing a watch frees a place.
func TestWatchLimitPerUser(t *testing.T) {
	dir := t.TempDir()
	tokens := filepath.Join(dir, "tokens.csv")
	if err := os.WriteFile(tokens, []byte("greedy-token,greedy,uid-greedy\nother-token,other,uid-other\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	const limit = 5
	s := testserver.Start(t, func(c *server.Config) { c.TokenAuthFile = tokens; c.MaxWatchesPerUser = limit })
	ctx := context.Background()
	for _, u := range []string{"greedy", "other"} {
		if _, err := s.Client.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{
			ObjectMeta: metav1.ObjectMeta{Name: "view-" + u},
			RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: "view"},
			Subjects:   []rbacv1.Subject{{Kind: "User", APIGroup: "rbac.authorization.k8s.io", Name: u}},
		}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	client := func(token string) kubernetes.Interface {
		c := &rest.Config{Host: s.Config.Host, TLSClientConfig: rest.TLSClientConfig{CAData: s.Config.CAData}, BearerToken: token, QPS: -1}
		return kubernetes.NewForConfigOrDie(c)
	}
	greedy, other := client("greedy-token"), client("other-token")
	openWatch := func(c kubernetes.Interface) (watch.Interface, error) {
		return c.CoreV1().ConfigMaps("default").Watch(ctx, metav1.ListOptions{})
	}
	var held []watch.Interface
	t.Cleanup(func() {
		for _, w := range held {
			w.Stop()
		}
	})
	// RBAC reaches the authorizer's cache asynchronously: wait for the
	// first watch to be allowed.
	var first watch.Interface
	for i := 0; ; i++ {
		w, err := openWatch(greedy)
		if err == nil {
			first = w
			break
		}
		if !apierrors.IsForbidden(err) || i > 100 {
			t.Fatalf("first watch: %v", err)
		}
		waitABit()
	}
	held = append(held, first)
	for range limit - 1 {
		w, err := openWatch(greedy)
		if err != nil {
			t.Fatalf("watch within the limit: %v", err)
		}
		held = append(held, w)
	}
	_, err := openWatch(greedy)
	if !apierrors.IsTooManyRequests(err) || !strings.Contains(err.Error(), `too many open watches for user "greedy" (limit 5)`) {
		t.Fatalf("watch beyond the limit: %v, want 429 naming the user and limit", err)
	}
	if secs, ok := apierrors.SuggestsClientDelay(err); !ok || secs != 1 {
		t.Errorf("429 without Retry-After 1: %v %v", secs, ok)
	}
	// Lists by the same user, watches by another user and by an admin
	// are served.
	if _, err := greedy.CoreV1().ConfigMaps("default").List(ctx, metav1.ListOptions{}); err != nil {
		t.Errorf("list by the limited user: %v", err)
	}
	for name, c := range map[string]kubernetes.Interface{"other": other, "admin": s.Client} {
		w, err := openWatch(c)
		if err != nil {
			t.Errorf("watch by %s: %v", name, err)
			continue
		}
		w.Stop()
	}
	// Closing a watch frees a place (the server notices the stream end).
	held[0].Stop()
	held = held[1:]
	for i := 0; ; i++ {
		w, err := openWatch(greedy)
		if err == nil {
			held = append(held, w)
			break
		}
		if !apierrors.IsTooManyRequests(err) || i > 100 {
			t.Fatalf("watch after closing one: %v", err)
		}
		waitABit()
	}
}

func waitABit() { time.Sleep(50 * time.Millisecond) }
