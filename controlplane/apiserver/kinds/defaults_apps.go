package kinds

import (
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// Defaulting of apps/v1 and batch/v1 kinds (upstream's
// pkg/apis/apps/v1/defaults.go and pkg/apis/batch/v1/defaults.go).

func init() {
	defaulters[gk("apps", "Deployment")] = func(obj runtime.Object) {
		d := obj.(*appsv1.Deployment)
		if d.Spec.Replicas == nil {
			d.Spec.Replicas = ptrTo(int32(1))
		}
		st := &d.Spec.Strategy
		if st.Type == "" {
			st.Type = appsv1.RollingUpdateDeploymentStrategyType
		}
		if st.Type == appsv1.RollingUpdateDeploymentStrategyType {
			if st.RollingUpdate == nil {
				st.RollingUpdate = &appsv1.RollingUpdateDeployment{}
			}
			if st.RollingUpdate.MaxUnavailable == nil {
				st.RollingUpdate.MaxUnavailable = percent("25%")
			}
			if st.RollingUpdate.MaxSurge == nil {
				st.RollingUpdate.MaxSurge = percent("25%")
			}
		}
		if d.Spec.RevisionHistoryLimit == nil {
			d.Spec.RevisionHistoryLimit = ptrTo(int32(10))
		}
		if d.Spec.ProgressDeadlineSeconds == nil {
			d.Spec.ProgressDeadlineSeconds = ptrTo(int32(600))
		}
		defaultPodTemplate(&d.Spec.Template)
	}
	defaulters[gk("apps", "ReplicaSet")] = func(obj runtime.Object) {
		rs := obj.(*appsv1.ReplicaSet)
		if rs.Spec.Replicas == nil {
			rs.Spec.Replicas = ptrTo(int32(1))
		}
		defaultPodTemplate(&rs.Spec.Template)
	}
	defaulters[gk("apps", "StatefulSet")] = func(obj runtime.Object) {
		ss := obj.(*appsv1.StatefulSet)
		if ss.Spec.PodManagementPolicy == "" {
			ss.Spec.PodManagementPolicy = appsv1.OrderedReadyPodManagement
		}
		if ss.Spec.UpdateStrategy.Type == "" {
			ss.Spec.UpdateStrategy.Type = appsv1.RollingUpdateStatefulSetStrategyType
		}
		if ss.Spec.UpdateStrategy.Type == appsv1.RollingUpdateStatefulSetStrategyType {
			if ss.Spec.UpdateStrategy.RollingUpdate == nil {
				ss.Spec.UpdateStrategy.RollingUpdate = &appsv1.RollingUpdateStatefulSetStrategy{}
			}
			if ss.Spec.UpdateStrategy.RollingUpdate.Partition == nil {
				ss.Spec.UpdateStrategy.RollingUpdate.Partition = ptrTo(int32(0))
			}
		}
		if ss.Spec.PersistentVolumeClaimRetentionPolicy == nil {
			ss.Spec.PersistentVolumeClaimRetentionPolicy = &appsv1.StatefulSetPersistentVolumeClaimRetentionPolicy{}
		}
		if p := ss.Spec.PersistentVolumeClaimRetentionPolicy; p.WhenDeleted == "" {
			p.WhenDeleted = appsv1.RetainPersistentVolumeClaimRetentionPolicyType
		}
		if p := ss.Spec.PersistentVolumeClaimRetentionPolicy; p.WhenScaled == "" {
			p.WhenScaled = appsv1.RetainPersistentVolumeClaimRetentionPolicyType
		}
		if ss.Spec.Replicas == nil {
			ss.Spec.Replicas = ptrTo(int32(1))
		}
		if ss.Spec.RevisionHistoryLimit == nil {
			ss.Spec.RevisionHistoryLimit = ptrTo(int32(10))
		}
		for i := range ss.Spec.VolumeClaimTemplates {
			pvc := &ss.Spec.VolumeClaimTemplates[i]
			defaultPVCSpec(&pvc.Spec)
			if pvc.Status.Phase == "" {
				pvc.Status.Phase = corev1.ClaimPending
			}
		}
		defaultPodTemplate(&ss.Spec.Template)
	}
	defaulters[gk("apps", "DaemonSet")] = func(obj runtime.Object) {
		ds := obj.(*appsv1.DaemonSet)
		st := &ds.Spec.UpdateStrategy
		if st.Type == "" {
			st.Type = appsv1.RollingUpdateDaemonSetStrategyType
		}
		if st.Type == appsv1.RollingUpdateDaemonSetStrategyType {
			if st.RollingUpdate == nil {
				st.RollingUpdate = &appsv1.RollingUpdateDaemonSet{}
			}
			if st.RollingUpdate.MaxUnavailable == nil {
				v := intstr.FromInt32(1)
				st.RollingUpdate.MaxUnavailable = &v
			}
			if st.RollingUpdate.MaxSurge == nil {
				v := intstr.FromInt32(0)
				st.RollingUpdate.MaxSurge = &v
			}
		}
		if ds.Spec.RevisionHistoryLimit == nil {
			ds.Spec.RevisionHistoryLimit = ptrTo(int32(10))
		}
		defaultPodTemplate(&ds.Spec.Template)
	}
	defaulters[gk("batch", "Job")] = func(obj runtime.Object) { defaultJob(obj.(*batchv1.Job)) }
	defaulters[gk("batch", "CronJob")] = func(obj runtime.Object) {
		cj := obj.(*batchv1.CronJob)
		if cj.Spec.ConcurrencyPolicy == "" {
			cj.Spec.ConcurrencyPolicy = batchv1.AllowConcurrent
		}
		if cj.Spec.Suspend == nil {
			cj.Spec.Suspend = ptrTo(false)
		}
		if cj.Spec.SuccessfulJobsHistoryLimit == nil {
			cj.Spec.SuccessfulJobsHistoryLimit = ptrTo(int32(3))
		}
		if cj.Spec.FailedJobsHistoryLimit == nil {
			cj.Spec.FailedJobsHistoryLimit = ptrTo(int32(1))
		}
		defaultPodTemplate(&cj.Spec.JobTemplate.Spec.Template)
	}
}

func percent(s string) *intstr.IntOrString {
	v := intstr.FromString(s)
	return &v
}

// Labels the job registry puts on a job's pods so its generated selector
// matches them (upstream's generateSelector).
const (
	jobControllerUIDLabel       = "batch.kubernetes.io/controller-uid"
	jobNameLabel                = "batch.kubernetes.io/job-name"
	legacyJobControllerUIDLabel = "controller-uid"
	legacyJobNameLabel          = "job-name"
)

func defaultJob(j *batchv1.Job) {
	s := &j.Spec
	// Generated selector: the UID is known here (set before defaulting on
	// create), as in upstream's strategy, which runs before validation.
	if (s.ManualSelector == nil || !*s.ManualSelector) && j.UID != "" {
		if s.Template.Labels == nil {
			s.Template.Labels = map[string]string{}
		}
		uid := string(j.UID)
		s.Template.Labels[jobControllerUIDLabel] = uid
		s.Template.Labels[jobNameLabel] = j.Name
		s.Template.Labels[legacyJobControllerUIDLabel] = uid
		s.Template.Labels[legacyJobNameLabel] = j.Name
		if s.Selector == nil {
			s.Selector = &metav1.LabelSelector{MatchLabels: map[string]string{jobControllerUIDLabel: uid}}
		}
	}
	if len(j.Labels) == 0 && len(s.Template.Labels) > 0 {
		j.Labels = copyStringMap(s.Template.Labels)
	}
	if s.Completions == nil && s.Parallelism == nil {
		s.Completions = ptrTo(int32(1))
		s.Parallelism = ptrTo(int32(1))
	}
	if s.Parallelism == nil {
		s.Parallelism = ptrTo(int32(1))
	}
	if s.BackoffLimit == nil {
		if s.BackoffLimitPerIndex != nil {
			s.BackoffLimit = ptrTo(int32(2147483647))
		} else {
			s.BackoffLimit = ptrTo(int32(6))
		}
	}
	if s.CompletionMode == nil {
		s.CompletionMode = ptrTo(batchv1.NonIndexedCompletion)
	}
	if s.Suspend == nil {
		s.Suspend = ptrTo(false)
	}
	if p := s.PodFailurePolicy; p != nil {
		for i := range p.Rules {
			for k := range p.Rules[i].OnPodConditions {
				if p.Rules[i].OnPodConditions[k].Status == "" {
					p.Rules[i].OnPodConditions[k].Status = corev1.ConditionTrue
				}
			}
		}
	}
	if s.PodReplacementPolicy == nil {
		if s.PodFailurePolicy != nil {
			s.PodReplacementPolicy = ptrTo(batchv1.Failed)
		} else {
			s.PodReplacementPolicy = ptrTo(batchv1.TerminatingOrFailed)
		}
	}
	defaultPodTemplate(&s.Template)
}
