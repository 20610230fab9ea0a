package store

import (
	"testing"
	"time"
)

// TestDateHistogramClockChange: buckets rounded in a zone with daylight
// saving time follow its clock across the change: Berlin's 29 March 2026
// is 23 hours long, its 25 October 25; every document falls in the bucket
// that walking next from an earlier key reaches (key ≤ ts < next).
func TestDateHistogramClockChange(t *testing.T) {
	berlin, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		t.Skip("no tz database:", err)
	}
	utc := func(s string) int64 {
		v, err := time.Parse(time.RFC3339, s)
		if err != nil {
			t.Fatal(err)
		}
		return v.UnixNano()
	}
	day := &dateAgg{req: AggRequest{DateHistogram: &DateHistogram{Calendar: "day", Location: berlin}}}
	for _, c := range []struct{ ts, key, next string }{
		{"2026-03-28T12:00:00Z", "2026-03-27T23:00:00Z", "2026-03-28T23:00:00Z"},
		{"2026-03-29T12:00:00Z", "2026-03-28T23:00:00Z", "2026-03-29T22:00:00Z"}, // 23 h
		{"2026-03-29T22:30:00Z", "2026-03-29T22:00:00Z", "2026-03-30T22:00:00Z"},
		{"2026-10-25T12:00:00Z", "2026-10-24T22:00:00Z", "2026-10-25T23:00:00Z"}, // 25 h
	} {
		k := day.key(utc(c.ts))
		if k != utc(c.key) {
			t.Errorf("day of %s: key %s, want %s", c.ts, time.Unix(0, k).UTC().Format(time.RFC3339), c.key)
		}
		if n := day.next(k); n != utc(c.next) {
			t.Errorf("day after %s: %s, want %s", c.key, time.Unix(0, n).UTC().Format(time.RFC3339), c.next)
		}
	}
	for _, h := range []*DateHistogram{
		{Fixed: time.Hour, Location: berlin},
		{Fixed: 30 * time.Minute, Location: berlin},
		{Fixed: 3 * time.Hour, Location: berlin},
		{Calendar: "hour", Location: berlin},
		{Calendar: "minute", Location: berlin},
	} {
		a := &dateAgg{req: AggRequest{DateHistogram: h}}
		iv := h.Fixed.String() + h.Calendar
		for _, from := range []string{"2026-03-28T20:00:00Z", "2026-10-24T20:00:00Z"} {
			start := utc(from)
			k := a.key(start)
			for ts := start; ts < start+int64(12*time.Hour); ts += int64(7 * time.Minute) {
				got := a.key(ts)
				if got > ts {
					t.Fatalf("%s from %s: key %d after ts %d", iv, from, got, ts)
				}
				for n := a.next(k); n <= ts; n = a.next(k) {
					k = n
				}
				if got != k {
					t.Fatalf("%s: ts %s in bucket %s, but walking next gives %s", iv, time.Unix(0, ts).UTC(), time.Unix(0, got).UTC(), time.Unix(0, k).UTC())
				}
			}
		}
	}
}
