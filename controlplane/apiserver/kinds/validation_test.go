package kinds

import (
	"context"
	"strings"
	"testing"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	schedulingv1 "k8s.io/api/scheduling/v1"
	storagev1 "k8s.io/api/storage/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// want is one expected error: its field path and type ("" type = any),
// and optionally a fragment of its detail.
type want struct {
	path   string
	typ    field.ErrorType
	detail string
}

func hooks(t *testing.T, group, kind string) (def func(runtime.Object), validate func(context.Context, runtime.Object) field.ErrorList, update func(context.Context, runtime.Object, runtime.Object) field.ErrorList) {
	t.Helper()
	for _, r := range Builtins() {
		if r.Group == group && r.Kind == kind {
			return r.Hooks.Default, r.Hooks.Validate, r.Hooks.ValidateUpdate
		}
	}
	t.Fatalf("%s/%s not registered", group, kind)
	return nil, nil, nil
}

// validateCreate defaults obj and validates it, as the server does on create.
func validateCreate(t *testing.T, group, kind string, obj runtime.Object) field.ErrorList {
	t.Helper()
	def, v, _ := hooks(t, group, kind)
	if def != nil {
		def(obj)
	}
	if v == nil {
		t.Fatalf("%s/%s has no Validate hook", group, kind)
	}
	return v(context.Background(), obj)
}

// validateUpdate runs Default, Validate and ValidateUpdate as the server
// does on update. Like a client's read-modify-write, callers build obj from
// an old object that was defaulted when it was created (see stored).
func validateUpdate(t *testing.T, group, kind string, obj, old runtime.Object) field.ErrorList {
	t.Helper()
	def, v, u := hooks(t, group, kind)
	if def != nil {
		def(obj)
	}
	errs := v(context.Background(), obj)
	if u == nil {
		t.Fatalf("%s/%s has no ValidateUpdate hook", group, kind)
	}
	return append(errs, u(context.Background(), obj, old)...)
}

// stored returns obj as the server stored it on create (defaulted).
func stored[T runtime.Object](t *testing.T, group, kind string, obj T) T {
	t.Helper()
	if def, _, _ := hooks(t, group, kind); def != nil {
		def(obj)
	}
	return obj
}

func expectErrors(t *testing.T, errs field.ErrorList, wants []want) {
	t.Helper()
	if len(wants) == 0 {
		if len(errs) > 0 {
			t.Fatalf("unexpected errors: %v", errs.ToAggregate())
		}
		return
	}
	for _, w := range wants {
		found := false
		for _, e := range errs {
			if e.Field == w.path && (w.typ == "" || e.Type == w.typ) && strings.Contains(e.Detail, w.detail) {
				found = true
			}
		}
		if !found {
			t.Errorf("missing error %s (%s) %q; got: %v", w.path, w.typ, w.detail, errs)
		}
	}
	if len(errs) != len(wants) {
		t.Errorf("got %d errors, want %d: %v", len(errs), len(wants), errs)
	}
}

func goodPod() *corev1.Pod {
	return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "default"}, Spec: corev1.PodSpec{
		Containers: []corev1.Container{{Name: "app", Image: "nginx",
			Ports:        []corev1.ContainerPort{{Name: "http", ContainerPort: 80}},
			VolumeMounts: []corev1.VolumeMount{{Name: "data", MountPath: "/data"}}}},
		Volumes: []corev1.Volume{{Name: "data", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}},
	}}
}

