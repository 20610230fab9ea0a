package esapi

import (
	"reflect"
	"testing"

	"github.com/skiffhq/skiff/addons/logging/store"
)

func TestParseQueryString(t *testing.T) {
	txt := func(f, s string) store.Text { return store.Text{Field: f, Text: s} }
	cases := []struct {
		in   string
		and  bool
		want store.Query
	}{
		{"", false, store.MatchAll{}},
		{"error", false, txt("*", "error")},
		{"level:error", false, txt("level", "error")},
		{`"disk full"`, false, store.Text{Field: "*", Text: "disk full", Phrase: true}},
		{"a b", false, store.Bool{Should: []store.Query{txt("*", "a"), txt("*", "b")}}},
		{"a b", true, store.Bool{Must: []store.Query{txt("*", "a"), txt("*", "b")}}},
		{"a AND b OR c", false, store.Bool{Should: []store.Query{store.Bool{Must: []store.Query{txt("*", "a"), txt("*", "b")}}, txt("*", "c")}}},
		{"a AND NOT b", false, store.Bool{Must: []store.Query{txt("*", "a")}, MustNot: []store.Query{txt("*", "b")}}},
		{"-b", false, store.Bool{Must: []store.Query{store.MatchAll{}}, MustNot: []store.Query{txt("*", "b")}}},
		{"f:(x OR y)", false, store.Bool{Should: []store.Query{txt("f", "x"), txt("f", "y")}}},
		{"f:err*", false, store.Wildcard{Field: "f", Pattern: "err*"}},
		{"n:[1 TO 5}", false, store.Range{Field: "n", GTE: "1", LT: "5"}},
		{"n:{* TO 5]", false, store.Range{Field: "n", LTE: "5"}},
		{"n:>=3", false, store.Range{Field: "n", GTE: "3"}},
		{"_exists_:kubernetes.pod_name", false, store.Exists{Field: "kubernetes.pod_name"}},
		{`a\:b`, false, txt("*", "a:b")},
		{"x^2 y~1", true, store.Bool{Must: []store.Query{txt("*", "x"), txt("*", "y")}}},
		// As Lucene: a negated clause in an OR group is a must_not of the group.
		{"a && b || !c", false, store.Bool{Should: []store.Query{store.Bool{Must: []store.Query{txt("*", "a"), txt("*", "b")}}}, MustNot: []store.Query{txt("*", "c")}}},
	}
	for _, c := range cases {
		got, err := parseQueryString(c.in, "", c.and)
		if err != nil {
			t.Errorf("%q: %v", c.in, err)
			continue
		}
		if !reflect.DeepEqual(got, c.want) {
			t.Errorf("%q:\n got %#v\nwant %#v", c.in, got, c.want)
		}
	}
	for _, bad := range []string{"a AND", "(a", `"open`, "f:", "n:[1 TO", "a OR OR b", ")"} {
		if _, err := parseQueryString(bad, "", false); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}
