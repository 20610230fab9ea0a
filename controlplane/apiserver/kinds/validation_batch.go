package kinds

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apimachineryvalidation "k8s.io/apimachinery/pkg/api/validation"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	metav1validation "k8s.io/apimachinery/pkg/apis/meta/v1/validation"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// Validation of batch/v1 Jobs and CronJobs (upstream's
// pkg/apis/batch/validation), with a small cron expression parser.

func init() {
	validators[gk("batch", "Job")] = func(_ context.Context, obj runtime.Object) field.ErrorList {
		j := obj.(*batchv1.Job)
		spec := field.NewPath("spec")
		errs := validateJobSpec(&j.Spec, spec)
		if j.Spec.ManualSelector == nil || !*j.Spec.ManualSelector {
			errs = append(errs, validateGeneratedSelector(j)...)
		}
		return errs
	}
	updateValidators[gk("batch", "Job")] = func(_ context.Context, obj, old runtime.Object) field.ErrorList {
		return validateJobUpdate(obj.(*batchv1.Job), old.(*batchv1.Job))
	}
	validators[gk("batch", "CronJob")] = func(_ context.Context, obj runtime.Object) field.ErrorList {
		cj := obj.(*batchv1.CronJob)
		var errs field.ErrorList
		if len(cj.Name) > 52 {
			errs = append(errs, field.Invalid(field.NewPath("metadata", "name"), cj.Name, "must be no more than 52 characters"))
		}
		return append(errs, validateCronJobSpec(&cj.Spec, field.NewPath("spec"))...)
	}
}

func validateJobSpec(s *batchv1.JobSpec, spec *field.Path) field.ErrorList {
	var errs field.ErrorList
	if s.Parallelism != nil {
		errs = append(errs, validateNonnegative(int64(*s.Parallelism), spec.Child("parallelism"))...)
	}
	if s.Completions != nil {
		errs = append(errs, validateNonnegative(int64(*s.Completions), spec.Child("completions"))...)
	}
	if s.ActiveDeadlineSeconds != nil && *s.ActiveDeadlineSeconds <= 0 {
		errs = append(errs, field.Invalid(spec.Child("activeDeadlineSeconds"), *s.ActiveDeadlineSeconds, "must be greater than 0"))
	}
	if s.BackoffLimit != nil {
		errs = append(errs, validateNonnegative(int64(*s.BackoffLimit), spec.Child("backoffLimit"))...)
	}
	if s.TTLSecondsAfterFinished != nil {
		errs = append(errs, validateNonnegative(int64(*s.TTLSecondsAfterFinished), spec.Child("ttlSecondsAfterFinished"))...)
	}
	if m := s.CompletionMode; m != nil {
		switch *m {
		case batchv1.NonIndexedCompletion:
		case batchv1.IndexedCompletion:
			if s.Completions == nil {
				errs = append(errs, field.Required(spec.Child("completions"), fmt.Sprintf("when completion mode is %s", batchv1.IndexedCompletion)))
			}
			if s.Parallelism != nil && *s.Parallelism > 100000 {
				errs = append(errs, field.Invalid(spec.Child("parallelism"), *s.Parallelism, "must be less than or equal to 100000 when completion mode is Indexed"))
			}
		default:
			errs = append(errs, field.NotSupported(spec.Child("completionMode"), *m, []string{string(batchv1.NonIndexedCompletion), string(batchv1.IndexedCompletion)}))
		}
	}
	if p := s.PodReplacementPolicy; p != nil && *p != batchv1.TerminatingOrFailed && *p != batchv1.Failed {
		errs = append(errs, field.NotSupported(spec.Child("podReplacementPolicy"), *p, []string{string(batchv1.Failed), string(batchv1.TerminatingOrFailed)}))
	}
	if s.Selector == nil {
		errs = append(errs, field.Required(spec.Child("selector"), ""))
	} else {
		errs = append(errs, metav1validation.ValidateLabelSelector(s.Selector, metav1validation.LabelSelectorValidationOptions{}, spec.Child("selector"))...)
		if sel, err := metav1.LabelSelectorAsSelector(s.Selector); err == nil && !sel.Matches(labels.Set(s.Template.Labels)) {
			errs = append(errs, field.Invalid(spec.Child("template", "metadata", "labels"), s.Template.Labels, "`selector` does not match template `labels`"))
		}
	}
	errs = append(errs, validateJobTemplate(&s.Template, spec.Child("template"))...)
	return errs
}