func TestPodValidation(t *testing.T) {
	cases := []struct {
		name   string
		mutate func(*corev1.Pod)
		want   []want
	}{
		{"valid", func(*corev1.Pod) {}, nil},
		{"no containers", func(p *corev1.Pod) { p.Spec.Containers = nil },
			[]want{{"spec.containers", field.ErrorTypeRequired, ""}}},
		{"image required", func(p *corev1.Pod) { p.Spec.Containers[0].Image = "" },
			[]want{{"spec.containers[0].image", field.ErrorTypeRequired, ""}}},
		{"container name not a DNS label", func(p *corev1.Pod) { p.Spec.Containers[0].Name = "App_1" },
			[]want{{"spec.containers[0].name", field.ErrorTypeInvalid, "RFC 1123 label"}}},
		{"duplicate container name across init", func(p *corev1.Pod) {
			p.Spec.InitContainers = []corev1.Container{{Name: "app", Image: "busybox"}}
		}, []want{{"spec.containers[0].name", field.ErrorTypeDuplicate, ""}}},
		{"port out of range", func(p *corev1.Pod) { p.Spec.Containers[0].Ports[0].ContainerPort = 70000 },
			[]want{{"spec.containers[0].ports[0].containerPort", field.ErrorTypeInvalid, "between 1 and 65535"}}},
		{"bad protocol", func(p *corev1.Pod) { p.Spec.Containers[0].Ports[0].Protocol = "HTTP" },
			[]want{{"spec.containers[0].ports[0].protocol", field.ErrorTypeNotSupported, ""}}},
		{"duplicate port name", func(p *corev1.Pod) {
			p.Spec.Containers[0].Ports = append(p.Spec.Containers[0].Ports, corev1.ContainerPort{Name: "http", ContainerPort: 81})
		}, []want{{"spec.containers[0].ports[1].name", field.ErrorTypeDuplicate, ""}}},
		{"bad restartPolicy", func(p *corev1.Pod) { p.Spec.RestartPolicy = "Sometimes" },
			[]want{{"spec.restartPolicy", field.ErrorTypeNotSupported, ""}}},
		{"bad dnsPolicy", func(p *corev1.Pod) { p.Spec.DNSPolicy = "Google" },
			[]want{{"spec.dnsPolicy", field.ErrorTypeNotSupported, ""}}},
		{"duplicate volume", func(p *corev1.Pod) { p.Spec.Volumes = append(p.Spec.Volumes, p.Spec.Volumes[0]) },
			[]want{{"spec.volumes[1].name", field.ErrorTypeDuplicate, ""}}},
		{"two volume sources", func(p *corev1.Pod) {
			p.Spec.Volumes[0].HostPath = &corev1.HostPathVolumeSource{Path: "/x"}
		}, []want{{"spec.volumes[0].emptyDir", field.ErrorTypeForbidden, "may not specify more than 1 volume type"}}},
		{"mount of unknown volume", func(p *corev1.Pod) { p.Spec.Containers[0].VolumeMounts[0].Name = "nope" },
			[]want{{"spec.containers[0].volumeMounts[0].name", field.ErrorTypeNotFound, ""}}},
		{"mountPath required", func(p *corev1.Pod) { p.Spec.Containers[0].VolumeMounts[0].MountPath = "" },
			[]want{{"spec.containers[0].volumeMounts[0].mountPath", field.ErrorTypeRequired, ""}}},
		{"request above limit", func(p *corev1.Pod) {
			p.Spec.Containers[0].Resources = corev1.ResourceRequirements{
				Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("2")},
				Limits:   corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("1")}}
		}, []want{{"spec.containers[0].resources.requests[cpu]", field.ErrorTypeInvalid, "must be less than or equal to cpu limit of 1"}}},
		{"bad env name", func(p *corev1.Pod) { p.Spec.Containers[0].Env = []corev1.EnvVar{{Name: "A=B"}} },
			[]want{{"spec.containers[0].env[0].name", field.ErrorTypeInvalid, ""}}},
		{"probe without handler", func(p *corev1.Pod) { p.Spec.Containers[0].ReadinessProbe = &corev1.Probe{} },
			[]want{{"spec.containers[0].readinessProbe", field.ErrorTypeRequired, "must specify a handler type"}}},
		{"probe with two handlers", func(p *corev1.Pod) {
			p.Spec.Containers[0].LivenessProbe = &corev1.Probe{ProbeHandler: corev1.ProbeHandler{
				Exec:      &corev1.ExecAction{Command: []string{"true"}},
				TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromInt32(80)}}}
		}, []want{{"spec.containers[0].livenessProbe.tcpSocket", field.ErrorTypeForbidden, "may not specify more than 1 handler type"}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := goodPod()
			tc.mutate(p)
			expectErrors(t, validateCreate(t, "", "Pod", p), tc.want)
		})
	}
}

func TestPodUpdate(t *testing.T) {
	cases := []struct {
		name   string
		mutate func(*corev1.Pod)
		want   []want
	}{
		{"image change allowed", func(p *corev1.Pod) { p.Spec.Containers[0].Image = "nginx:2" }, nil},
		{"deadline set allowed", func(p *corev1.Pod) { p.Spec.ActiveDeadlineSeconds = ptrTo(int64(10)) }, nil},
		{"toleration added", func(p *corev1.Pod) {
			p.Spec.Tolerations = append(p.Spec.Tolerations, corev1.Toleration{Key: "k", Operator: corev1.TolerationOpExists})
		}, nil},
		{"container name change", func(p *corev1.Pod) { p.Spec.Containers[0].Name = "other" },
			[]want{{"spec", field.ErrorTypeForbidden, "pod updates may not change fields other than `spec.containers[*].image`"}}},
		{"toleration removed", func(p *corev1.Pod) { p.Spec.Tolerations = nil },
			[]want{{"spec", field.ErrorTypeForbidden, ""}}},
		{"restartPolicy change", func(p *corev1.Pod) { p.Spec.RestartPolicy = corev1.RestartPolicyNever },
			[]want{{"spec", field.ErrorTypeForbidden, ""}}},
		{"image cleared", func(p *corev1.Pod) { p.Spec.Containers[0].Image = "" },
			[]want{{"spec.containers[0].image", field.ErrorTypeRequired, ""}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			old := goodPod()
			old.Spec.Tolerations = []corev1.Toleration{{Key: "a", Operator: corev1.TolerationOpExists}}
			old = stored(t, "", "Pod", old)
			cur := old.DeepCopy()
			tc.mutate(cur)
			expectErrors(t, validateUpdate(t, "", "Pod", cur, old), tc.want)
		})
	}
}

func goodDeployment() *appsv1.Deployment {
	return &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "d"}, Spec: appsv1.DeploymentSpec{
		Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}},
		Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "web"}},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "nginx"}}}},
	}}
}

