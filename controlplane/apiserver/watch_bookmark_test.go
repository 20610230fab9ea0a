package apiserver_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/skiffhq/skiff/internal/testserver"
	"github.com/skiffhq/skiff/server"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
)

// TestBookmarksCarryTheWatchedKind: one bookmark goes out to the watchers
// of every resource at once; each must get it as an object of its own kind
// (a shared encoding once sent pod watchers a PriorityClass, which breaks
// client-go's reflector).
func TestBookmarksCarryTheWatchedKind(t *testing.T) {
	s := testserver.Start(t, func(c *server.Config) { c.WatchBookmarkInterval = 200 * time.Millisecond })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	opts := metav1.ListOptions{AllowWatchBookmarks: true, ResourceVersion: "0"}
	watches := map[string]watch.Interface{}
	var err error
	if watches["Pod"], err = s.Client.CoreV1().Pods("").Watch(ctx, opts); err != nil {
		t.Fatal(err)
	}
	if watches["ConfigMap"], err = s.Client.CoreV1().ConfigMaps("").Watch(ctx, opts); err != nil {
		t.Fatal(err)
	}
	if watches["PriorityClass"], err = s.Client.SchedulingV1().PriorityClasses().Watch(ctx, opts); err != nil {
		t.Fatal(err)
	}
	for kind, w := range watches {
		defer w.Stop()
		seen := 0
		for seen < 3 {
			select {
			case e, ok := <-w.ResultChan():
				if !ok {
					t.Fatalf("%s watch closed", kind)
				}
				if e.Type == watch.Error {
					t.Fatalf("%s watch: error event %v", kind, e.Object)
				}
				if e.Type != watch.Bookmark {
					continue
				}
				seen++
				if got := fmt.Sprintf("%T", e.Object); got != "*v1."+kind {
					t.Fatalf("%s watch got a bookmark of type %s", kind, got)
				}
			case <-ctx.Done():
				t.Fatalf("%s watch: %d bookmarks before the deadline", kind, seen)
			}
		}
	}
}
