package backend

import (
	"container/heap"
	"context"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/tools/cache"
)

// Search across kinds (GET /api/search?q=&ns=&limit=&kinds=): object names
// matched fuzzily over the shared caches, for the dashboard's search
// palette.
//
// Kinds searched: SearchKinds (the common ones) plus at most
// maxExtraSearchKinds given as kinds=group/version/resource,... (the
// browser sends the custom kinds the user opened in this tab). Each kind
// must be served (the user's discovery) and the user must be allowed to
// list it in ns (namespaced kinds; ns "" = all namespaces) or at cluster
// scope, asked with the user's own SelfSubjectAccessReview as for a
// subscription; the answers are kept per session for searchAuthzTTL, so a
// palette typing a query asks once. Kinds the user may not list are named
// in "forbidden" and contribute nothing.
//
// The caches are the subscriptions' shared informers (warm kinds are
// always loaded; others start with the first search and stop IdleWatch
// after the last search or subscription used them). A kind whose first list
// is not done within searchSyncWait is named in "pending" and skipped.
// Secrets are cached as metadata only, so only their names are searched.
//
// Work is bounded: the query is at most maxSearchQuery characters, every
// cached row's name is tested as a subsequence first (one pass) and only
// matches are scored, and at most limit (≤ maxSearchLimit) results are kept
// in a bounded heap.

// SearchKinds are the kinds the search palette always searches.
var SearchKinds = []schema.GroupVersionResource{
	{Version: "v1", Resource: "pods"},
	{Group: "apps", Version: "v1", Resource: "deployments"},
	{Version: "v1", Resource: "services"},
	{Version: "v1", Resource: "nodes"},
	{Version: "v1", Resource: "namespaces"},
	{Version: "v1", Resource: "configmaps"},
	{Version: "v1", Resource: "secrets"},
	{Group: "apps", Version: "v1", Resource: "statefulsets"},
	{Group: "apps", Version: "v1", Resource: "daemonsets"},
	{Group: "batch", Version: "v1", Resource: "jobs"},
	{Group: "batch", Version: "v1", Resource: "cronjobs"},
	{Group: "networking.k8s.io", Version: "v1", Resource: "ingresses"},
	{Version: "v1", Resource: "persistentvolumeclaims"},
}

const (
	maxSearchQuery      = 64
	maxSearchLimit      = 50
	defaultSearchLimit  = 20
	maxExtraSearchKinds = 10
	searchSyncWait      = 2 * time.Second
	searchAuthzTTL      = 10 * time.Second
)

// SearchResult is one object found.
type SearchResult struct {
	Group      string `json:"group"`
	Version    string `json:"version"`
	Resource   string `json:"resource"`
	Kind       string `json:"kind"`
	Namespaced bool   `json:"namespaced"`
	Namespace  string `json:"namespace,omitempty"`
	Name       string `json:"name"`
	Score      int    `json:"score"`
}

// SearchResponse is /api/search's answer.
type SearchResponse struct {
	Results []SearchResult `json:"results"`
	// Matched is how many objects matched (Results holds the best).
	Matched   int      `json:"matched"`
	Searched  []string `json:"searched"`
	Forbidden []string `json:"forbidden"`
	Pending   []string `json:"pending"`
	TookMs    float64  `json:"tookMs"`
}

// searchKind is a kind the user may search, as discovery names it.
type searchKind struct {
	gvr        schema.GroupVersionResource
	kind       string
	namespaced bool
}

// searchAuthz caches, per session, cluster and namespace, which kinds the
// user may list (searchAuthzTTL).
type searchAuthz struct {
	mu sync.Mutex
	m  map[string]searchAuthzEntry
}

type searchAuthzEntry struct {
	kind    searchKind
	allowed bool
	served  bool
	at      time.Time
}

func (a *searchAuthz) get(key string) (searchAuthzEntry, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	e, ok := a.m[key]
	if !ok || time.Since(e.at) > searchAuthzTTL {
		return e, false
	}
	return e, true
}