func TestDeploymentValidation(t *testing.T) {
	cases := []struct {
		name   string
		mutate func(*appsv1.Deployment)
		want   []want
	}{
		{"valid", func(*appsv1.Deployment) {}, nil},
		{"selector required", func(d *appsv1.Deployment) { d.Spec.Selector = nil },
			[]want{{"spec.selector", field.ErrorTypeRequired, ""}}},
		{"empty selector", func(d *appsv1.Deployment) { d.Spec.Selector = &metav1.LabelSelector{} },
			[]want{{"spec.selector", field.ErrorTypeInvalid, "empty selector is invalid for deployment"}}},
		{"selector mismatch", func(d *appsv1.Deployment) { d.Spec.Template.Labels = map[string]string{"app": "other"} },
			[]want{{"spec.template.metadata.labels", field.ErrorTypeInvalid, "`selector` does not match template `labels`"}}},
		{"negative replicas", func(d *appsv1.Deployment) { d.Spec.Replicas = ptrTo(int32(-1)) },
			[]want{{"spec.replicas", field.ErrorTypeInvalid, "must be greater than or equal to 0"}}},
		{"restartPolicy Never", func(d *appsv1.Deployment) { d.Spec.Template.Spec.RestartPolicy = corev1.RestartPolicyNever },
			[]want{{"spec.template.spec.restartPolicy", field.ErrorTypeNotSupported, ""}}},
		{"both zero", func(d *appsv1.Deployment) {
			z := intstr.FromInt32(0)
			d.Spec.Strategy.RollingUpdate = &appsv1.RollingUpdateDeployment{MaxUnavailable: &z, MaxSurge: &z}
		}, []want{{"spec.strategy.rollingUpdate.maxUnavailable", field.ErrorTypeInvalid, "may not be 0 when `maxSurge` is 0"}}},
		{"bad strategy", func(d *appsv1.Deployment) { d.Spec.Strategy.Type = "BlueGreen" },
			[]want{{"spec.strategy.type", field.ErrorTypeNotSupported, ""}}},
		{"percent over 100", func(d *appsv1.Deployment) {
			d.Spec.Strategy.RollingUpdate = &appsv1.RollingUpdateDeployment{MaxUnavailable: percent("150%")}
		}, []want{{"spec.strategy.rollingUpdate.maxUnavailable", field.ErrorTypeInvalid, "must not be greater than 100%"}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d := goodDeployment()
			tc.mutate(d)
			expectErrors(t, validateCreate(t, "apps", "Deployment", d), tc.want)
		})
	}
	t.Run("selector immutable", func(t *testing.T) {
		old := stored(t, "apps", "Deployment", goodDeployment())
		cur := old.DeepCopy()
		cur.Spec.Selector.MatchLabels["tier"] = "x"
		cur.Spec.Template.Labels["tier"] = "x"
		expectErrors(t, validateUpdate(t, "apps", "Deployment", cur, old), []want{{"spec.selector", field.ErrorTypeInvalid, "field is immutable"}})
	})
}

func TestOtherWorkloadValidation(t *testing.T) {
	tmpl := goodDeployment().Spec.Template
	sel := goodDeployment().Spec.Selector
	t.Run("ReplicaSet mismatch", func(t *testing.T) {
		rs := &appsv1.ReplicaSet{Spec: appsv1.ReplicaSetSpec{Selector: sel, Template: *tmpl.DeepCopy()}}
		rs.Spec.Template.Labels = nil
		expectErrors(t, validateCreate(t, "apps", "ReplicaSet", rs), []want{{"spec.template.metadata.labels", field.ErrorTypeInvalid, "does not match"}})
	})
	t.Run("StatefulSet valid and bad policy", func(t *testing.T) {
		ss := &appsv1.StatefulSet{Spec: appsv1.StatefulSetSpec{Selector: sel, Template: *tmpl.DeepCopy()}}
		expectErrors(t, validateCreate(t, "apps", "StatefulSet", ss.DeepCopy()), nil)
		ss.Spec.PodManagementPolicy = "Random"
		expectErrors(t, validateCreate(t, "apps", "StatefulSet", ss), []want{{"spec.podManagementPolicy", field.ErrorTypeInvalid, ""}})
	})
	t.Run("StatefulSet update of serviceName forbidden", func(t *testing.T) {
		old := stored(t, "apps", "StatefulSet", &appsv1.StatefulSet{Spec: appsv1.StatefulSetSpec{Selector: sel, Template: *tmpl.DeepCopy(), ServiceName: "a"}})
		cur := old.DeepCopy()
		cur.Spec.Replicas = ptrTo(int32(3))
		expectErrors(t, validateUpdate(t, "apps", "StatefulSet", cur.DeepCopy(), old.DeepCopy()), nil)
		cur.Spec.ServiceName = "b"
		expectErrors(t, validateUpdate(t, "apps", "StatefulSet", cur, old), []want{{"spec", field.ErrorTypeForbidden, "updates to statefulset spec for fields other than"}})
	})
	t.Run("DaemonSet both zero", func(t *testing.T) {
		z := intstr.FromInt32(0)
		ds := &appsv1.DaemonSet{Spec: appsv1.DaemonSetSpec{Selector: sel, Template: *tmpl.DeepCopy(),
			UpdateStrategy: appsv1.DaemonSetUpdateStrategy{Type: appsv1.RollingUpdateDaemonSetStrategyType,
				RollingUpdate: &appsv1.RollingUpdateDaemonSet{MaxUnavailable: &z, MaxSurge: &z}}}}
		expectErrors(t, validateCreate(t, "apps", "DaemonSet", ds), []want{{"spec.updateStrategy.rollingUpdate.maxUnavailable", field.ErrorTypeInvalid, "may not be 0 when `maxSurge` is 0"}})
	})
	t.Run("RC selector mismatch", func(t *testing.T) {
		rc := &corev1.ReplicationController{Spec: corev1.ReplicationControllerSpec{Selector: map[string]string{"app": "x"}, Template: tmpl.DeepCopy()}}
		expectErrors(t, validateCreate(t, "", "ReplicationController", rc), []want{{"spec.template.metadata.labels", field.ErrorTypeInvalid, "`selector` does not match template `labels`"}})
	})
}

