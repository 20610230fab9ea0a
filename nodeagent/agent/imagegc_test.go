package agent_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/skiffhq/skiff/internal/testimages"
	"github.com/skiffhq/skiff/nodeagent/agent"
	"github.com/skiffhq/skiff/nodeagent/runtime"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestImageGarbageCollection runs image GC on real containerd with only
// the image filesystem's usage reading faked: below the high threshold
// nothing is deleted; above it, images younger than the minimum age stay
// (and the Node gets FreeDiskSpaceFailed); once old enough, the unused
// image is deleted while the image of a running pod and the pinned airgap
// images stay.
func TestImageGarbageCollection(t *testing.T) {
	const capacity = uint64(1) << 50
	var available atomic.Uint64
	available.Store(capacity / 2) // 50%: below the high threshold
	const minAge = 3 * time.Second
	e := setupWith(t, func(o *agent.Options) {
		o.ImageGC = agent.ImageGCPolicy{
			HighThresholdPercent: 85, LowThresholdPercent: 80, MinAge: minAge,
			Period: time.Hour, // only the test collects
			FsUsage: func(context.Context) (uint64, uint64, error) {
				return capacity, available.Load(), nil
			},
		}
	})
	suffix := fmt.Sprintf("%d", time.Now().UnixNano())
	unused := "skiff.test/gc-unused:" + suffix
	inUse := "skiff.test/gc-inuse:" + suffix
	t.Cleanup(func() {
		ctx := context.Background()
		rt, err := runtime.New(ctx, runtime.Options{})
		if err != nil {
			t.Errorf("cleanup: %v", err)
			return
		}
		defer rt.Close()
		for _, ref := range []string{unused, inUse} {
			if err := rt.DeleteImage(ctx, ref); err != nil {
				t.Errorf("cleanup: %v", err)
			}
		}
	})
	ctx := context.Background()
	rt := e.agent.Runtime()
	dir := t.TempDir()
	for i, ref := range []string{unused, inUse} {
		tarPath := filepath.Join(dir, fmt.Sprintf("img%d.tar", i))
		if err := testimages.WriteBusyboxAs(tarPath, ref, ref); err != nil {
			t.Fatal(err)
		}
		if _, err := rt.ImportFile(ctx, tarPath); err != nil {
			t.Fatal(err)
		}
	}
	e.createPod(&corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "gc-user"},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{
			Name: "c", Image: inUse, ImagePullPolicy: corev1.PullNever, Command: []string{"sleep", "3600"},
		}}},
	})
	e.waitPod("default", "gc-user", "running", running)

	present := func() map[string]bool {
		t.Helper()
		imgs, err := rt.ListImages(ctx)
		if err != nil {
			t.Fatal(err)
		}
		m := map[string]bool{}
		for _, im := range imgs {
			m[im.Ref] = true
			if im.Ref == testimages.Busybox && !im.Pinned {
				t.Errorf("airgap image %s is not pinned", im.Ref)
			}
		}
		return m
	}
	mustHave := func(when string, refs ...string) {
		t.Helper()
		have := present()
		for _, r := range refs {
			if !have[r] {
				t.Fatalf("%s: image %s was deleted", when, r)
			}
		}
	}

	// Below the high threshold: nothing happens (this pass also first
	// detects the two new images).
	if err := e.agent.GarbageCollectImages(ctx); err != nil {
		t.Fatalf("gc below the threshold: %v", err)
	}
	mustHave("below the high threshold", unused, inUse, testimages.Busybox, testimages.HTTPServer)

	// Over the high threshold, but the new images are younger than the
	// minimum age: kept, and not enough could be freed.
	available.Store(capacity / 20) // 95%
	err := e.agent.GarbageCollectImages(ctx)
	if err == nil || !strings.Contains(err.Error(), "failed to garbage collect required amount of images") {
		t.Fatalf("gc over the threshold with young images: err = %v, want not enough freed", err)
	}
	mustHave("younger than the minimum age", unused, inUse, testimages.Busybox, testimages.HTTPServer)
	e.waitNodeEvent("FreeDiskSpaceFailed", "Failed to garbage collect required amount of images")

	// Old enough: the unused image goes; the running pod's and the pinned
	// ones stay. The fake usage asks for more than all eligible images,
	// so every eligible image is deleted and the pass reports the gap.
	time.Sleep(minAge + 100*time.Millisecond)
	if err := e.agent.GarbageCollectImages(ctx); err == nil {
		t.Fatal("gc freed 20% of 1 PiB?")
	}
	have := present()
	if have[unused] {
		t.Fatalf("unused image %s was not deleted", unused)
	}
	if _, err := rt.GetImage(ctx, unused); !errors.Is(err, runtime.ErrImageNotFound) {
		t.Fatalf("get deleted image: %v", err)
	}
	mustHave("after collection", inUse, testimages.Busybox, testimages.HTTPServer)

	// Back below the threshold with everything old: nothing more goes.
	available.Store(capacity / 2)
	if err := e.agent.GarbageCollectImages(ctx); err != nil {
		t.Fatalf("gc below the threshold: %v", err)
	}
	mustHave("below the threshold again", inUse, testimages.Busybox, testimages.HTTPServer)

	// The stats summary's imageFs.usedBytes is the images' bytes.
	sum, err := e.agent.Summary(ctx, false)
	if err != nil {
		t.Fatal(err)
	}
	var inUseSize int64
	imgs, err := rt.ListImages(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, im := range imgs {
		if im.Ref == inUse {
			inUseSize = im.Size
		}
	}
	if rs := sum.Node.Runtime; rs == nil || rs.ImageFs == nil || rs.ImageFs.UsedBytes == nil || rs.ImageFs.CapacityBytes == nil ||
		inUseSize <= 0 || *rs.ImageFs.UsedBytes < uint64(inUseSize) || *rs.ImageFs.UsedBytes > *rs.ImageFs.CapacityBytes {
		t.Fatalf("imageFs %+v: want usedBytes at least the in-use image's %d bytes", sum.Node.Runtime, inUseSize)
	}
}

// waitNodeEvent polls until an event on the test's Node has reason and a
// message containing msg.
func (e *env) waitNodeEvent(reason, msg string) {
	e.t.Helper()
	var seen []string
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		evs, err := e.srv.Client.CoreV1().Events("default").List(context.Background(), metav1.ListOptions{
			FieldSelector: "involvedObject.kind=Node,involvedObject.name=" + e.nodeName,
		})
		if err != nil {
			continue
		}
		seen = seen[:0]
		for _, ev := range evs.Items {
			seen = append(seen, ev.Reason+": "+ev.Message)
			if ev.Reason == reason && strings.Contains(ev.Message, msg) {
				return
			}
		}
	}
	e.t.Fatalf("no %s event with %q for node %s; events: %q", reason, msg, e.nodeName, seen)
}
