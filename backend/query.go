package backend

import (
	"cmp"
	"container/heap"
	"fmt"
	"slices"
	"strings"
	"time"

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
	// Owner is a uid: only objects with an ownerReference to it (the
	// detail page's owned objects, a Deployment's ReplicaSets).
	Owner string `json:"owner,omitempty"`
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
	owner  string
	sort   Sort
	path   []string // a dotted-path sort's path (nil for the named sorts)
	page   Page
}

func compileQuery(f Filter, s Sort, p Page) (*query, error) {
	q := &query{text: strings.ToLower(strings.TrimSpace(f.Text)), sel: labels.Everything(), owner: f.Owner, sort: s, page: p}
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
		q.path = strings.Split(s.By, ".")
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
	if q.owner != "" && !ownedBy(o, q.owner) {
		return false
	}
	return true
}

// ownedBy reports whether one of o's ownerReferences names uid.
func ownedBy(o *unstructured.Unstructured, uid string) bool {
	md, _ := o.Object["metadata"].(map[string]any)
	refs, _ := md["ownerReferences"].([]any)
	for _, r := range refs {
		if m, ok := r.(map[string]any); ok && m["uid"] == uid {
			return true
		}
	}
	return false
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
//
// It runs on every change a subscription sees, over the whole kind (30,000
// pods), so it reads each object's sort keys once (not per comparison)
// and orders only the rows up to the page's end: a bounded heap keeps the
// first Offset+Limit of them, which is O(n log k) rather than a full
// O(n log n) sort for the usual first pages.
func (q *query) run(objs []*unstructured.Unstructured) ([]*unstructured.Unstructured, int) {
	end := q.page.Offset + q.page.Limit
	var rows []queryRow
	total := 0
	if end*4 >= len(objs) {
		rows = make([]queryRow, 0, len(objs))
		for _, o := range objs {
			if q.match(o) {
				rows = append(rows, q.row(o))
			}
		}
		total = len(rows)
		sortRows(q, rows)
	} else {
		h := &rowHeap{q: q, rows: make([]queryRow, 0, end+1)}
		for _, o := range objs {
			if !q.match(o) {
				continue
			}
			total++
			r := q.row(o)
			if len(h.rows) == end {
				// Full: r goes in only if it sorts before the last kept row.
				if compareRows(q, r, h.rows[0]) >= 0 {
					continue
				}
				h.rows[0] = r
				heap.Fix(h, 0)
				continue
			}
			heap.Push(h, r)
		}
		rows = h.rows
		sortRows(q, rows)
	}
	lo := min(q.page.Offset, len(rows))
	hi := min(lo+q.page.Limit, len(rows))
	out := make([]*unstructured.Unstructured, 0, hi-lo)
	for _, r := range rows[lo:hi] {
		out = append(out, r.o)
	}
	return out, total
}

// queryRow is an object with the keys its query sorts by, read once.
type queryRow struct {
	o               *unstructured.Unstructured
	namespace, name string
	field           string    // the dotted-path sort's value
	created         time.Time // for the age sort
}

func (q *query) row(o *unstructured.Unstructured) queryRow {
	r := queryRow{o: o, namespace: o.GetNamespace(), name: o.GetName()}
	switch {
	case q.sort.By == "age":
		r.created = o.GetCreationTimestamp().Time
	case q.path != nil:
		r.field = fieldString(o.Object, q.path)
	}
	return r
}

// compareRows orders rows by the query's sort, then by namespace and
// name; Desc reverses the whole order.
func compareRows(q *query, a, b queryRow) int {
	var c int
	switch {
	case q.sort.By == "age":
		// Newest first, as kubectl's AGE reads best that way round.
		c = b.created.Compare(a.created)
	case q.path != nil:
		c = cmp.Compare(a.field, b.field)
	case q.sort.By == "name":
		c = cmp.Or(cmp.Compare(a.name, b.name), cmp.Compare(a.namespace, b.namespace))
	}
	if c == 0 {
		c = cmp.Or(cmp.Compare(a.namespace, b.namespace), cmp.Compare(a.name, b.name))
	}
	if q.sort.Desc {
		return -c
	}
	return c
}

func sortRows(q *query, rows []queryRow) {
	slices.SortFunc(rows, func(a, b queryRow) int { return compareRows(q, a, b) })
}

// rowHeap is a max-heap of rows in the query's order: its top is the
// last of the rows kept.
type rowHeap struct {
	q    *query
	rows []queryRow
}

func (h *rowHeap) Len() int           { return len(h.rows) }
func (h *rowHeap) Less(i, j int) bool { return compareRows(h.q, h.rows[i], h.rows[j]) > 0 }
func (h *rowHeap) Swap(i, j int)      { h.rows[i], h.rows[j] = h.rows[j], h.rows[i] }
func (h *rowHeap) Push(x any)         { h.rows = append(h.rows, x.(queryRow)) }
func (h *rowHeap) Pop() any {
	r := h.rows[len(h.rows)-1]
	h.rows = h.rows[:len(h.rows)-1]
	return r
}

// objectKey is the cache key of an object: namespace/name or name.
func objectKey(o *unstructured.Unstructured) string {
	if ns := o.GetNamespace(); ns != "" {
		return ns + "/" + o.GetName()
	}
	return o.GetName()
}