func goodJob() *batchv1.Job {
	return &batchv1.Job{ObjectMeta: metav1.ObjectMeta{Name: "j", UID: "uid-1"}, Spec: batchv1.JobSpec{
		Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{RestartPolicy: corev1.RestartPolicyNever,
			Containers: []corev1.Container{{Name: "c", Image: "busybox"}}}}}}
}

func TestJobValidation(t *testing.T) {
	cases := []struct {
		name   string
		mutate func(*batchv1.Job)
		want   []want
	}{
		{"valid", func(*batchv1.Job) {}, nil},
		{"restartPolicy Always", func(j *batchv1.Job) { j.Spec.Template.Spec.RestartPolicy = corev1.RestartPolicyAlways },
			[]want{{"spec.template.spec.restartPolicy", field.ErrorTypeNotSupported, ""}}},
		{"negative parallelism", func(j *batchv1.Job) { j.Spec.Parallelism = ptrTo(int32(-1)) },
			[]want{{"spec.parallelism", field.ErrorTypeInvalid, ""}}},
		{"user selector without manualSelector", func(j *batchv1.Job) {
			j.Spec.Selector = &metav1.LabelSelector{MatchLabels: map[string]string{"job-name": "j"}}
		}, []want{{"spec.selector", field.ErrorTypeInvalid, "`selector` not auto-generated"}}},
		{"manual selector required", func(j *batchv1.Job) { j.Spec.ManualSelector = ptrTo(true) },
			[]want{{"spec.selector", field.ErrorTypeRequired, ""}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			j := goodJob()
			tc.mutate(j)
			expectErrors(t, validateCreate(t, "batch", "Job", j), tc.want)
		})
	}
	t.Run("template immutable, parallelism mutable", func(t *testing.T) {
		old := stored(t, "batch", "Job", goodJob())
		cur := old.DeepCopy()
		cur.Spec.Parallelism = ptrTo(int32(4))
		expectErrors(t, validateUpdate(t, "batch", "Job", cur.DeepCopy(), old.DeepCopy()), nil)
		cur.Spec.Template.Spec.Containers[0].Image = "busybox:2"
		expectErrors(t, validateUpdate(t, "batch", "Job", cur, old), []want{{"spec.template", field.ErrorTypeInvalid, "field is immutable"}})
	})
	t.Run("suspended unstarted job may change node selector", func(t *testing.T) {
		old := goodJob()
		old.Spec.Suspend = ptrTo(true)
		old = stored(t, "batch", "Job", old)
		cur := old.DeepCopy()
		cur.Spec.Template.Spec.NodeSelector = map[string]string{"zone": "a"}
		expectErrors(t, validateUpdate(t, "batch", "Job", cur, old), nil)
	})
}