func validateJobTemplate(t *corev1.PodTemplateSpec, fld *field.Path) field.ErrorList {
	errs := validatePodTemplateSpec(t, fld)
	switch t.Spec.RestartPolicy {
	case corev1.RestartPolicyOnFailure, corev1.RestartPolicyNever:
	default:
		errs = append(errs, field.NotSupported(fld.Child("spec", "restartPolicy"), t.Spec.RestartPolicy,
			[]string{string(corev1.RestartPolicyOnFailure), string(corev1.RestartPolicyNever)}))
	}
	return errs
}

// validateGeneratedSelector checks the selector the job registry made.
func validateGeneratedSelector(j *batchv1.Job) field.ErrorList {
	if j.Spec.Selector == nil {
		return nil // reported as required
	}
	var errs field.ErrorList
	uid := string(j.UID)
	if uid == "" {
		return field.ErrorList{field.Required(field.NewPath("metadata", "uid"), "")}
	}
	tl := field.NewPath("spec", "template", "metadata", "labels")
	if v, ok := j.Spec.Template.Labels[jobControllerUIDLabel]; !ok || v != uid {
		errs = append(errs, field.Invalid(tl, j.Spec.Template.Labels, fmt.Sprintf("must have %s=%s", jobControllerUIDLabel, uid)))
	}
	if v, ok := j.Spec.Template.Labels[jobNameLabel]; !ok || v != j.Name {
		errs = append(errs, field.Invalid(tl, j.Spec.Template.Labels, fmt.Sprintf("must have %s=%s", jobNameLabel, j.Name)))
	}
	if v, ok := j.Spec.Selector.MatchLabels[jobControllerUIDLabel]; !ok || v != uid {
		errs = append(errs, field.Invalid(field.NewPath("spec", "selector"), j.Spec.Selector, "`selector` not auto-generated"))
	}
	return errs
}

func validateJobUpdate(j, old *batchv1.Job) field.ErrorList {
	spec := field.NewPath("spec")
	var errs field.ErrorList
	errs = append(errs, apimachineryvalidation.ValidateImmutableField(j.Spec.Selector, old.Spec.Selector, spec.Child("selector"))...)
	errs = append(errs, apimachineryvalidation.ValidateImmutableField(j.Spec.CompletionMode, old.Spec.CompletionMode, spec.Child("completionMode"))...)
	errs = append(errs, apimachineryvalidation.ValidateImmutableField(j.Spec.PodFailurePolicy, old.Spec.PodFailurePolicy, spec.Child("podFailurePolicy"))...)
	errs = append(errs, apimachineryvalidation.ValidateImmutableField(j.Spec.BackoffLimitPerIndex, old.Spec.BackoffLimitPerIndex, spec.Child("backoffLimitPerIndex"))...)
	// Indexed jobs may scale completions together with parallelism.
	elastic := j.Spec.CompletionMode != nil && *j.Spec.CompletionMode == batchv1.IndexedCompletion &&
		j.Spec.Completions != nil && j.Spec.Parallelism != nil && *j.Spec.Completions == *j.Spec.Parallelism &&
		old.Spec.Completions != nil && old.Spec.Parallelism != nil && *old.Spec.Completions == *old.Spec.Parallelism
	if !elastic {
		errs = append(errs, apimachineryvalidation.ValidateImmutableField(j.Spec.Completions, old.Spec.Completions, spec.Child("completions"))...)
	}
	// A suspended job that never started may change its scheduling
	// directives (node selector, affinity, tolerations, gates, labels and
	// annotations); the rest of the template is fixed.
	tmpl := j.Spec.Template.DeepCopy()
	if j.Spec.Suspend != nil && *j.Spec.Suspend && old.Status.StartTime == nil {
		o := &old.Spec.Template
		tmpl.Labels, tmpl.Annotations = o.Labels, o.Annotations
		tmpl.Spec.NodeSelector, tmpl.Spec.Affinity = o.Spec.NodeSelector, o.Spec.Affinity
		tmpl.Spec.Tolerations, tmpl.Spec.SchedulingGates = o.Spec.Tolerations, o.Spec.SchedulingGates
	}
	if !apiequality.Semantic.DeepEqual(*tmpl, old.Spec.Template) {
		errs = append(errs, field.Invalid(spec.Child("template"), j.Spec.Template, "field is immutable"))
	}
	return errs
}

