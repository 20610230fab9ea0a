package admission_test

import (
	"context"
	"strings"
	"testing"

	"github.com/skiffhq/skiff/internal/testserver"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

func testPodSecurity(t *testing.T, s *testserver.Server) {
	ctx := context.Background()
	c, warns := clientWithWarnings(t, s)
	namespace(t, c, "restricted", map[string]string{"pod-security.kubernetes.io/enforce": "restricted"})
	namespace(t, c, "baseline", map[string]string{
		"pod-security.kubernetes.io/enforce": "baseline",
		"pod-security.kubernetes.io/warn":    "restricted", "pod-security.kubernetes.io/warn-version": "v1.32",
	})

	_, err := c.CoreV1().Pods("restricted").Create(ctx, pod("plain"), metav1.CreateOptions{})
	wantStatus(t, err, 403, `pods "plain" is forbidden: violates PodSecurity "restricted:latest": `+
		`allowPrivilegeEscalation != false (container "c" must set securityContext.allowPrivilegeEscalation=false), `+
		`unrestricted capabilities (container "c" must set securityContext.capabilities.drop=["ALL"]), `+
		`runAsNonRoot != true (pod or container "c" must set securityContext.runAsNonRoot=true), `+
		`seccompProfile (pod or container "c" must set securityContext.seccompProfile.type to "RuntimeDefault" or "Localhost")`)

	hardened := func(p *corev1.Pod) {
		p.Spec.SecurityContext = &corev1.PodSecurityContext{
			RunAsNonRoot:   ptr.To(true),
			SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
		}
		p.Spec.Containers[0].SecurityContext = &corev1.SecurityContext{
			AllowPrivilegeEscalation: ptr.To(false),
			Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}, Add: []corev1.Capability{"NET_BIND_SERVICE"}},
		}
	}
	if _, err := c.CoreV1().Pods("restricted").Create(ctx, pod("hardened", hardened), metav1.CreateOptions{}); err != nil {
		t.Fatalf("restricted-compliant pod (with the token volume) refused: %v", err)
	}

	privileged := func(p *corev1.Pod) {
		p.Spec.HostNetwork = true
		p.Spec.Containers[0].SecurityContext = &corev1.SecurityContext{
			Privileged:   ptr.To(true),
			Capabilities: &corev1.Capabilities{Add: []corev1.Capability{"SYS_ADMIN", "CHOWN"}},
		}
		p.Spec.Volumes = []corev1.Volume{{Name: "root", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: "/"}}}}
	}
	_, err = c.CoreV1().Pods("baseline").Create(ctx, pod("priv", privileged), metav1.CreateOptions{})
	wantStatus(t, err, 403, `pods "priv" is forbidden: violates PodSecurity "baseline:latest": `+
		`non-default capabilities (container "c" must not include "SYS_ADMIN" in securityContext.capabilities.add), `+
		`host namespaces (hostNetwork=true), hostPath volumes (volume "root"), `+
		`privileged (container "c" must not set securityContext.privileged=true)`)

	// Baseline passes; the restricted warn level reports as a Warning.
	warns.take()
	if _, err := c.CoreV1().Pods("baseline").Create(ctx, pod("warned"), metav1.CreateOptions{}); err != nil {
		t.Fatalf("baseline pod: %v", err)
	}
	got := warns.take()
	if len(got) != 1 || !strings.HasPrefix(got[0], `would violate PodSecurity "restricted:v1.32": allowPrivilegeEscalation != false (container "c" must set`) {
		t.Errorf("warnings = %q", got)
	}
	// Workloads are not enforced but warned about.
	if err := createDeployment(ctx, c, "baseline", "dep"); err != nil {
		t.Fatalf("deployment: %v", err)
	}
	if got := warns.take(); len(got) != 1 || !strings.HasPrefix(got[0], `would violate PodSecurity "restricted:v1.32"`) {
		t.Errorf("deployment warnings = %q", got)
	}

	// kube-system is exempt by configuration.
	ks, err := c.CoreV1().Namespaces().Get(ctx, "kube-system", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if ks.Labels == nil {
		ks.Labels = map[string]string{}
	}
	ks.Labels["pod-security.kubernetes.io/enforce"] = "restricted"
	if _, err := c.CoreV1().Namespaces().Update(ctx, ks, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	ensureDefaultSA(t, c, "kube-system")
	if _, err := c.CoreV1().Pods("kube-system").Create(ctx, pod("system", privileged), metav1.CreateOptions{}); err != nil {
		t.Errorf("exempt namespace refused a privileged pod: %v", err)
	}

	// Tightening a namespace warns about the pods it already has.
	ns, err := c.CoreV1().Namespaces().Get(ctx, "baseline", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ns.Labels["pod-security.kubernetes.io/enforce"] = "restricted"
	warns.take()
	if _, err := c.CoreV1().Namespaces().Update(ctx, ns, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	got = warns.take()
	found := false
	for _, w := range got {
		found = found || strings.HasPrefix(w, "warned: allowPrivilegeEscalation != false, unrestricted capabilities, runAsNonRoot != true, seccompProfile")
	}
	if len(got) < 2 || got[0] != `existing pods in namespace "baseline" violate the new PodSecurity enforce level "restricted:latest"` || !found {
		t.Errorf("namespace update warnings = %q", got)
	}
}