func TestCronJobValidation(t *testing.T) {
	good := func(schedule string) *batchv1.CronJob {
		return &batchv1.CronJob{ObjectMeta: metav1.ObjectMeta{Name: "cj"}, Spec: batchv1.CronJobSpec{
			Schedule: schedule,
			JobTemplate: batchv1.JobTemplateSpec{Spec: batchv1.JobSpec{Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{
				RestartPolicy: corev1.RestartPolicyOnFailure, Containers: []corev1.Container{{Name: "c", Image: "busybox"}}}}}},
		}}
	}
	for _, s := range []string{"*/5 * * * *", "0 0 1 1 *", "@hourly", "@daily", "@weekly", "@monthly", "@yearly", "@annually", "@midnight",
		"0 9-17/2 * * MON-FRI", "15,45 * * jan,jul sun", "0 0 ? * *", "5 4 * * 7"} {
		t.Run("valid "+s, func(t *testing.T) {
			expectErrors(t, validateCreate(t, "batch", "CronJob", good(s)), nil)
		})
	}
	for _, s := range []string{"* * * *", "61 * * * *", "*/0 * * * *", "0 0 32 * *", "0 0 * foo *", "5-1 * * * *", "@often", "* * * * * *"} {
		t.Run("invalid "+s, func(t *testing.T) {
			expectErrors(t, validateCreate(t, "batch", "CronJob", good(s)), []want{{"spec.schedule", field.ErrorTypeInvalid, ""}})
		})
	}
	t.Run("TZ in schedule", func(t *testing.T) {
		expectErrors(t, validateCreate(t, "batch", "CronJob", good("TZ=UTC 0 * * * *")),
			[]want{{"spec.schedule", field.ErrorTypeInvalid, "cannot use TZ or CRON_TZ in schedule"}})
	})
	t.Run("bad concurrencyPolicy and template", func(t *testing.T) {
		cj := good("@daily")
		cj.Spec.ConcurrencyPolicy = "Sometimes"
		cj.Spec.JobTemplate.Spec.Template.Spec.RestartPolicy = corev1.RestartPolicyAlways
		expectErrors(t, validateCreate(t, "batch", "CronJob", cj), []want{
			{"spec.concurrencyPolicy", field.ErrorTypeNotSupported, ""},
			{"spec.jobTemplate.spec.template.spec.restartPolicy", field.ErrorTypeNotSupported, ""},
		})
	})
	t.Run("name too long", func(t *testing.T) {
		cj := good("@daily")
		cj.Name = strings.Repeat("a", 53)
		expectErrors(t, validateCreate(t, "batch", "CronJob", cj), []want{{"metadata.name", field.ErrorTypeInvalid, "must be no more than 52 characters"}})
	})
}

func TestServiceValidation(t *testing.T) {
	good := func() *corev1.Service {
		return &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "web"}, Spec: corev1.ServiceSpec{
			Selector: map[string]string{"app": "web"},
			Ports:    []corev1.ServicePort{{Name: "http", Port: 80}, {Name: "https", Port: 443, TargetPort: intstr.FromString("https")}}}}
	}
	cases := []struct {
		name   string
		mutate func(*corev1.Service)
		want   []want
	}{
		{"valid", func(*corev1.Service) {}, nil},
		{"name not DNS-1035", func(s *corev1.Service) { s.Name = "1web" },
			[]want{{"metadata.name", field.ErrorTypeInvalid, "DNS-1035 label"}}},
		{"ports required", func(s *corev1.Service) { s.Spec.Ports = nil },
			[]want{{"spec.ports", field.ErrorTypeRequired, ""}}},
		{"headless needs no ports", func(s *corev1.Service) { s.Spec.Ports = nil; s.Spec.ClusterIP = "None" }, nil},
		{"port name required with several ports", func(s *corev1.Service) { s.Spec.Ports[1].Name = "" },
			[]want{{"spec.ports[1].name", field.ErrorTypeRequired, ""}}},
		{"duplicate port name", func(s *corev1.Service) { s.Spec.Ports[1].Name = "http" },
			[]want{{"spec.ports[1].name", field.ErrorTypeDuplicate, ""}}},
		{"port out of range", func(s *corev1.Service) { s.Spec.Ports[0].Port = 0 },
			// targetPort defaults to port, so it is reported too, as upstream.
			[]want{{"spec.ports[0].port", field.ErrorTypeInvalid, "between 1 and 65535"}, {"spec.ports[0].targetPort", field.ErrorTypeInvalid, "between 1 and 65535"}}},
		{"bad targetPort name", func(s *corev1.Service) { s.Spec.Ports[1].TargetPort = intstr.FromString("no_good") },
			[]want{{"spec.ports[1].targetPort", field.ErrorTypeInvalid, ""}}},
		{"bad type", func(s *corev1.Service) { s.Spec.Type = "Magic" },
			[]want{{"spec.type", field.ErrorTypeNotSupported, ""}}},
		{"nodePort on ClusterIP", func(s *corev1.Service) { s.Spec.Ports[0].NodePort = 30080 },
			[]want{{"spec.ports[0].nodePort", field.ErrorTypeForbidden, "may not be used when `type` is 'ClusterIP'"}}},
		{"bad sessionAffinity", func(s *corev1.Service) { s.Spec.SessionAffinity = "Sticky" },
			[]want{{"spec.sessionAffinity", field.ErrorTypeNotSupported, ""}}},
		{"externalName required", func(s *corev1.Service) { s.Spec.Type = corev1.ServiceTypeExternalName },
			[]want{{"spec.externalName", field.ErrorTypeRequired, ""}}},
		{"externalName valid", func(s *corev1.Service) {
			s.Spec.Type = corev1.ServiceTypeExternalName
			s.Spec.ExternalName = "db.example.com."
		}, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := good()
			tc.mutate(s)
			expectErrors(t, validateCreate(t, "", "Service", s), tc.want)
		})
	}
	t.Run("clusterIP immutable", func(t *testing.T) {
		old := good()
		old.Spec.ClusterIP = "10.43.0.10"
		old = stored(t, "", "Service", old)
		cur := old.DeepCopy()
		cur.Spec.ClusterIP = "10.43.0.11"
		expectErrors(t, validateUpdate(t, "", "Service", cur, old), []want{{"spec.clusterIPs[0]", field.ErrorTypeInvalid, "field is immutable"}})
		cur.Spec.Type = corev1.ServiceTypeExternalName
		cur.Spec.ClusterIP = ""
		cur.Spec.ExternalName = "x.example.com"
		expectErrors(t, validateUpdate(t, "", "Service", cur, old), nil)
	})
}

