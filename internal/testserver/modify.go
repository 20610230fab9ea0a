package testserver

import (
	"context"
	"fmt"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"
)

// Modify reads the object name with get, applies mutate and writes it
// back with update, reading it again when the write conflicts: a test
// that changes an object a controller also writes (a Deployment whose
// status the controller updates) must not fail on the controller's write.
// get and update are a typed client's methods, e.g.
// Modify(ctx, c.AppsV1().Deployments(ns).Get, c.AppsV1().Deployments(ns).Update, "web", func(d *appsv1.Deployment) { ... }).
func Modify[T any](ctx context.Context, get func(context.Context, string, metav1.GetOptions) (T, error),
	update func(context.Context, T, metav1.UpdateOptions) (T, error), name string, mutate func(T)) (T, error) {
	var out T
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		cur, err := get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		mutate(cur)
		out, err = update(ctx, cur, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		return out, fmt.Errorf("modify %s: %w", name, err)
	}
	return out, nil
}
