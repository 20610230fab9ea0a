package backend

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// fuzzObjects are the rows a fuzzed subscription runs over.
func fuzzObjects() []*unstructured.Unstructured {
	var out []*unstructured.Unstructured
	for i := range 40 {
		o := &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": "v1", "kind": "ConfigMap",
			"metadata": map[string]any{
				"name": fmt.Sprintf("cm-%02d", i), "namespace": []string{"default", "kube-system", "a"}[i%3],
				"labels":            map[string]any{"app": []string{"web", "db"}[i%2], "n": fmt.Sprint(i % 7)},
				"creationTimestamp": fmt.Sprintf("2024-01-01T00:00:%02dZ", (i*7)%60),
			},
			"data": map[string]any{"k": fmt.Sprint(i % 5), "nested": map[string]any{"x": i}},
		}}
		out = append(out, o)
	}
	return out
}

// FuzzClientMessage decodes dashboard websocket messages (browser →
// backend) as the read loop does and runs any subscription query over a
// fixed set of rows: no panic, bad input is an error, and a page holds
// only matching rows, in order, at most the page limit (≤ MaxPageSize).
func FuzzClientMessage(f *testing.F) {
	for _, s := range []string{
		`{"type":"ping"}`,
		`{"type":"unsubscribe","id":"s1"}`,
		`{"type":"subscribe","id":"s1","group":"","version":"v1","resource":"configmaps","namespace":"default","filter":{"text":"cm-1","labels":"app=web,n in (1,2)","fields":{"data.k":"1"}},"sort":{"by":"age","desc":true},"page":{"offset":2,"limit":3},"known":{"default/cm-01":"1"}}`,
		`{"type":"subscribe","id":"x","sort":{"by":"data.nested.x"},"page":{"offset":-5,"limit":100000}}`,
		`{"type":"subscribe","id":"x","filter":{"labels":"!!"}}`,
		`{"type":"subscribe","id":"x","sort":{"by":"a b"}}`,
		`{"type":"subscribe","id":"x","page":{"offset":9223372036854775807,"limit":9223372036854775807}}`,
		`{"type":1}`, `[]`, `null`,
	} {
		f.Add([]byte(s))
	}
	objs := fuzzObjects()
	f.Fuzz(func(t *testing.T, data []byte) {
		var m clientMsg
		if err := json.Unmarshal(data, &m); err != nil {
			return // answered with a 400 error message
		}
		if m.Type != "subscribe" {
			return
		}
		q, err := compileQuery(m.Filter, m.Sort, m.Page)
		if err != nil {
			return
		}
		limit := m.Page.Limit
		if limit <= 0 || limit > MaxPageSize {
			limit = MaxPageSize
		}
		page, total := q.run(objs)
		if total > len(objs) || len(page) > limit || len(page) > total {
			t.Fatalf("page of %d rows, total %d, limit %d over %d objects", len(page), total, limit, len(objs))
		}
		matching := 0
		for _, o := range objs {
			if q.match(o) {
				matching++
			}
		}
		if matching != total {
			t.Fatalf("total %d but %d rows match", total, matching)
		}
		seen := map[string]bool{}
		for _, o := range page {
			if !q.match(o) {
				t.Fatalf("page holds a row that does not match: %s", objectKey(o))
			}
			k := objectKey(o)
			if seen[k] {
				t.Fatalf("row %s twice on one page", k)
			}
			seen[k] = true
		}
		// The same query gives the same page (a stable order).
		again, _ := q.run(objs)
		for i := range page {
			if objectKey(page[i]) != objectKey(again[i]) {
				t.Fatalf("order differs between runs at %d", i)
			}
		}
		if m.Filter.Text != "" {
			for _, o := range page {
				if !strings.Contains(strings.ToLower(objectKey(o)), strings.ToLower(strings.TrimSpace(m.Filter.Text))) {
					t.Fatalf("row %s does not contain the filter text", objectKey(o))
				}
			}
		}
	})
}