func TestConfigMapAndSecretValidation(t *testing.T) {
	t.Run("configmap keys", func(t *testing.T) {
		cm := &corev1.ConfigMap{Data: map[string]string{"good.key": "1", "bad key": "2", "dup": "x"}, BinaryData: map[string][]byte{"dup": nil}}
		expectErrors(t, validateCreate(t, "", "ConfigMap", cm), []want{
			{"data[bad key]", field.ErrorTypeInvalid, ""},
			{"data[dup]", field.ErrorTypeInvalid, "duplicate of key present in binaryData"},
		})
	})
	t.Run("configmap too big", func(t *testing.T) {
		cm := &corev1.ConfigMap{Data: map[string]string{"a": strings.Repeat("x", maxSecretSize+1)}}
		expectErrors(t, validateCreate(t, "", "ConfigMap", cm), []want{{"[]", field.ErrorTypeTooLong, "may not be more than 1048576 bytes"}})
	})
	t.Run("immutable configmap", func(t *testing.T) {
		old := stored(t, "", "ConfigMap", &corev1.ConfigMap{Data: map[string]string{"a": "1"}, Immutable: ptrTo(true)})
		cur := old.DeepCopy()
		cur.Data["a"] = "2"
		expectErrors(t, validateUpdate(t, "", "ConfigMap", cur, old), []want{{"data", field.ErrorTypeForbidden, "field is immutable when `immutable` is set"}})
	})
	t.Run("secret type immutable", func(t *testing.T) {
		old := stored(t, "", "Secret", &corev1.Secret{Data: map[string][]byte{"a": []byte("1")}})
		cur := old.DeepCopy()
		cur.Type = corev1.SecretTypeBasicAuth
		cur.Data["username"] = []byte("u")
		expectErrors(t, validateUpdate(t, "", "Secret", cur, old), []want{{"type", field.ErrorTypeInvalid, "field is immutable"}})
	})
	t.Run("tls secret needs keys", func(t *testing.T) {
		s := &corev1.Secret{Type: corev1.SecretTypeTLS, Data: map[string][]byte{"tls.crt": []byte("x")}}
		expectErrors(t, validateCreate(t, "", "Secret", s), []want{{"data[tls.key]", field.ErrorTypeRequired, ""}})
	})
	t.Run("immutable secret", func(t *testing.T) {
		old := stored(t, "", "Secret", &corev1.Secret{Data: map[string][]byte{"a": []byte("1")}, Immutable: ptrTo(true)})
		cur := old.DeepCopy()
		cur.Immutable = ptrTo(false)
		expectErrors(t, validateUpdate(t, "", "Secret", cur, old), []want{{"immutable", field.ErrorTypeForbidden, "field is immutable when `immutable` is set"}})
	})
}

