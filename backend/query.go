package backend

import (
	"cmp"
	"fmt"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
)

// MaxPageSize bounds the rows one subscription page holds, so a browser
// never receives more objects than it can show.
const MaxPageSize = 500

// Filter selects objects of a subscription.
type Filter struct {
	// Text matches a case-insensitive substring of namespace/name.
	Text string `json:"text,omitempty"`
	// Labels is a label selector (upstream syntax: app=web,tier!=db).
	Labels string `json:"labels,omitempty"`
	// Fields are exact matches on dotted paths (e.g. "type": "Warning",
	// "spec.nodeName": "n1"); values are compared as strings.
	Fields map[string]string `json:"fields,omitempty"`
}

// Sort orders objects of a subscription.
type Sort struct {
	// By is "name" (default), "namespace", "age" (creation time, newest
	// first unless Desc) or a dotted path compared as a string.
	By   string `json:"by,omitempty"`
	Desc bool   `json:"desc,omitempty"`
}

// Page is a window of the sorted, filtered objects.
type Page struct {
	Offset int `json:"offset,omitempty"`
	Limit  int `json:"limit,omitempty"`
}

// query is a compiled Filter+Sort+Page.
type query struct {
	text   string
	sel    labels.Selector
	fields map[string][]string
	sort   Sort
	page   Page
}

func compileQuery(f Filter, s Sort, p Page) (*query, error) {
	q := &query{text: strings.ToLower(strings.TrimSpace(f.Text)), sel: labels.Everything(), sort: s, page: p}
	if strings.TrimSpace(f.Labels) != "" {
		sel, err := labels.Parse(f.Labels)
		if err != nil {
			return nil, fmt.Errorf("label selector: %w", err)
		}
		q.sel = sel
	}
	if len(f.Fields) > 0 {
		q.fields = map[string][]string{}
		for k, v := range f.Fields {
			q.fields[v+"\x00"+k] = strings.Split(k, ".")
		}
	}
	if q.page.Limit <= 0 || q.page.Limit > MaxPageSize {
		q.page.Limit = MaxPageSize
	}
	if q.page.Offset < 0 {
		q.page.Offset = 0
	}
	switch s.By {
	case "", "name", "namespace", "age":
	default:
		if strings.ContainsAny(s.By, " \t") {
			return nil, fmt.Errorf("sort: bad field %q", s.By)
		}
	}
	return q, nil
}

func (q *query) match(o *unstructured.Unstructured) bool {
	if q.text != "" {
		id := strings.ToLower(o.GetNamespace() + "/" + o.GetName())
		if !strings.Contains(id, q.text) {
			return false
		}
	}
	if !q.sel.Empty() && !q.sel.Matches(labels.Set(o.GetLabels())) {
		return false
	}
	for k, path := range q.fields {
		want := k[:strings.IndexByte(k, 0)]
		if fieldString(o.Object, path) != want {
			return false
		}
	}
	return true
}

// fieldString reads a dotted path as a string ("" when missing).
func fieldString(obj map[string]any, path []string) string {
	var cur any = obj
	for _, p := range path {
		m, ok := cur.(map[string]any)
		if !ok {
			return ""
		}
		cur = m[p]
	}
	switch v := cur.(type) {
	case nil:
		return ""
	case string:
		return v
	default:
		return fmt.Sprint(v)
	}
}

// run filters, sorts and pages objs; it returns the page and the number
// of matching objects.
func (q *query) run(objs []*unstructured.Unstructured) ([]*unstructured.Unstructured, int) {
	out := make([]*unstructured.Unstructured, 0, len(objs))
	for _, o := range objs {
		if q.match(o) {
			out = append(out, o)
		}
	}
	var path []string
	if q.sort.By != "" && q.sort.By != "name" && q.sort.By != "namespace" && q.sort.By != "age" {
		path = strings.Split(q.sort.By, ".")
	}
	byName := func(a, b *unstructured.Unstructured) int {
		return cmp.Or(cmp.Compare(a.GetNamespace(), b.GetNamespace()), cmp.Compare(a.GetName(), b.GetName()))
	}
	slices.SortFunc(out, func(a, b *unstructured.Unstructured) int {
		var c int
		switch {
		case q.sort.By == "age":
			// Newest first, as kubectl's AGE reads best that way round.
			c = b.GetCreationTimestamp().Compare(a.GetCreationTimestamp().Time)
		case path != nil:
			c = cmp.Compare(fieldString(a.Object, path), fieldString(b.Object, path))
		case q.sort.By == "name":
			c = cmp.Or(cmp.Compare(a.GetName(), b.GetName()), cmp.Compare(a.GetNamespace(), b.GetNamespace()))
		}
		if c == 0 {
			c = byName(a, b)
		}
		if q.sort.Desc {
			return -c
		}
		return c
	})
	total := len(out)
	lo := min(q.page.Offset, total)
	hi := min(lo+q.page.Limit, total)
	return out[lo:hi], total
}

// objectKey is the cache key of an object: namespace/name or name.
func objectKey(o *unstructured.Unstructured) string {
	if ns := o.GetNamespace(); ns != "" {
		return ns + "/" + o.GetName()
	}
	return o.GetName()
}
