package agent_test

import (
	"strings"
	"testing"

	"github.com/skiffhq/skiff/internal/testimages"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

// TestSecurityContext checks inside real containers (through exec) that
// the securityContext reached the OCI spec.
func TestSecurityContext(t *testing.T) {
	e := setup(t)
	e.createPod(&corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "sec"},
		Spec: corev1.PodSpec{
			TerminationGracePeriodSeconds: ptr.To[int64](1),
			SecurityContext: &corev1.PodSecurityContext{
				RunAsUser: ptr.To[int64](1000), RunAsGroup: ptr.To[int64](3000),
				SupplementalGroups: []int64{4000}, FSGroup: ptr.To[int64](2000),
			},
			Volumes: []corev1.Volume{{Name: "scratch", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}},
			Containers: []corev1.Container{
				{
					Name: "user", Image: testimages.Busybox, Command: []string{"sleep", "3600"},
					VolumeMounts: []corev1.VolumeMount{{Name: "scratch", MountPath: "/scratch"}},
					SecurityContext: &corev1.SecurityContext{
						ReadOnlyRootFilesystem:   ptr.To(true),
						AllowPrivilegeEscalation: ptr.To(false),
					},
				},
				{
					// root without CAP_CHOWN, and root with the default set.
					Name: "nochown", Image: testimages.Busybox, Command: []string{"sleep", "3600"},
					SecurityContext: &corev1.SecurityContext{
						RunAsUser:    ptr.To[int64](0),
						Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"CHOWN"}, Add: []corev1.Capability{"NET_ADMIN"}},
					},
				},
				{
					Name: "root", Image: testimages.Busybox, Command: []string{"sleep", "3600"},
					SecurityContext: &corev1.SecurityContext{RunAsUser: ptr.To[int64](0)},
				},
			},
		},
	})
	// The busybox image has no USER: it would run as root.
	e.createPod(&corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "nonroot"},
		Spec: corev1.PodSpec{
			TerminationGracePeriodSeconds: ptr.To[int64](1),
			Containers: []corev1.Container{{
				Name: "c", Image: testimages.Busybox, Command: []string{"sleep", "3600"},
				SecurityContext: &corev1.SecurityContext{RunAsNonRoot: ptr.To(true)},
			}},
		},
	})
	e.waitPod("default", "sec", "Running", func(p *corev1.Pod) bool {
		for _, n := range []string{"user", "nochown", "root"} {
			if status(p, n).State.Running == nil {
				return false
			}
		}
		return true
	})
	check := func(container string, wantCode int, wantOut string, cmd ...string) {
		t.Helper()
		out, code := e.execIn("default", "sec", container, cmd...)
		if (wantCode == 0) != (code == 0) || !strings.Contains(out, wantOut) {
			t.Errorf("%s: %v = %d %q, want exit %d and %q", container, cmd, code, out, wantCode, wantOut)
		}
	}
	check("user", 0, "1000\n", "id", "-u")
	check("user", 0, "3000\n", "id", "-g")
	out, _ := e.execIn("default", "sec", "user", "id", "-G")
	for _, g := range []string{"2000", "3000", "4000"} {
		if !strings.Contains(" "+strings.TrimSpace(out)+" ", " "+g+" ") {
			t.Errorf("groups %q lack %s (runAsGroup, fsGroup, supplementalGroups)", out, g)
		}
	}
	check("user", 1, "Read-only file system", "touch", "/probe")
	// fsGroup owns the emptyDir (setgid): new files get group 2000.
	check("user", 0, "2000\n", "sh", "-c", "touch /scratch/f && stat -c %g /scratch/f")
	check("user", 0, "NoNewPrivs:\t1", "grep", "NoNewPrivs", "/proc/self/status")
	check("root", 0, "NoNewPrivs:\t0", "grep", "NoNewPrivs", "/proc/self/status")

	check("root", 0, "", "sh", "-c", "touch /tmp/f && chown 1:1 /tmp/f")
	check("nochown", 1, "Operation not permitted", "sh", "-c", "touch /tmp/f && chown 1:1 /tmp/f")
	// NET_ADMIN (bit 12) added: the bounding set shows it; the default
	// set lacks it.
	capHas := func(container string, bit uint) bool {
		out, _ := e.execIn("default", "sec", container, "grep", "CapBnd", "/proc/self/status")
		f := strings.Fields(out)
		if len(f) != 2 {
			t.Fatalf("CapBnd line %q", out)
		}
		var v uint64
		for _, c := range f[1] {
			v <<= 4
			switch {
			case c >= '0' && c <= '9':
				v |= uint64(c - '0')
			case c >= 'a' && c <= 'f':
				v |= uint64(c-'a') + 10
			}
		}
		return v&(1<<bit) != 0
	}
	if !capHas("nochown", 12) || capHas("root", 12) || capHas("nochown", 0) || !capHas("root", 0) {
		t.Errorf("capability sets: nochown NET_ADMIN=%v CHOWN=%v, root NET_ADMIN=%v CHOWN=%v",
			capHas("nochown", 12), capHas("nochown", 0), capHas("root", 12), capHas("root", 0))
	}

	p := e.waitPod("default", "nonroot", "CreateContainerConfigError", func(p *corev1.Pod) bool {
		w := status(p, "c").State.Waiting
		return w != nil && w.Reason == "CreateContainerConfigError"
	})
	want := `container has runAsNonRoot and image will run as root (pod: "nonroot_default(` + string(p.UID) + `)", container: c)`
	if got := status(p, "c").State.Waiting.Message; got != want {
		t.Errorf("message %q, want %q", got, want)
	}
}