func (a *searchAuthz) put(key string, e searchAuthzEntry) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.m == nil {
		a.m = map[string]searchAuthzEntry{}
	}
	if len(a.m) > 4096 {
		for k, v := range a.m {
			if time.Since(v.at) > searchAuthzTTL {
				delete(a.m, k)
			}
		}
		if len(a.m) > 4096 {
			clear(a.m)
		}
	}
	a.m[key] = e
}

// parseSearchKinds reads kinds=group/version/resource,... ("" or "core"
// for the core group), adding them to SearchKinds (duplicates dropped).
func parseSearchKinds(extra string) ([]schema.GroupVersionResource, error) {
	out := slices.Clone(SearchKinds)
	n := 0
	for _, s := range strings.Split(extra, ",") {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		p := strings.Split(s, "/")
		if len(p) != 3 || p[1] == "" || p[2] == "" {
			return nil, &statusError{http.StatusBadRequest, "kinds: want group/version/resource, got " + strconv.Quote(s)}
		}
		if p[0] == "core" {
			p[0] = ""
		}
		gvr := schema.GroupVersionResource{Group: p[0], Version: p[1], Resource: p[2]}
		if slices.Contains(out, gvr) {
			continue
		}
		if n++; n > maxExtraSearchKinds {
			return nil, &statusError{http.StatusBadRequest, "kinds: at most " + strconv.Itoa(maxExtraSearchKinds) + " extra kinds"}
		}
		out = append(out, gvr)
	}
	return out, nil
}

func (s *Server) search(w http.ResponseWriter, r *http.Request) {
	t0 := time.Now()
	sess := sessionFrom(r.Context())
	t, ok := s.targetFor(w, r)
	if !ok {
		return
	}
	qv := r.URL.Query()
	q := strings.TrimSpace(qv.Get("q"))
	if utf8.RuneCountInString(q) > maxSearchQuery {
		writeError(w, http.StatusBadRequest, "q: at most "+strconv.Itoa(maxSearchQuery)+" characters")
		return
	}
	limit := defaultSearchLimit
	if l := qv.Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 1 {
			writeError(w, http.StatusBadRequest, "limit: a positive number")
			return
		}
		limit = min(n, maxSearchLimit)
	}
	ns := qv.Get("ns")
	gvrs, err := parseSearchKinds(qv.Get("kinds"))
	if err != nil {
		writeTargetError(w, err)
		return
	}
	resp := SearchResponse{Results: []SearchResult{}, Searched: []string{}, Forbidden: []string{}, Pending: []string{}}
	if q == "" {
		writeJSON(w, http.StatusOK, resp)
		return
	}
	kinds, forbidden, err := s.searchableKinds(r.Context(), sess.id, t, ns, gvrs)
	if err != nil {
		writeAPIError(w, err)
		return
	}
	resp.Forbidden = forbidden

	// The caches: start the kinds not running yet and wait (together) at
	// most searchSyncWait for their first list.
	refs := make([]*kindCache, len(kinds))
	for i, k := range kinds {
		refs[i] = t.cache.ref(k.gvr, nil)
	}
	defer func() {
		for _, kc := range refs {
			t.cache.release(kc, nil)
		}
	}()
	wctx, cancel := context.WithTimeout(r.Context(), searchSyncWait)
	defer cancel()
	sc := newSearcher(q, limit)
	for i, k := range kinds {
		kc := refs[i]
		if !kc.informer.HasSynced() && !cache.WaitForCacheSync(wctx.Done(), kc.informer.HasSynced) {
			resp.Pending = append(resp.Pending, k.gvr.Resource)
			continue
		}
		resp.Searched = append(resp.Searched, k.gvr.Resource)
		lns := ns
		if !k.namespaced {
			lns = ""
		}
		sc.scan(i, kc.list(lns))
	}
	hits, matched := sc.results()
	resp.Matched = matched
	for _, h := range hits {
		k := kinds[h.kind]
		resp.Results = append(resp.Results, SearchResult{Group: k.gvr.Group, Version: k.gvr.Version, Resource: k.gvr.Resource,
			Kind: k.kind, Namespaced: k.namespaced, Namespace: h.o.GetNamespace(), Name: h.o.GetName(), Score: h.score})
	}
	resp.TookMs = float64(time.Since(t0).Microseconds()) / 1000
	writeJSON(w, http.StatusOK, resp)
}

