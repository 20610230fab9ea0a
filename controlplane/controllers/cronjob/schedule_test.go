package cronjob

import (
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func mustTime(t *testing.T, s string) time.Time {
	t.Helper()
	v, err := time.Parse(time.RFC3339, s)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestMostRecentScheduleTime(t *testing.T) {
	created := "2026-03-01T10:00:30Z"
	for _, tc := range []struct {
		name       string
		schedule   string
		tz         string
		last       string
		deadline   *int64
		now        string
		want       string // "" = nothing due
		wantMissed int
	}{
		{name: "not yet due", schedule: "*/5 * * * *", now: "2026-03-01T10:04:59Z"},
		{name: "first time due", schedule: "*/5 * * * *", now: "2026-03-01T10:05:00Z", want: "2026-03-01T10:05:00Z", wantMissed: 1},
		{name: "after last schedule", schedule: "*/5 * * * *", last: "2026-03-01T10:05:00Z", now: "2026-03-01T10:09:00Z"},
		{name: "missed several: the latest", schedule: "*/5 * * * *", last: "2026-03-01T10:05:00Z", now: "2026-03-01T10:21:00Z", want: "2026-03-01T10:20:00Z", wantMissed: 3},
		{name: "starting deadline bounds the scan", schedule: "* * * * *", deadline: ptr(int64(120)), now: "2026-03-01T12:00:30Z", want: "2026-03-01T12:00:00Z", wantMissed: 2},
		{name: "hourly descriptor", schedule: "@hourly", now: "2026-03-01T11:00:00Z", want: "2026-03-01T11:00:00Z", wantMissed: 1},
		{name: "time zone", schedule: "0 9 * * *", tz: "Asia/Tokyo", now: "2026-03-02T00:00:01Z", want: "2026-03-02T00:00:00Z", wantMissed: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cj := &batchv1.CronJob{
				ObjectMeta: metav1.ObjectMeta{Name: "cj", CreationTimestamp: metav1.NewTime(mustTime(t, created))},
				Spec:       batchv1.CronJobSpec{Schedule: tc.schedule, StartingDeadlineSeconds: tc.deadline},
			}
			if tc.tz != "" {
				cj.Spec.TimeZone = &tc.tz
			}
			if tc.last != "" {
				l := metav1.NewTime(mustTime(t, tc.last))
				cj.Status.LastScheduleTime = &l
			}
			sched, err := ParseSchedule(cj)
			if err != nil {
				t.Fatal(err)
			}
			got, missed := MostRecentScheduleTime(cj, mustTime(t, tc.now), sched)
			switch {
			case tc.want == "" && got != nil:
				t.Fatalf("due at %v, want nothing", got)
			case tc.want != "" && (got == nil || !got.Equal(mustTime(t, tc.want))):
				t.Fatalf("due at %v, want %s", got, tc.want)
			}
			if missed != tc.wantMissed {
				t.Errorf("missed %d, want %d", missed, tc.wantMissed)
			}
		})
	}
}

func TestParseScheduleRejectsUnknownZone(t *testing.T) {
	tz := "Mars/Olympus"
	if _, err := ParseSchedule(&batchv1.CronJob{Spec: batchv1.CronJobSpec{Schedule: "* * * * *", TimeZone: &tz}}); err == nil {
		t.Fatal("unknown time zone accepted")
	}
}

func TestJobFromTemplate(t *testing.T) {
	tz := "Europe/Paris"
	cj := &batchv1.CronJob{
		ObjectMeta: metav1.ObjectMeta{Name: "report", Namespace: "ns", UID: "u1"},
		Spec: batchv1.CronJobSpec{TimeZone: &tz, JobTemplate: batchv1.JobTemplateSpec{
			ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"a": "b"}, Annotations: map[string]string{"x": "y"}},
		}},
	}
	at := mustTime(t, "2026-03-01T10:05:00Z")
	j := JobFromTemplate(cj, at)
	if want := "report-29539325"; j.Name != want {
		t.Errorf("name %q, want %q (minutes since the epoch)", j.Name, want)
	}
	if j.Labels["a"] != "b" || j.Annotations["x"] != "y" {
		t.Errorf("template metadata not copied: %+v", j.ObjectMeta)
	}
	if got := j.Annotations[batchv1.CronJobScheduledTimestampAnnotation]; got != "2026-03-01T11:05:00+01:00" {
		t.Errorf("scheduled timestamp %q", got)
	}
	ref := metav1.GetControllerOf(j)
	if ref == nil || ref.UID != "u1" || ref.Kind != "CronJob" {
		t.Errorf("owner %+v", ref)
	}
}

func ptr[T any](v T) *T { return &v }
