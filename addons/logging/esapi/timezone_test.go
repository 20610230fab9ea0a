package esapi

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// TestDateHistogramTimeZone: a date_histogram's time_zone rounds buckets
// in that zone (an offset or a zone ID) and writes key_as_string there;
// an unknown zone is a 400.
func TestDateHistogramTimeZone(t *testing.T) {
	srv := newTestServer(t, 0)
	// 120 documents, one a minute, 10:00–11:59 UTC.
	base := time.Date(2026, 5, 1, 10, 0, 0, 0, time.UTC)
	if code, _, body := do(t, "POST", srv.URL+"/logs/_bulk", bulkBody(120, base)); code != 200 || strings.Contains(string(body), `"errors":true`) {
		t.Fatalf("bulk %d %s", code, body)
	}
	type bucket struct {
		key   time.Time
		str   string
		count int64
	}
	hist := func(agg string) []bucket {
		t.Helper()
		code, _, body := do(t, "POST", srv.URL+"/logs/logs-*/_search", []byte(`{"size":0,"aggs":{"h":{"date_histogram":`+agg+`}}}`))
		if code != 200 {
			t.Fatalf("%s: %d %s", agg, code, body)
		}
		var r searchResp
		if err := json.Unmarshal(body, &r); err != nil {
			t.Fatal(err)
		}
		var out []bucket
		for _, b := range r.Aggregations["h"].Buckets {
			out = append(out, bucket{time.UnixMilli(int64(b.Key.(float64))).UTC(), b.KeyAsString, b.DocCount})
		}
		return out
	}
	at := func(s string) time.Time {
		v, err := time.Parse(time.RFC3339, s)
		if err != nil {
			t.Fatal(err)
		}
		return v.UTC()
	}
	for _, c := range []struct {
		agg  string
		want []bucket
	}{
		// Hours of a +05:30 clock start at half past, UTC.
		{`{"field":"@timestamp","fixed_interval":"1h","time_zone":"+05:30"}`, []bucket{
			{at("2026-05-01T09:30:00Z"), "2026-05-01T15:00:00.000+05:30", 30},
			{at("2026-05-01T10:30:00Z"), "2026-05-01T16:00:00.000+05:30", 60},
			{at("2026-05-01T11:30:00Z"), "2026-05-01T17:00:00.000+05:30", 30},
		}},
		// At -11:00 the first hour is still April 30th.
		{`{"field":"@timestamp","calendar_interval":"day","time_zone":"-11:00"}`, []bucket{
			{at("2026-04-30T11:00:00Z"), "2026-04-30T00:00:00.000-11:00", 60},
			{at("2026-05-01T11:00:00Z"), "2026-05-01T00:00:00.000-11:00", 60},
		}},
		// A zone ID: New York is at -04:00 in May.
		{`{"field":"@timestamp","calendar_interval":"1d","time_zone":"America/New_York"}`, []bucket{
			{at("2026-05-01T04:00:00Z"), "2026-05-01T00:00:00.000-04:00", 120},
		}},
		// UTC spelled out is the default.
		{`{"field":"@timestamp","calendar_interval":"hour","time_zone":"UTC"}`, []bucket{
			{at("2026-05-01T10:00:00Z"), "2026-05-01T10:00:00.000Z", 60},
			{at("2026-05-01T11:00:00Z"), "2026-05-01T11:00:00.000Z", 60},
		}},
	} {
		got := hist(c.agg)
		if len(got) != len(c.want) {
			t.Errorf("%s: buckets %+v, want %+v", c.agg, got, c.want)
			continue
		}
		for i := range got {
			if !got[i].key.Equal(c.want[i].key) || got[i].str != c.want[i].str || got[i].count != c.want[i].count {
				t.Errorf("%s: bucket %d %+v, want %+v", c.agg, i, got[i], c.want[i])
			}
		}
	}
	for _, tz := range []string{"Mars/Olympus", "+19:00", "Local"} {
		code, _, body := do(t, "POST", srv.URL+"/logs/logs-*/_search", []byte(`{"size":0,"aggs":{"h":{"date_histogram":{"field":"@timestamp","fixed_interval":"1h","time_zone":"`+tz+`"}}}}`))
		if code != 400 || !strings.Contains(string(body), tz) {
			t.Errorf("time_zone %q: %d %s, want a 400 naming it", tz, code, body)
		}
	}
}

func TestParseTimeZone(t *testing.T) {
	for in, want := range map[string]int{"+01:00": 3600, "-0800": -8 * 3600, "+5": 5 * 3600, "-03:30": -(3*3600 + 1800), "+18:00": 18 * 3600} {
		loc, err := parseTimeZone(in)
		if err != nil || loc == nil {
			t.Errorf("%s: %v %v", in, loc, err)
			continue
		}
		if _, off := time.Unix(0, 0).In(loc).Zone(); off != want {
			t.Errorf("%s: offset %d, want %d", in, off, want)
		}
	}
	for _, in := range []string{"", "Z", "UTC", "+00:00"} {
		if loc, err := parseTimeZone(in); loc != nil || err != nil {
			t.Errorf("%q: %v %v, want UTC (nil)", in, loc, err)
		}
	}
	for _, in := range []string{"+18:30", "+01:75", "1:00", "Europe/Nowhere"} {
		if _, err := parseTimeZone(in); err == nil {
			t.Errorf("%q: no error", in)
		}
	}
}