// searchableKinds returns the kinds of gvrs the user may list in ns (or at
// cluster scope), in gvrs' order, and the resources refused. Discovery and
// access reviews run as the user, in parallel, cached per session for
// searchAuthzTTL. Kinds not served are left out silently.
func (s *Server) searchableKinds(ctx context.Context, sessID string, t *target, ns string, gvrs []schema.GroupVersionResource) ([]searchKind, []string, error) {
	entries := make([]searchAuthzEntry, len(gvrs))
	errs := make([]error, len(gvrs))
	// Discovery once per group version.
	var dmu sync.Mutex
	disc := map[string]*metav1.APIResourceList{}
	discOnce := map[string]*sync.Once{}
	discover := func(gv string) *metav1.APIResourceList {
		dmu.Lock()
		o := discOnce[gv]
		if o == nil {
			o = &sync.Once{}
			discOnce[gv] = o
		}
		dmu.Unlock()
		o.Do(func() {
			l, err := t.discovery.ServerResourcesForGroupVersion(gv)
			if err != nil {
				l = nil
			}
			dmu.Lock()
			disc[gv] = l
			dmu.Unlock()
		})
		dmu.Lock()
		defer dmu.Unlock()
		return disc[gv]
	}
	sem := make(chan struct{}, reauthParallel)
	var wg sync.WaitGroup
	for i, gvr := range gvrs {
		key := sessID + "\x00" + t.cluster + "\x00" + ns + "\x00" + gvr.String()
		if e, ok := s.searchAuthz.get(key); ok {
			entries[i] = e
			continue
		}
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			e := searchAuthzEntry{kind: searchKind{gvr: gvr}, at: time.Now()}
			l := discover(gvr.GroupVersion().String())
			if l != nil {
				for _, res := range l.APIResources {
					if res.Name == gvr.Resource && slices.Contains(res.Verbs, "list") {
						e.served, e.kind.kind, e.kind.namespaced = true, res.Kind, res.Namespaced
						break
					}
				}
			}
			if e.served {
				rns := ns
				if !e.kind.namespaced {
					rns = ""
				}
				ok, err := canI(ctx, t.client, "list", gvr, rns, "")
				if err != nil {
					errs[i] = err
					return
				}
				e.allowed = ok
			}
			entries[i] = e
			s.searchAuthz.put(key, e)
		})
	}
	wg.Wait()
	var kinds []searchKind
	forbidden := []string{}
	for i, e := range entries {
		if errs[i] != nil {
			return nil, nil, errs[i]
		}
		switch {
		case !e.served:
		case e.allowed:
			kinds = append(kinds, e.kind)
		default:
			forbidden = append(forbidden, e.kind.gvr.Resource)
		}
	}
	return kinds, forbidden, nil
}

// searcher scores names against one query and keeps the best limit.
type searcher struct {
	pattern []byte
	limit   int
	matched int
	h       hitHeap
	// prev and cur are the scoring rows, reused across names.
	prev, cur []int
}

type searchHit struct {
	score int
	kind  int // index of the kind (its order breaks ties)
	o     *unstructured.Unstructured
}

func newSearcher(q string, limit int) *searcher {
	return &searcher{pattern: []byte(strings.ToLower(q)), limit: limit}
}

// scan scores every object of one kind.
func (sc *searcher) scan(kind int, objs []*unstructured.Unstructured) {
	for _, o := range objs {
		name := o.GetName()
		score, ok := sc.score(name)
		if !ok {
			continue
		}
		sc.matched++
		hit := searchHit{score: score, kind: kind, o: o}
		if len(sc.h) < sc.limit {
			heap.Push(&sc.h, hit)
			continue
		}
		if hitLess(sc.h[0], hit) {
			sc.h[0] = hit
			heap.Fix(&sc.h, 0)
		}
	}
}

