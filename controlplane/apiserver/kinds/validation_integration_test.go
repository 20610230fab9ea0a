package kinds_test

import (
	"context"
	"strings"
	"testing"

	"github.com/skiffhq/skiff/internal/testserver"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// TestDefaultingAndValidationThroughServer runs the hooks through the real
// API server: a bad Deployment answers 422 naming the field, a minimal Pod
// comes back defaulted, and a Pod's container name cannot change.
func TestDefaultingAndValidationThroughServer(t *testing.T) {
	s := testserver.Start(t)
	ctx := context.Background()
	c := s.Client

	t.Run("invalid deployment is 422 with causes", func(t *testing.T) {
		d := &appsv1.Deployment{
			ObjectMeta: metav1.ObjectMeta{Name: "bad"},
			Spec: appsv1.DeploymentSpec{
				Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "x"}},
				Template: corev1.PodTemplateSpec{
					ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "y"}},
					Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c"}}},
				},
			},
		}
		_, err := c.AppsV1().Deployments("default").Create(ctx, d, metav1.CreateOptions{})
		if !apierrors.IsInvalid(err) {
			t.Fatalf("want 422 Invalid, got %v", err)
		}
		status := err.(apierrors.APIStatus).Status()
		if status.Code != 422 || status.Details == nil || status.Details.Kind != "Deployment" || status.Details.Name != "bad" {
			t.Fatalf("unexpected status: %+v", status)
		}
		fields := map[string]metav1.CauseType{}
		for _, cause := range status.Details.Causes {
			fields[cause.Field] = cause.Type
		}
		if fields["spec.template.metadata.labels"] != metav1.CauseTypeFieldValueInvalid {
			t.Errorf("causes %v: want spec.template.metadata.labels FieldValueInvalid", status.Details.Causes)
		}
		if fields["spec.template.spec.containers[0].image"] != metav1.CauseTypeFieldValueRequired {
			t.Errorf("causes %v: want spec.template.spec.containers[0].image FieldValueRequired", status.Details.Causes)
		}
		if !strings.Contains(status.Message, "`selector` does not match template `labels`") {
			t.Errorf("message %q lacks the selector mismatch", status.Message)
		}
	})

	t.Run("minimal pod is defaulted", func(t *testing.T) {
		p := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: "web"},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{
				Name: "nginx", Image: "nginx",
				Ports:          []corev1.ContainerPort{{ContainerPort: 80}},
				ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Port: intstrFromInt(80)}}},
			}}},
		}
		got, err := c.CoreV1().Pods("default").Create(ctx, p, metav1.CreateOptions{})
		if err != nil {
			t.Fatalf("create: %v", err)
		}
		sp := got.Spec
		ctr := sp.Containers[0]
		checks := []struct {
			name      string
			got, want any
		}{
			{"restartPolicy", sp.RestartPolicy, corev1.RestartPolicyAlways},
			{"dnsPolicy", sp.DNSPolicy, corev1.DNSClusterFirst},
			{"schedulerName", sp.SchedulerName, "default-scheduler"},
			{"terminationGracePeriodSeconds", deref(sp.TerminationGracePeriodSeconds), int64(30)},
			{"securityContext set", sp.SecurityContext != nil, true},
			{"enableServiceLinks", sp.EnableServiceLinks != nil && *sp.EnableServiceLinks, true},
			{"imagePullPolicy", ctr.ImagePullPolicy, corev1.PullAlways},
			{"terminationMessagePath", ctr.TerminationMessagePath, "/dev/termination-log"},
			{"terminationMessagePolicy", ctr.TerminationMessagePolicy, corev1.TerminationMessageReadFile},
			{"port protocol", ctr.Ports[0].Protocol, corev1.ProtocolTCP},
			{"probe periodSeconds", ctr.ReadinessProbe.PeriodSeconds, int32(10)},
			{"probe scheme", ctr.ReadinessProbe.HTTPGet.Scheme, corev1.URISchemeHTTP},
		}
		for _, ch := range checks {
			if ch.got != ch.want {
				t.Errorf("%s = %v, want %v", ch.name, ch.got, ch.want)
			}
		}

		// The stored object is defaulted too.
		again, err := c.CoreV1().Pods("default").Get(ctx, "web", metav1.GetOptions{})
		if err != nil {
			t.Fatalf("get: %v", err)
		}
		if again.Spec.SchedulerName != "default-scheduler" {
			t.Errorf("stored schedulerName = %q", again.Spec.SchedulerName)
		}

		// Changing a container's name is not an allowed pod update. The
		// scheduler may write the pod's status meanwhile: an unconditional
		// update (no resourceVersion) is judged against the current pod.
		again.Spec.Containers[0].Name = "renamed"
		again.ResourceVersion = ""
		_, err = c.CoreV1().Pods("default").Update(ctx, again, metav1.UpdateOptions{})
		if !apierrors.IsInvalid(err) {
			t.Fatalf("rename container: want 422 Invalid, got %v", err)
		}
		st := err.(apierrors.APIStatus).Status()
		if len(st.Details.Causes) != 1 || st.Details.Causes[0].Field != "spec" || st.Details.Causes[0].Type != metav1.CauseTypeForbidden {
			t.Fatalf("causes = %+v, want one Forbidden on spec", st.Details.Causes)
		}
		if !strings.Contains(st.Message, "pod updates may not change fields other than") {
			t.Errorf("message = %q", st.Message)
		}

		// An image change is allowed.
		again, err = c.CoreV1().Pods("default").Get(ctx, "web", metav1.GetOptions{})
		if err != nil {
			t.Fatalf("get: %v", err)
		}
		again.Spec.Containers[0].Image = "nginx:1.27"
		again.ResourceVersion = ""
		upd, err := c.CoreV1().Pods("default").Update(ctx, again, metav1.UpdateOptions{})
		if err != nil {
			t.Fatalf("image update: %v", err)
		}
		if upd.Spec.Containers[0].Image != "nginx:1.27" {
			t.Errorf("image = %q", upd.Spec.Containers[0].Image)
		}
	})
}

func deref[T any](p *T) any {
	if p == nil {
		return nil
	}
	return *p
}

func intstrFromInt(n int) intstr.IntOrString { return intstr.FromInt(n) }
