package backend

import (
	"context"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/skiffhq/skiff/addons/metrics"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// Metrics feed (issue #11 item 5). When the metrics add-on runs in the
// same process (`skiff server`), Options.Metrics is its collector and the
// websocket serves its history and latest usage:
//
//	{"type":"metrics","id":"m1","kind":"pod","namespace":"team","name":"web-1"}
//
// kind is one of
//
//	cluster    sum of every node's series                  list nodes.metrics.k8s.io
//	node       a node (name)                               get  nodes.metrics.k8s.io
//	namespace  sum of a namespace's pods                   list pods.metrics.k8s.io in namespace
//	workload   a controller's pods (name "<Kind>/<name>")  list pods.metrics.k8s.io in namespace
//	pod        a pod and its containers                    get  pods.metrics.k8s.io in namespace
//	top        the top "limit" pods by CPU and by memory   list pods.metrics.k8s.io in namespace ("" = all)
//	volumes    PersistentVolumeClaims' used/capacity bytes get (name) or list persistentvolumeclaims
//	           of namespace ("" = all), or one claim (name)   in namespace
//
// and the right column is the access the user needs, asked with a
// SelfSubjectAccessReview as the user when the feed opens and again by
// the re-authorizer (reauth.go) like any subscription. The answer is a
// full "metrics" message at once and again after every scrape round (the
// feed looks for a new round every MetricsPoll); "unsubscribe" ends it:
//
//	{"type":"metrics","id":"m1","available":true,"interval":15,"time":1700000000000,
//	 "series":[{"name":"web-1","t":[...unix s...],"cpu":[...cores...],"memory":[...bytes...]}],
//	 "latest":{"cpu":0.25,"memory":1.2e7,"time":1700000000000,"stale":false},
//	 "top":{"cpu":[{"namespace":..,"name":..,"cpu":..,"memory":..,"stale":..}],"memory":[...]},
//	 "volumes":{"team/data":{"used":1024,"capacity":1e9,"available":..,"pod":"team/db-0","time":..,"stale":false}}}
//
// Series are columns ready for a chart; a round a series missed (a stale
// node, a pod not running yet) is absent from t, never a zero. latest is
// the newest snapshot's usage; stale marks a node (and its pods) whose
// last scrape failed, with lastError. Without a collector in process
// (`skiff dashboard`) the answer is {"available":false,"message":...}.

var (
	nodeMetricsGVR = schema.GroupVersionResource{Group: "metrics.k8s.io", Version: "v1beta1", Resource: "nodes"}
	podMetricsGVR  = schema.GroupVersionResource{Group: "metrics.k8s.io", Version: "v1beta1", Resource: "pods"}
	claimsGVR      = schema.GroupVersionResource{Version: "v1", Resource: "persistentvolumeclaims"}
)

// MetricsUnavailable is the message of a feed without a collector.
const MetricsUnavailable = "metrics history unavailable: this dashboard runs without the metrics add-on (skiff dashboard alone); skiff server serves charts"

type metricsMsg struct {
	Type      string               `json:"type"`
	ID        string               `json:"id"`
	Available bool                 `json:"available"`
	Message   string               `json:"message,omitempty"`
	Interval  float64              `json:"interval,omitempty"`
	Time      int64                `json:"time,omitempty"`
	Series    []seriesMsg          `json:"series"`
	Latest    *usageMsg            `json:"latest,omitempty"`
	Top       *topMsg              `json:"top,omitempty"`
	Volumes   map[string]volumeMsg `json:"volumes,omitempty"`
}

// volumeMsg is a claim's latest usage, from the pods mounting it.
type volumeMsg struct {
	Used      uint64 `json:"used"`
	Capacity  uint64 `json:"capacity"`
	Available uint64 `json:"available"`
	Pod       string `json:"pod"`
	Time      int64  `json:"time"`
	Stale     bool   `json:"stale"`
}

type seriesMsg struct {
	Name   string    `json:"name"`
	T      []int64   `json:"t"`
	CPU    []float32 `json:"cpu"`
	Memory []float32 `json:"memory"`
}

type usageMsg struct {
	CPU       float64 `json:"cpu"`
	Memory    float64 `json:"memory"`
	Time      int64   `json:"time"`
	Stale     bool    `json:"stale"`
	LastError string  `json:"lastError,omitempty"`
}

type podUsageMsg struct {
	Namespace string  `json:"namespace"`
	Name      string  `json:"name"`
	CPU       float64 `json:"cpu"`
	Memory    float64 `json:"memory"`
	Stale     bool    `json:"stale"`
}

type topMsg struct {
	CPU    []podUsageMsg `json:"cpu"`
	Memory []podUsageMsg `json:"memory"`
}

// metricsAuthz is the access a feed kind needs.
func metricsAuthz(m clientMsg) (*subAuthz, error) {
	bad := func(f string, a ...any) (*subAuthz, error) {
		return nil, &subError{http.StatusBadRequest, "metrics: " + fmt.Sprintf(f, a...)}
	}
	pods := func(verb, ns string) *subAuthz {
		return &subAuthz{gvr: podMetricsGVR, ns: ns, namespaced: true, verbs: []string{verb}, what: "pods.metrics.k8s.io"}
	}
	switch m.Kind {
	case "cluster":
		return &subAuthz{gvr: nodeMetricsGVR, verbs: []string{"list"}, what: "nodes.metrics.k8s.io"}, nil
	case "node":
		if m.Name == "" {
			return bad("a node name is required")
		}
		return &subAuthz{gvr: nodeMetricsGVR, verbs: []string{"get"}, what: "nodes.metrics.k8s.io"}, nil
	case "namespace":
		if m.Namespace == "" {
			return bad("a namespace is required")
		}
		return pods("list", m.Namespace), nil
	case "workload":
		if m.Namespace == "" || strings.Count(m.Name, "/") != 1 {
			return bad(`a namespace and a name "<Kind>/<name>" are required`)
		}
		return pods("list", m.Namespace), nil
	case "pod":
		if m.Namespace == "" || m.Name == "" {
			return bad("a namespace and a pod name are required")
		}
		return pods("get", m.Namespace), nil
	case "top":
		return pods("list", m.Namespace), nil
	case "volumes":
		verb := "list"
		if m.Name != "" {
			if m.Namespace == "" {
				return bad("a claim's namespace is required")
			}
			verb = "get"
		}
		return &subAuthz{gvr: claimsGVR, ns: m.Namespace, namespaced: true, verbs: []string{verb}}, nil
	}
	return bad("unknown kind %q (cluster, node, namespace, workload, pod, top, volumes)", m.Kind)
}

// runMetrics serves one metrics feed until ctx ends.
func (c *wsConn) runMetrics(ctx context.Context, sub *subscription, m clientMsg) error {
	az, err := metricsAuthz(m)
	if err != nil {
		return err
	}
	col := c.s.opts.Metrics
	if m.Cluster != "" {
		c.sendSub(ctx, metricsMsg{Type: "metrics", ID: m.ID, Message: "metrics history covers the host cluster only", Series: []seriesMsg{}})
		<-ctx.Done()
		return nil
	}
	if col == nil {
		c.sendSub(ctx, metricsMsg{Type: "metrics", ID: m.ID, Message: MetricsUnavailable, Series: []seriesMsg{}})
		<-ctx.Done()
		return nil
	}
	for _, verb := range az.reviewVerbs() {
		ok, err := canI(ctx, c.sess.client, verb, az.gvr, az.ns, "")
		if err != nil {
			return fmt.Errorf("access review: %w", err)
		}
		if !ok {
			return &subError{http.StatusForbidden, az.denied(c.sess.user, verb)}
		}
	}
	c.s.startReauth()
	sub.authz.Store(az)
	tick := time.NewTicker(c.s.opts.MetricsPoll)
	defer tick.Stop()
	var last *metrics.Snapshot
	for {
		if snap := col.Latest(); snap != last {
			last = snap
			c.sendSub(ctx, buildMetrics(col, snap, m))
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

// buildMetrics answers one feed from the collector's history and the
// snapshot snap.
func buildMetrics(col *metrics.Collector, snap *metrics.Snapshot, m clientMsg) metricsMsg {
	h := col.History()
	out := metricsMsg{Type: "metrics", ID: m.ID, Available: true, Interval: col.Interval().Seconds(), Series: []seriesMsg{}}
	if !snap.Time.IsZero() {
		out.Time = snap.Time.UnixMilli()
	}
	add := func(name string, pts []metrics.Point) {
		out.Series = append(out.Series, toSeries(name, pts))
	}
	switch m.Kind {
	case "cluster":
		add("cluster", sumSeries(h, metrics.KindNode, h.Keys(metrics.KindNode)))
		var u usageMsg
		for _, n := range snap.Nodes {
			u.CPU += float64(n.CPU) / 1e9
			u.Memory += float64(n.Memory)
			u.Stale = u.Stale || n.Stale
		}
		if len(snap.Nodes) > 0 {
			u.Time = snap.Time.UnixMilli()
			out.Latest = &u
		}
	case "node":
		add(m.Name, h.Series(metrics.KindNode, m.Name))
		if n := snap.Nodes[m.Name]; n != nil {
			out.Latest = &usageMsg{CPU: float64(n.CPU) / 1e9, Memory: float64(n.Memory), Time: n.Time.UnixMilli(), Stale: n.Stale, LastError: n.LastError}
		}
	case "namespace":
		add(m.Namespace, h.Series(metrics.KindNamespace, m.Namespace))
	case "workload":
		add(m.Name, h.Series(metrics.KindWorkload, m.Namespace+"/"+m.Name))
	case "pod":
		key := m.Namespace + "/" + m.Name
		add(m.Name, h.Series(metrics.KindPod, key))
		if p := snap.Pods[key]; p != nil {
			out.Latest = &usageMsg{CPU: float64(p.CPU) / 1e9, Memory: float64(p.Memory), Time: p.Time.UnixMilli(), Stale: p.Stale}
			for _, ct := range p.Containers {
				add(ct.Name, h.Series(metrics.KindContainer, key+"/"+ct.Name))
			}
		}
	case "top":
		out.Top = topPods(snap, m.Namespace, m.Limit)
	case "volumes":
		out.Volumes = map[string]volumeMsg{}
		for key, v := range snap.Volumes {
			if (m.Namespace != "" && v.Namespace != m.Namespace) || (m.Name != "" && v.Claim != m.Name) {
				continue
			}
			out.Volumes[key] = volumeMsg{Used: v.UsedBytes, Capacity: v.CapacityBytes, Available: v.AvailableBytes,
				Pod: v.Pod, Time: v.Time.UnixMilli(), Stale: v.Stale}
		}
	}
	return out
}

func toSeries(name string, pts []metrics.Point) seriesMsg {
	s := seriesMsg{Name: name, T: make([]int64, len(pts)), CPU: make([]float32, len(pts)), Memory: make([]float32, len(pts))}
	for i, p := range pts {
		s.T[i] = p.Time.Unix()
		s.CPU[i] = float32(p.CPU)
		s.Memory[i] = float32(p.Memory)
	}
	return s
}

// sumSeries adds up series round by round (rounds share their time); a
// round in which one of them is missing (a stale node) is left out of
// the sum rather than drawn too low.
func sumSeries(h *metrics.History, kind metrics.Kind, keys []string) []metrics.Point {
	type acc struct {
		p metrics.Point
		n int
	}
	byTime := map[int64]*acc{}
	for _, k := range keys {
		for _, p := range h.Series(kind, k) {
			a := byTime[p.Time.UnixNano()]
			if a == nil {
				a = &acc{p: metrics.Point{Time: p.Time}}
				byTime[p.Time.UnixNano()] = a
			}
			a.p.CPU += p.CPU
			a.p.Memory += p.Memory
			a.n++
		}
	}
	most := 0
	for _, a := range byTime {
		most = max(most, a.n)
	}
	out := make([]metrics.Point, 0, len(byTime))
	for _, a := range byTime {
		if a.n == most {
			out = append(out, a.p)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Time.Before(out[j].Time) })
	return out
}

// topPods returns the limit (default 10, at most 50) pods of namespace ns
// ("" = all) using the most CPU and the most memory.
func topPods(snap *metrics.Snapshot, ns string, limit int) *topMsg {
	if limit <= 0 {
		limit = 10
	}
	limit = min(limit, 50)
	all := make([]podUsageMsg, 0, len(snap.Pods))
	for _, p := range snap.Pods {
		if ns != "" && p.Namespace != ns {
			continue
		}
		all = append(all, podUsageMsg{Namespace: p.Namespace, Name: p.Name, CPU: float64(p.CPU) / 1e9, Memory: float64(p.Memory), Stale: p.Stale})
	}
	pick := func(less func(a, b podUsageMsg) bool) []podUsageMsg {
		sort.Slice(all, func(i, j int) bool {
			if less(all[i], all[j]) {
				return true
			}
			if less(all[j], all[i]) {
				return false
			}
			return all[i].Namespace+"/"+all[i].Name < all[j].Namespace+"/"+all[j].Name
		})
		return append([]podUsageMsg{}, all[:min(limit, len(all))]...)
	}
	return &topMsg{
		CPU:    pick(func(a, b podUsageMsg) bool { return a.CPU > b.CPU }),
		Memory: pick(func(a, b podUsageMsg) bool { return a.Memory > b.Memory }),
	}
}