func validateCronJobSpec(s *batchv1.CronJobSpec, spec *field.Path) field.ErrorList {
	var errs field.ErrorList
	if s.Schedule == "" {
		errs = append(errs, field.Required(spec.Child("schedule"), ""))
	} else if strings.Contains(s.Schedule, "TZ") {
		errs = append(errs, field.Invalid(spec.Child("schedule"), s.Schedule, "cannot use TZ or CRON_TZ in schedule, use timeZone field instead"))
	} else if err := parseCron(s.Schedule); err != nil {
		errs = append(errs, field.Invalid(spec.Child("schedule"), s.Schedule, err.Error()))
	}
	if tz := s.TimeZone; tz != nil {
		if *tz == "" || strings.EqualFold(*tz, "local") {
			errs = append(errs, field.Invalid(spec.Child("timeZone"), *tz, "unknown time zone "+*tz))
		} else if _, err := time.LoadLocation(*tz); err != nil {
			errs = append(errs, field.Invalid(spec.Child("timeZone"), *tz, err.Error()))
		}
	}
	if s.StartingDeadlineSeconds != nil {
		errs = append(errs, validateNonnegative(*s.StartingDeadlineSeconds, spec.Child("startingDeadlineSeconds"))...)
	}
	switch s.ConcurrencyPolicy {
	case batchv1.AllowConcurrent, batchv1.ForbidConcurrent, batchv1.ReplaceConcurrent:
	case "":
		errs = append(errs, field.Required(spec.Child("concurrencyPolicy"), ""))
	default:
		errs = append(errs, field.NotSupported(spec.Child("concurrencyPolicy"), s.ConcurrencyPolicy,
			[]string{string(batchv1.AllowConcurrent), string(batchv1.ForbidConcurrent), string(batchv1.ReplaceConcurrent)}))
	}
	if s.SuccessfulJobsHistoryLimit != nil {
		errs = append(errs, validateNonnegative(int64(*s.SuccessfulJobsHistoryLimit), spec.Child("successfulJobsHistoryLimit"))...)
	}
	if s.FailedJobsHistoryLimit != nil {
		errs = append(errs, validateNonnegative(int64(*s.FailedJobsHistoryLimit), spec.Child("failedJobsHistoryLimit"))...)
	}
	jt := spec.Child("jobTemplate")
	js := &s.JobTemplate.Spec
	errs = append(errs, metav1validation.ValidateLabels(s.JobTemplate.Labels, jt.Child("metadata", "labels"))...)
	if js.ManualSelector != nil && *js.ManualSelector {
		errs = append(errs, field.NotSupported(jt.Child("spec", "manualSelector"), js.ManualSelector, []string{"nil", "false"}))
	}
	if js.Parallelism != nil {
		errs = append(errs, validateNonnegative(int64(*js.Parallelism), jt.Child("spec", "parallelism"))...)
	}
	if js.Completions != nil {
		errs = append(errs, validateNonnegative(int64(*js.Completions), jt.Child("spec", "completions"))...)
	}
	if js.BackoffLimit != nil {
		errs = append(errs, validateNonnegative(int64(*js.BackoffLimit), jt.Child("spec", "backoffLimit"))...)
	}
	errs = append(errs, validateJobTemplate(&js.Template, jt.Child("spec", "template"))...)
	return errs
}