func TestNamespaceAndStorageValidation(t *testing.T) {
	t.Run("namespace name is a DNS label", func(t *testing.T) {
		expectErrors(t, validateCreate(t, "", "Namespace", &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "a.b"}}),
			[]want{{"metadata.name", field.ErrorTypeInvalid, "must not contain dots"}})
		expectErrors(t, validateCreate(t, "", "Namespace", &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "team-a"}}), nil)
	})
	t.Run("PV", func(t *testing.T) {
		pv := &corev1.PersistentVolume{}
		expectErrors(t, validateCreate(t, "", "PersistentVolume", pv), []want{
			{"spec.accessModes", field.ErrorTypeRequired, ""},
			{"spec.capacity", field.ErrorTypeRequired, ""},
			{"spec", field.ErrorTypeRequired, "must specify a volume type"},
		})
		ok := &corev1.PersistentVolume{Spec: corev1.PersistentVolumeSpec{
			AccessModes:            []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			Capacity:               corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")},
			PersistentVolumeSource: corev1.PersistentVolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: "/data"}}}}
		expectErrors(t, validateCreate(t, "", "PersistentVolume", ok), nil)
	})
	t.Run("PVC", func(t *testing.T) {
		pvc := &corev1.PersistentVolumeClaim{Spec: corev1.PersistentVolumeClaimSpec{AccessModes: []corev1.PersistentVolumeAccessMode{"ReadSometimes"}}}
		expectErrors(t, validateCreate(t, "", "PersistentVolumeClaim", pvc), []want{
			{"spec.accessModes", field.ErrorTypeNotSupported, ""},
			{"spec.resources[storage]", field.ErrorTypeRequired, ""},
		})
	})
	t.Run("PVC update", func(t *testing.T) {
		old := &corev1.PersistentVolumeClaim{Spec: corev1.PersistentVolumeClaimSpec{
			AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			Resources:   corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")}}}}
		old = stored(t, "", "PersistentVolumeClaim", old)
		bound := old.DeepCopy()
		bound.Spec.VolumeName = "pv-1" // the binder may set it once
		expectErrors(t, validateUpdate(t, "", "PersistentVolumeClaim", bound, old.DeepCopy()), nil)
		grown := old.DeepCopy()
		grown.Spec.Resources.Requests[corev1.ResourceStorage] = resource.MustParse("2Gi")
		expectErrors(t, validateUpdate(t, "", "PersistentVolumeClaim", grown.DeepCopy(), old.DeepCopy()),
			[]want{{"spec", field.ErrorTypeForbidden, "spec is immutable after creation"}})
		boundOld := old.DeepCopy()
		boundOld.Status.Phase = corev1.ClaimBound
		expectErrors(t, validateUpdate(t, "", "PersistentVolumeClaim", grown, boundOld), nil)
	})
	t.Run("StorageClass", func(t *testing.T) {
		sc := &storagev1.StorageClass{VolumeBindingMode: ptrTo(storagev1.VolumeBindingMode("Later"))}
		expectErrors(t, validateCreate(t, "storage.k8s.io", "StorageClass", sc), []want{
			{"provisioner", field.ErrorTypeRequired, ""},
			{"volumeBindingMode", field.ErrorTypeNotSupported, ""},
		})
		old := stored(t, "storage.k8s.io", "StorageClass", &storagev1.StorageClass{Provisioner: "example.com/disk", Parameters: map[string]string{"a": "1"}})
		cur := old.DeepCopy()
		cur.Parameters["a"] = "2"
		cur.Provisioner = "example.com/other"
		expectErrors(t, validateUpdate(t, "storage.k8s.io", "StorageClass", cur, old), []want{
			{"parameters", field.ErrorTypeForbidden, "updates to parameters are forbidden."},
			{"provisioner", field.ErrorTypeForbidden, "updates to provisioner are forbidden."},
		})
	})
}

func TestIngressValidation(t *testing.T) {
	prefix := networkingv1.PathTypePrefix
	good := func() *networkingv1.Ingress {
		return &networkingv1.Ingress{Spec: networkingv1.IngressSpec{Rules: []networkingv1.IngressRule{{
			Host: "example.com",
			IngressRuleValue: networkingv1.IngressRuleValue{HTTP: &networkingv1.HTTPIngressRuleValue{Paths: []networkingv1.HTTPIngressPath{{
				Path: "/", PathType: &prefix,
				Backend: networkingv1.IngressBackend{Service: &networkingv1.IngressServiceBackend{Name: "web", Port: networkingv1.ServiceBackendPort{Number: 80}}},
			}}}},
		}}}}
	}
	cases := []struct {
		name   string
		mutate func(*networkingv1.Ingress)
		want   []want
	}{
		{"valid", func(*networkingv1.Ingress) {}, nil},
		{"relative path", func(i *networkingv1.Ingress) { i.Spec.Rules[0].HTTP.Paths[0].Path = "api" },
			[]want{{"spec.rules[0].http.paths[0].path", field.ErrorTypeInvalid, "must be an absolute path"}}},
		{"pathType required", func(i *networkingv1.Ingress) { i.Spec.Rules[0].HTTP.Paths[0].PathType = nil },
			[]want{{"spec.rules[0].http.paths[0].pathType", field.ErrorTypeRequired, "pathType must be specified"}}},
		{"bad pathType", func(i *networkingv1.Ingress) {
			pt := networkingv1.PathType("Regex")
			i.Spec.Rules[0].HTTP.Paths[0].PathType = &pt
		}, []want{{"spec.rules[0].http.paths[0].pathType", field.ErrorTypeNotSupported, ""}}},
		{"port name and number", func(i *networkingv1.Ingress) { i.Spec.Rules[0].HTTP.Paths[0].Backend.Service.Port.Name = "http" },
			[]want{{"spec.rules[0].http.paths[0].backend.service.port", field.ErrorTypeInvalid, "cannot set both port name & port number"}}},
		{"both backends", func(i *networkingv1.Ingress) {
			i.Spec.Rules[0].HTTP.Paths[0].Backend.Resource = &corev1.TypedLocalObjectReference{Kind: "Bucket", Name: "b"}
		}, []want{{"spec.rules[0].http.paths[0].backend", field.ErrorTypeInvalid, "cannot set both resource and service backends"}}},
		{"nothing", func(i *networkingv1.Ingress) { i.Spec.Rules = nil },
			[]want{{"spec", field.ErrorTypeInvalid, "either `defaultBackend` or `rules` must be specified"}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ing := good()
			tc.mutate(ing)
			expectErrors(t, validateCreate(t, "networking.k8s.io", "Ingress", ing), tc.want)
		})
	}
	t.Run("IngressClass", func(t *testing.T) {
		expectErrors(t, validateCreate(t, "networking.k8s.io", "IngressClass", &networkingv1.IngressClass{}),
			[]want{{"spec.controller", field.ErrorTypeRequired, ""}})
		old := &networkingv1.IngressClass{Spec: networkingv1.IngressClassSpec{Controller: "example.com/ingress"}}
		cur := old.DeepCopy()
		cur.Spec.Controller = "example.com/other"
		expectErrors(t, validateUpdate(t, "networking.k8s.io", "IngressClass", cur, old),
			[]want{{"spec.controller", field.ErrorTypeInvalid, "field is immutable"}})
	})
}

func TestPriorityClassValidation(t *testing.T) {
	expectErrors(t, validateCreate(t, "scheduling.k8s.io", "PriorityClass", &schedulingv1.PriorityClass{ObjectMeta: metav1.ObjectMeta{Name: "high"}, Value: 2000000000}),
		[]want{{"value", field.ErrorTypeForbidden, "maximum allowed value of a user defined priority is 1000000000"}})
	expectErrors(t, validateCreate(t, "scheduling.k8s.io", "PriorityClass", &schedulingv1.PriorityClass{ObjectMeta: metav1.ObjectMeta{Name: "system-mine"}, Value: 10}),
		[]want{{"metadata.name", field.ErrorTypeForbidden, "'system-' prefix are reserved"}})
	expectErrors(t, validateCreate(t, "scheduling.k8s.io", "PriorityClass", &schedulingv1.PriorityClass{ObjectMeta: metav1.ObjectMeta{Name: "system-node-critical"}, Value: 2000001000}), nil)
	old := stored(t, "scheduling.k8s.io", "PriorityClass", &schedulingv1.PriorityClass{ObjectMeta: metav1.ObjectMeta{Name: "high"}, Value: 100})
	cur := old.DeepCopy()
	cur.Value = 200
	expectErrors(t, validateUpdate(t, "scheduling.k8s.io", "PriorityClass", cur, old), []want{{"value", field.ErrorTypeForbidden, "may not be changed in an update."}})
}

func TestRBACValidation(t *testing.T) {
	expectErrors(t, validateCreate(t, "rbac.authorization.k8s.io", "Role", &rbacv1.Role{Rules: []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"pods"}}}}),
		[]want{{"rules[0].verbs", field.ErrorTypeRequired, "verbs must contain at least one value"}})
	rb := &rbacv1.RoleBinding{RoleRef: rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Group", Name: "r"},
		Subjects: []rbacv1.Subject{{Kind: "User", Name: "alice"}}}
	expectErrors(t, validateCreate(t, "rbac.authorization.k8s.io", "RoleBinding", rb), []want{{"roleRef.kind", field.ErrorTypeNotSupported, ""}})
	crb := &rbacv1.ClusterRoleBinding{RoleRef: rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: "r"},
		Subjects: []rbacv1.Subject{{Kind: "ServiceAccount", Name: "sa"}}}
	expectErrors(t, validateCreate(t, "rbac.authorization.k8s.io", "ClusterRoleBinding", crb), []want{
		{"roleRef.kind", field.ErrorTypeNotSupported, ""},
		{"subjects[0].namespace", field.ErrorTypeRequired, ""},
	})
	old := stored(t, "rbac.authorization.k8s.io", "RoleBinding", &rbacv1.RoleBinding{RoleRef: rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: "a"}})
	cur := old.DeepCopy()
	cur.RoleRef.Name = "b"
	expectErrors(t, validateUpdate(t, "rbac.authorization.k8s.io", "RoleBinding", cur, old), []want{{"roleRef", field.ErrorTypeInvalid, "cannot change roleRef"}})
}

