package apiserver_test

import (
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/skiffhq/skiff/internal/testserver"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/util/retry"
)

// Updates start from the watch cache; the compare-and-swap on the revision
// must still make every read-modify-write count: concurrent increments
// (PUT with resourceVersion, and PATCH without) lose nothing, and a PUT
// carrying an old resourceVersion is a conflict, never a silent overwrite.
func TestConcurrentUpdatesLoseNothing(t *testing.T) {
	s := testserver.Start(t)
	ctx := ctxT(t)
	cms := s.Client.CoreV1().ConfigMaps("default")
	if _, err := cms.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "counter"}, Data: map[string]string{"n": "0"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	const workers, each = 4, 25
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; i < each; i++ {
				// No Cap: wait.Backoff zeroes Steps once the cap is reached,
				// which left ~18 tries, too few for a loaded CI machine. The
				// claim here is that no update is lost, not a bound on retries.
				err := retry.RetryOnConflict(wait.Backoff{Steps: 1000, Duration: 2 * time.Millisecond, Factor: 1, Jitter: 4}, func() error {
					cur, err := cms.Get(ctx, "counter", metav1.GetOptions{})
					if err != nil {
						return err
					}
					n, _ := strconv.Atoi(cur.Data["n"])
					cur.Data["n"] = strconv.Itoa(n + 1)
					_, err = cms.Update(ctx, cur, metav1.UpdateOptions{})
					return err
				})
				if err != nil {
					errs <- err
					return
				}
				// A patch without a resourceVersion appends to its own key.
				if _, err := cms.Patch(ctx, "counter", types.MergePatchType,
					[]byte(`{"data":{"w`+strconv.Itoa(w)+`":"`+strconv.Itoa(i+1)+`"}}`), metav1.PatchOptions{}); err != nil {
					errs <- err
					return
				}
			}
		}(w)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	got, err := cms.Get(ctx, "counter", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got.Data["n"] != strconv.Itoa(workers*each) {
		t.Fatalf("counter = %s after %d increments: updates were lost", got.Data["n"], workers*each)
	}
	for w := 0; w < workers; w++ {
		if v := got.Data["w"+strconv.Itoa(w)]; v != strconv.Itoa(each) {
			t.Fatalf("worker %d patch key = %q, want %d", w, v, each)
		}
	}
	// A stale resourceVersion is a conflict.
	stale := got.DeepCopy()
	stale.ResourceVersion = "1"
	stale.Data["n"] = "-1"
	if _, err := cms.Update(ctx, stale, metav1.UpdateOptions{}); !apierrors.IsConflict(err) {
		t.Fatalf("update with a stale resourceVersion: %v, want Conflict", err)
	}
	// Writing the same content again is a no-op answered with the stored
	// object, and a current resourceVersion still updates.
	same, err := cms.Update(ctx, got, metav1.UpdateOptions{})
	if err != nil || same.ResourceVersion != got.ResourceVersion {
		t.Fatalf("no-op update: %v rv %s -> %s", err, got.ResourceVersion, same.ResourceVersion)
	}
	same.Data["n"] = "done"
	if _, err := cms.Update(ctx, same, metav1.UpdateOptions{}); err != nil {
		t.Fatalf("update at the current resourceVersion: %v", err)
	}
}