// cronField describes one field of a standard 5-field cron expression.
type cronField struct {
	name     string
	min, max int
	names    map[string]int
}

var cronFields = []cronField{
	{name: "minute", min: 0, max: 59},
	{name: "hour", min: 0, max: 23},
	{name: "day of month", min: 1, max: 31},
	{name: "month", min: 1, max: 12, names: map[string]int{"jan": 1, "feb": 2, "mar": 3, "apr": 4, "may": 5, "jun": 6, "jul": 7, "aug": 8, "sep": 9, "oct": 10, "nov": 11, "dec": 12}},
	{name: "day of week", min: 0, max: 7, names: map[string]int{"sun": 0, "mon": 1, "tue": 2, "wed": 3, "thu": 4, "fri": 5, "sat": 6}},
}

var cronDescriptors = map[string]bool{
	"@yearly": true, "@annually": true, "@monthly": true, "@weekly": true,
	"@daily": true, "@midnight": true, "@hourly": true,
}

// parseCron checks a cron schedule: a descriptor (@hourly, @daily, ...),
// or five fields of lists, ranges, steps, '*' and '?' (day fields), with
// month and weekday names.
func parseCron(spec string) error {
	spec = strings.TrimSpace(spec)
	if strings.HasPrefix(spec, "@") {
		if cronDescriptors[strings.ToLower(spec)] {
			return nil
		}
		if strings.HasPrefix(spec, "@every ") {
			d, err := time.ParseDuration(strings.TrimPrefix(spec, "@every "))
			if err != nil || d <= 0 {
				return fmt.Errorf("failed to parse duration %s", strings.TrimPrefix(spec, "@every "))
			}
			return nil
		}
		return fmt.Errorf("unrecognized descriptor: %s", spec)
	}
	fields := strings.Fields(spec)
	if len(fields) != len(cronFields) {
		return fmt.Errorf("expected exactly 5 fields, found %d: %s", len(fields), spec)
	}
	for i, f := range fields {
		if err := parseCronField(f, cronFields[i]); err != nil {
			return err
		}
	}
	return nil
}

func parseCronField(expr string, f cronField) error {
	for _, part := range strings.Split(expr, ",") {
		rng, stepStr, hasStep := strings.Cut(part, "/")
		lo, hi := f.min, f.max
		switch {
		case rng == "*" || (rng == "?" && (f.name == "day of month" || f.name == "day of week")):
		default:
			a, b, isRange := strings.Cut(rng, "-")
			var err error
			if lo, err = cronValue(a, f); err != nil {
				return err
			}
			hi = lo
			if isRange {
				if hi, err = cronValue(b, f); err != nil {
					return err
				}
			} else if hasStep {
				hi = f.max
			}
			if lo > hi {
				return fmt.Errorf("beginning of range (%d) beyond end of range (%d): %s", lo, hi, part)
			}
		}
		if hasStep {
			step, err := strconv.Atoi(stepStr)
			if err != nil {
				return fmt.Errorf("failed to parse int from %s: %w", stepStr, err)
			}
			if step <= 0 {
				return fmt.Errorf("step of range should be a positive number: %s", part)
			}
		}
	}
	return nil
}

func cronValue(s string, f cronField) (int, error) {
	if v, ok := f.names[strings.ToLower(s)]; ok {
		return v, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil {
		return 0, fmt.Errorf("failed to parse int from %s: %w", s, err)
	}
	if n < f.min {
		return 0, fmt.Errorf("beginning of range (%d) below minimum (%d): %s", n, f.min, s)
	}
	if n > f.max {
		return 0, fmt.Errorf("end of range (%d) above maximum (%d): %s", n, f.max, s)
	}
	return n, nil
}