// results returns the hits best first and how many objects matched.
func (sc *searcher) results() ([]searchHit, int) {
	out := slices.Clone(sc.h)
	slices.SortFunc(out, func(a, b searchHit) int {
		if hitLess(a, b) {
			return 1
		}
		if hitLess(b, a) {
			return -1
		}
		return 0
	})
	return out, sc.matched
}

// hitLess reports whether a ranks below b: lower score, then the later
// kind, then the longer name, then namespace/name reversed.
func hitLess(a, b searchHit) bool {
	if a.score != b.score {
		return a.score < b.score
	}
	if a.kind != b.kind {
		return a.kind > b.kind
	}
	an, bn := a.o.GetName(), b.o.GetName()
	if len(an) != len(bn) {
		return len(an) > len(bn)
	}
	if ans, bns := a.o.GetNamespace(), b.o.GetNamespace(); ans != bns {
		return ans > bns
	}
	return an > bn
}

type hitHeap []searchHit

func (h hitHeap) Len() int           { return len(h) }
func (h hitHeap) Less(i, j int) bool { return hitLess(h[i], h[j]) }
func (h hitHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *hitHeap) Push(x any)        { *h = append(*h, x.(searchHit)) }
func (h *hitHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

// Fuzzy scores: every matched character earns scoreMatch; one at the
// name's start, or at a word's start (after - . _ : /), earns a bonus; one
// right after the previous matched character earns scoreContiguous; each
// character skipped between two matches costs scoreGap. The name equal to
// the query gets scoreExact on top, so it is always first.
const (
	scoreMatch      = 16
	scorePrefix     = 24
	scoreWordStart  = 12
	scoreContiguous = 20
	scoreGap        = 1
	scoreExact      = 1000
)

// score matches the query against name as a case-insensitive subsequence
// and returns the best alignment's score (dynamic programming over query ×
// name, O(len(q)·len(name))), or false when it is not a subsequence.
func (sc *searcher) score(name string) (int, bool) {
	p := sc.pattern
	m, n := len(p), len(name)
	if m == 0 || m > n {
		return 0, false
	}
	// Subsequence check first: most names fail here in one pass.
	i := 0
	for j := 0; j < n && i < m; j++ {
		if lower(name[j]) == p[i] {
			i++
		}
	}
	if i < m {
		return 0, false
	}
	if cap(sc.prev) < n {
		sc.prev, sc.cur = make([]int, n), make([]int, n)
	}
	prev, cur := sc.prev[:n], sc.cur[:n]
	const none = -1 << 30
	for j := 0; j < n; j++ {
		if lower(name[j]) == p[0] {
			prev[j] = scoreMatch + bonus(name, j)
		} else {
			prev[j] = none
		}
	}
	for i := 1; i < m; i++ {
		// best is max over k < j-1 of prev[k] + k (the gap cost is
		// (j-k-1)·scoreGap, so prev[k] + k·scoreGap - (j-1)·scoreGap).
		best := none
		for j := 0; j < n; j++ {
			cur[j] = none
			if j >= 2 && prev[j-2] > none && prev[j-2]+(j-2)*scoreGap > best {
				best = prev[j-2] + (j-2)*scoreGap
			}
			if lower(name[j]) != p[i] || j == 0 {
				continue
			}
			v := none
			if prev[j-1] > none {
				v = prev[j-1] + scoreContiguous
			}
			if best > none {
				v = max(v, best-(j-1)*scoreGap)
			}
			if v > none {
				cur[j] = v + scoreMatch + bonus(name, j)
			}
		}
		prev, cur = cur, prev
	}
	top := none
	for _, v := range prev {
		top = max(top, v)
	}
	if top == none {
		return 0, false
	}
	if m == n && strings.EqualFold(name, string(p)) {
		top += scoreExact
	}
	return top, true
}

func bonus(name string, j int) int {
	if j == 0 {
		return scorePrefix
	}
	switch name[j-1] {
	case '-', '.', '_', ':', '/':
		return scoreWordStart
	}
	return 0
}

func lower(b byte) byte {
	if 'A' <= b && b <= 'Z' {
		return b + 'a' - 'A'
	}
	return b
}