func TestWebhookValidation(t *testing.T) {
	none := admissionregistrationv1.SideEffectClassNone
	url := "https://hooks.example.com/validate"
	good := admissionregistrationv1.ValidatingWebhook{Name: "check.example.com", SideEffects: &none,
		AdmissionReviewVersions: []string{"v1"}, ClientConfig: admissionregistrationv1.WebhookClientConfig{URL: &url}}
	cfg := &admissionregistrationv1.ValidatingWebhookConfiguration{Webhooks: []admissionregistrationv1.ValidatingWebhook{good}}
	expectErrors(t, validateCreate(t, "admissionregistration.k8s.io", "ValidatingWebhookConfiguration", cfg), nil)

	bad := good
	bad.Name = "check"
	bad.SideEffects = nil
	bad.AdmissionReviewVersions = nil
	bad.ClientConfig.Service = &admissionregistrationv1.ServiceReference{Name: "s", Namespace: "n"}
	cfg = &admissionregistrationv1.ValidatingWebhookConfiguration{Webhooks: []admissionregistrationv1.ValidatingWebhook{bad, good, good}}
	expectErrors(t, validateCreate(t, "admissionregistration.k8s.io", "ValidatingWebhookConfiguration", cfg), []want{
		{"webhooks[0].name", field.ErrorTypeInvalid, "at least three segments"},
		{"webhooks[0].clientConfig", field.ErrorTypeRequired, "exactly one of url or service is required"},
		{"webhooks[0].sideEffects", field.ErrorTypeRequired, ""},
		{"webhooks[0].admissionReviewVersions", field.ErrorTypeRequired, ""},
		{"webhooks[2].name", field.ErrorTypeDuplicate, ""},
	})
}
