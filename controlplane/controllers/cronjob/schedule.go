package cronjob

import (
	"fmt"
	"time"

	"github.com/robfig/cron/v3"
	batchv1 "k8s.io/api/batch/v1"
)

// tooManyMissed is the number of missed start times above which the
// controller warns (upstream's 100).
const tooManyMissed = 100

// maxScan bounds how many schedule times one sync walks through.
const maxScan = 1 << 20

// ParseSchedule parses the cronjob's schedule (standard five fields or a
// descriptor such as @hourly) in its time zone.
func ParseSchedule(cj *batchv1.CronJob) (cron.Schedule, error) {
	spec := cj.Spec.Schedule
	if tz := cj.Spec.TimeZone; tz != nil {
		if _, err := time.LoadLocation(*tz); err != nil {
			return nil, fmt.Errorf("unknown time zone %q: %w", *tz, err)
		}
		spec = "TZ=" + *tz + " " + spec
	}
	return cron.ParseStandard(spec)
}

// MostRecentScheduleTime is the latest schedule time at or before now that
// has not been started yet (after status.lastScheduleTime, else after
// creation, and no earlier than startingDeadlineSeconds ago), with how many
// such times were missed; nil when none is due.
func MostRecentScheduleTime(cj *batchv1.CronJob, now time.Time, sched cron.Schedule) (*time.Time, int) {
	earliest := cj.CreationTimestamp.Time
	if cj.Status.LastScheduleTime != nil {
		earliest = cj.Status.LastScheduleTime.Time
	}
	if d := cj.Spec.StartingDeadlineSeconds; d != nil {
		if limit := now.Add(-time.Duration(*d) * time.Second); limit.After(earliest) {
			earliest = limit
		}
	}
	var last time.Time
	missed := 0
	for t := sched.Next(earliest); !t.IsZero() && !t.After(now) && missed < maxScan; t = sched.Next(t) {
		last = t
		missed++
	}
	if missed == 0 {
		return nil, 0
	}
	return &last, missed
}

// NextScheduleDelay is how long until the schedule's next time after now.
func NextScheduleDelay(sched cron.Schedule, now time.Time) time.Duration {
	next := sched.Next(now)
	if next.IsZero() {
		return 0
	}
	return next.Sub(now)
}

// JobName is the name of the job for scheduled time t: <cronjob>-<minutes
// since the epoch>, as upstream.
func JobName(cj *batchv1.CronJob, t time.Time) string {
	return fmt.Sprintf("%s-%d", cj.Name, t.Unix()/60)
}
