package kinds

import (
	"fmt"

	batchv1 "k8s.io/api/batch/v1"
	batchv1beta1 "k8s.io/api/batch/v1beta1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/duration"
)

func init() {
	tblRegister("batch", "Job", []metav1.TableColumnDefinition{
		tblName(),
		tblCol("Status", "string", "Status of the job."),
		tblCol("Completions", "string", batchv1.JobStatus{}.SwaggerDoc()["succeeded"]),
		tblCol("Duration", "string", "Time required to complete the job."),
		tblAge(),
		tblWide("Containers", "string", tblContainersDesc),
		tblWide("Images", "string", tblImagesDesc),
		tblWide("Selector", "string", batchv1.JobSpec{}.SwaggerDoc()["selector"]),
	}, jobRow)

	tblRegister("batch", "CronJob", []metav1.TableColumnDefinition{
		tblName(),
		tblCol("Schedule", "string", batchv1beta1.CronJobSpec{}.SwaggerDoc()["schedule"]),
		tblCol("Timezone", "string", batchv1beta1.CronJobSpec{}.SwaggerDoc()["timeZone"]),
		tblCol("Suspend", "boolean", batchv1beta1.CronJobSpec{}.SwaggerDoc()["suspend"]),
		tblCol("Active", "integer", batchv1beta1.CronJobStatus{}.SwaggerDoc()["active"]),
		tblCol("Last Schedule", "string", batchv1beta1.CronJobStatus{}.SwaggerDoc()["lastScheduleTime"]),
		tblAge(),
		tblWide("Containers", "string", tblContainersDesc),
		tblWide("Images", "string", tblImagesDesc),
		tblWide("Selector", "string", batchv1.JobSpec{}.SwaggerDoc()["selector"]),
	}, func(o *batchv1.CronJob) []interface{} {
		last := "<none>"
		if o.Status.LastScheduleTime != nil {
			last = tblSince(*o.Status.LastScheduleTime)
		}
		tz := "<none>"
		if o.Spec.TimeZone != nil {
			tz = *o.Spec.TimeZone
		}
		names, images := tblContainers(o.Spec.JobTemplate.Spec.Template.Spec.Containers)
		return []interface{}{o.Name, o.Spec.Schedule, tz, tblBoolPtr(o.Spec.Suspend), int64(len(o.Status.Active)), last,
			tblSince(o.CreationTimestamp), names, images, metav1.FormatLabelSelector(o.Spec.JobTemplate.Spec.Selector)}
	})
}

// jobCondition reports whether the first condition of type t is True.
func jobCondition(conds []batchv1.JobCondition, t batchv1.JobConditionType) bool {
	for _, c := range conds {
		if c.Type == t {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// jobStatus is kubectl's STATUS column for a Job.
func jobStatus(j *batchv1.Job) string {
	conds := j.Status.Conditions
	switch {
	case jobCondition(conds, batchv1.JobComplete):
		return "Complete"
	case jobCondition(conds, batchv1.JobFailed):
		return "Failed"
	case j.DeletionTimestamp != nil:
		return "Terminating"
	case jobCondition(conds, batchv1.JobSuspended):
		return "Suspended"
	case jobCondition(conds, batchv1.JobFailureTarget):
		return "FailureTarget"
	}
	return "Running"
}

func jobRow(j *batchv1.Job) []interface{} {
	var completions string
	switch {
	case j.Spec.Completions != nil:
		completions = fmt.Sprintf("%d/%d", j.Status.Succeeded, *j.Spec.Completions)
	case deref(j.Spec.Parallelism, 0) > 1:
		completions = fmt.Sprintf("%d/1 of %d", j.Status.Succeeded, *j.Spec.Parallelism)
	default:
		completions = fmt.Sprintf("%d/1", j.Status.Succeeded)
	}
	var took string
	switch {
	case j.Status.StartTime == nil:
	case j.Status.CompletionTime == nil:
		took = duration.HumanDuration(tblNow().Sub(j.Status.StartTime.Time))
	default:
		took = duration.HumanDuration(j.Status.CompletionTime.Sub(j.Status.StartTime.Time))
	}
	names, images := tblContainers(j.Spec.Template.Spec.Containers)
	return []interface{}{j.Name, jobStatus(j), completions, took, tblSince(j.CreationTimestamp),
		names, images, metav1.FormatLabelSelector(j.Spec.Selector)}
}
