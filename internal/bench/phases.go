package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// payload is the size of the one data value of every ConfigMap.
const payload = 64

// state of the create/get/update phases.
type kvState struct {
	cms []*corev1.ConfigMap // created through the API, nil where a create failed
	// raw etcd counterparts: keys, values and their mod revisions.
	rawKeys []string
	rawRevs []int64
	value   []byte
}

func (r *run) cmName(i int) string { return fmt.Sprintf("bench-%s-cm-%06d", r.id, i) }

func filler(seed int) string {
	b := []byte(strings.Repeat("x", payload))
	s := fmt.Sprintf("%d", seed)
	copy(b, s)
	return string(b)
}

func (r *run) newConfigMap(i int) *corev1.ConfigMap {
	return &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: r.cmName(i), Namespace: r.ns, Labels: map[string]string{"app": "skiff-bench"}},
		Data:       map[string]string{"payload": filler(i)},
	}
}

// rounds runs skiff and etcd alternately, Rounds times; etcd is nil when
// there is no raw etcd to compare with.
func (r *run) rounds(ctx context.Context, skiff, etcd func(ctx context.Context, round int) sample) *Throughput {
	var sk, et []sample
	var skCPU, etCPU time.Duration
	for round := range r.opts.Rounds {
		c0 := processCPU()
		sk = append(sk, skiff(ctx, round))
		skCPU += processCPU() - c0
		if etcd != nil && r.t.etcd != nil {
			c0 = processCPU()
			et = append(et, etcd(ctx, round))
			etCPU += processCPU() - c0
		}
	}
	out := &Throughput{}
	out.CPUPerOpUs = cpuPerOp(skCPU, sk)
	out.EtcdCPUPerOpUs = cpuPerOp(etCPU, et)
	s := merge(sk)
	out.Ops, out.Errors = s.ops, s.errors
	out.P50ms, out.P99ms = percentile(s.latencies, 0.5), percentile(s.latencies, 0.99)
	for _, x := range sk {
		out.RoundOpsPerSec = append(out.RoundOpsPerSec, round3(x.opsPerSec()))
	}
	out.OpsPerSec = round3(Median(out.RoundOpsPerSec))
	if s.firstErr != nil {
		r.note("skiff errors (%d), first: %v", s.errors, s.firstErr)
	}
	if len(et) > 0 {
		e := merge(et)
		out.EtcdOps = e.ops
		out.EtcdP50ms, out.EtcdP99ms = percentile(e.latencies, 0.5), percentile(e.latencies, 0.99)
		for _, x := range et {
			out.EtcdRounds = append(out.EtcdRounds, round3(x.opsPerSec()))
		}
		out.EtcdOpsPerSec = round3(Median(out.EtcdRounds))
		if out.EtcdOpsPerSec > 0 {
			out.RatioVsEtcd = round3(out.OpsPerSec / out.EtcdOpsPerSec)
		}
		if e.firstErr != nil {
			r.note("etcd errors (%d), first: %v", e.errors, e.firstErr)
		}
	}
	return out
}

// cpuPerOp is the process CPU time per operation in microseconds: unlike
// throughput it hardly depends on what else the machine is doing.
func cpuPerOp(cpu time.Duration, ss []sample) float64 {
	ops := 0
	for _, s := range ss {
		ops += s.ops
	}
	if ops == 0 {
		return 0
	}
	return round3(float64(cpu.Microseconds()) / float64(ops))
}

func merge(ss []sample) sample {
	var out sample
	for _, s := range ss {
		out.ops += s.ops
		out.errors += s.errors
		out.elapsed += s.elapsed
		out.latencies = append(out.latencies, s.latencies...)
		if out.firstErr == nil {
			out.firstErr = s.firstErr
		}
	}
	slices.Sort(out.latencies)
	return out
}

func (r *run) createPhase(ctx context.Context) error {
	n := r.opts.Count
	st := &kvState{cms: make([]*corev1.ConfigMap, n*r.opts.Rounds)}
	r.kv = st
	skiff := func(ctx context.Context, round int) sample {
		return runParallel(ctx, r.opts.Clients, n, r.opts.Duration, func(ctx context.Context, w, i int) error {
			idx := round*n + i
			cm, err := r.clients[w].CoreV1().ConfigMaps(r.ns).Create(ctx, r.newConfigMap(idx), metav1.CreateOptions{})
			if err != nil {
				return err
			}
			st.cms[idx] = cm
			return nil
		})
	}
	etcd := func(ctx context.Context, round int) sample {
		if st.value == nil {
			if err := r.measureValue(ctx, st); err != nil {
				return sample{errors: 1, firstErr: err}
			}
			st.rawKeys = make([]string, n*r.opts.Rounds)
			st.rawRevs = make([]int64, n*r.opts.Rounds)
		}
		return runParallel(ctx, r.opts.Clients, n, r.opts.Duration, func(ctx context.Context, w, i int) error {
			idx := round*n + i
			key := fmt.Sprintf("/skiff-bench/%s/configmaps/%s/%s", r.id, r.ns, r.cmName(idx))
			resp, err := r.t.etcd.Put(ctx, key, string(st.value))
			if err != nil {
				return err
			}
			st.rawKeys[idx], st.rawRevs[idx] = key, resp.Header.Revision
			return nil
		})
	}
	r.res.Create = r.rounds(ctx, skiff, etcd)
	r.res.Create.ValueBytes = len(st.value)
	r.res.Create.EtcdOperation = "Put"
	st.cms = slices.DeleteFunc(st.cms, func(c *corev1.ConfigMap) bool { return c == nil })
	if len(st.cms) == 0 {
		return errors.New("no ConfigMap was created")
	}
	return nil
}

// measureValue reads the stored size of a created ConfigMap, so raw etcd
// writes values of the same size.
func (r *run) measureValue(ctx context.Context, st *kvState) error {
	for _, cm := range st.cms {
		if cm == nil {
			continue
		}
		resp, err := r.t.etcd.Get(ctx, "/registry/configmaps/"+r.ns+"/"+cm.Name)
		if err != nil {
			return fmt.Errorf("read stored configmap: %w", err)
		}
		if len(resp.Kvs) == 1 {
			st.value = bytes.Repeat([]byte("v"), len(resp.Kvs[0].Value))
			return nil
		}
	}
	return errors.New("no created ConfigMap found in etcd")
}

func (r *run) getPhase(ctx context.Context) error {
	st := r.kv
	skiff := func(ctx context.Context, _ int) sample {
		return runParallel(ctx, r.opts.Clients, r.opts.Count, r.opts.Duration, func(ctx context.Context, w, _ int) error {
			cm := st.cms[rand.IntN(len(st.cms))]
			_, err := r.clients[w].CoreV1().ConfigMaps(r.ns).Get(ctx, cm.Name, metav1.GetOptions{})
			return err
		})
	}
	keys := slices.DeleteFunc(slices.Clone(st.rawKeys), func(k string) bool { return k == "" })
	etcd := func(ctx context.Context, _ int) sample {
		if len(keys) == 0 {
			return sample{errors: 1, firstErr: errors.New("no raw keys")}
		}
		return runParallel(ctx, r.opts.Clients, r.opts.Count, r.opts.Duration, func(ctx context.Context, _, _ int) error {
			resp, err := r.t.etcd.Get(ctx, keys[rand.IntN(len(keys))])
			if err == nil && len(resp.Kvs) != 1 {
				err = errors.New("raw key not found")
			}
			return err
		})
	}
	r.res.Get = r.rounds(ctx, skiff, etcd)
	r.res.Get.EtcdOperation = "Get (linearizable)"
	return nil
}

func (r *run) updatePhase(ctx context.Context) error {
	st := r.kv
	clients := r.opts.Clients
	// Each worker updates only its own objects (index % clients == worker),
	// so a resourceVersion is never stale because of another worker.
	nextAPI := make([]int, clients)
	skiff := func(ctx context.Context, _ int) sample {
		return runParallel(ctx, clients, r.opts.Count, r.opts.Duration, func(ctx context.Context, w, i int) error {
			idx := w + clients*nextAPI[w]
			if idx >= len(st.cms) {
				nextAPI[w], idx = 0, w
			}
			if idx >= len(st.cms) {
				return errors.New("too few objects for this worker")
			}
			nextAPI[w]++
			cm := st.cms[idx].DeepCopy()
			cm.Data["payload"] = filler(i + 1_000_000)
			out, err := r.clients[w].CoreV1().ConfigMaps(r.ns).Update(ctx, cm, metav1.UpdateOptions{})
			if err != nil {
				return err
			}
			st.cms[idx] = out
			return nil
		})
	}
	nextRaw := make([]int, clients)
	etcd := func(ctx context.Context, _ int) sample {
		return runParallel(ctx, clients, r.opts.Count, r.opts.Duration, func(ctx context.Context, w, _ int) error {
			idx := w + clients*nextRaw[w]
			if idx >= len(st.rawKeys) || st.rawKeys[idx] == "" {
				nextRaw[w], idx = 0, w
			}
			if idx >= len(st.rawKeys) || st.rawKeys[idx] == "" {
				return errors.New("too few raw keys for this worker")
			}
			nextRaw[w]++
			key := st.rawKeys[idx]
			resp, err := r.t.etcd.Txn(ctx).
				If(clientv3.Compare(clientv3.ModRevision(key), "=", st.rawRevs[idx])).
				Then(clientv3.OpPut(key, string(st.value))).
				Commit()
			if err != nil {
				return err
			}
			if !resp.Succeeded {
				return fmt.Errorf("compare-and-put of %s lost", key)
			}
			st.rawRevs[idx] = resp.Header.Revision
			return nil
		})
	}
	r.res.Update = r.rounds(ctx, skiff, etcd)
	r.res.Update.EtcdOperation = "Txn compare(mod_revision)-and-put"
	return nil
}

func (r *run) newPod(i int) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name:      fmt.Sprintf("bench-%s-pod-%06d", r.id, i),
			Namespace: r.ns,
			Labels:    map[string]string{"app": "skiff-bench"},
		},
		Spec: corev1.PodSpec{
			// Never schedulable, so a real cluster does not run them.
			NodeSelector: map[string]string{"skiff-bench/unschedulable": "true"},
			Containers:   []corev1.Container{{Name: "c", Image: "registry.invalid/skiff-bench:1"}},
		},
	}
}

func (r *run) listPhase(ctx context.Context) error {
	r.progress("creating %d pods", r.opts.Objects)
	s := runParallel(ctx, r.opts.Clients, r.opts.Objects, 30*time.Minute, func(ctx context.Context, w, i int) error {
		_, err := r.clients[w].CoreV1().Pods(r.ns).Create(ctx, r.newPod(i), metav1.CreateOptions{})
		return err
	})
	r.res.CreatePods = &Throughput{
		Ops: s.ops, Errors: s.errors, OpsPerSec: round3(s.opsPerSec()),
		P50ms: percentile(s.latencies, 0.5), P99ms: percentile(s.latencies, 0.99),
	}
	if s.firstErr != nil {
		r.note("pod create errors (%d), first: %v", s.errors, s.firstErr)
	}
	if s.ops == 0 {
		return fmt.Errorf("no pod was created: %w", s.firstErr)
	}
	out := &ListResult{Runs: r.opts.ListRuns, PageLimit: r.opts.PageLimit}
	rc := r.clients[0].CoreV1().RESTClient()

	// Unpaginated: the body is read, not decoded (server cost plus transfer).
	var lat []time.Duration
	for i := -1; i < r.opts.ListRuns; i++ { // run -1 warms up
		t0 := time.Now()
		body, err := rc.Get().Namespace(r.ns).Resource("pods").DoRaw(ctx)
		d := time.Since(t0)
		if err != nil {
			return fmt.Errorf("list pods: %w", err)
		}
		if i < 0 {
			n, err := countItems(body)
			if err != nil {
				return err
			}
			out.Objects, out.Bytes = n, len(body)
			continue
		}
		lat = append(lat, d)
	}
	slices.Sort(lat)
	out.P50ms, out.P99ms = percentile(lat, 0.5), percentile(lat, 0.99)

	// Typed client-go List: what a Go controller pays, decoding included.
	var dec []float64
	for range min(3, r.opts.ListRuns) {
		t0 := time.Now()
		l, err := r.clients[0].CoreV1().Pods(r.ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return fmt.Errorf("typed list pods: %w", err)
		}
		dec = append(dec, ms(time.Since(t0)))
		if len(l.Items) != out.Objects {
			r.note("typed list returned %d pods, raw list %d", len(l.Items), out.Objects)
		}
	}
	out.ClientGoDecodedP50ms = Median(dec)

	// Paginated, walked to the end.
	lat = lat[:0]
	for range r.opts.ListRuns {
		t0 := time.Now()
		pages, items := 0, 0
		cont := ""
		for {
			req := rc.Get().Namespace(r.ns).Resource("pods").Param("limit", fmt.Sprint(r.opts.PageLimit))
			if cont != "" {
				req = req.Param("continue", cont)
			}
			body, err := req.DoRaw(ctx)
			if err != nil {
				return fmt.Errorf("paginated list pods: %w", err)
			}
			var page struct {
				Metadata struct {
					Continue string `json:"continue"`
				} `json:"metadata"`
				Items []json.RawMessage `json:"items"`
			}
			if err := json.Unmarshal(body, &page); err != nil {
				return fmt.Errorf("decode list page: %w", err)
			}
			pages++
			items += len(page.Items)
			cont = page.Metadata.Continue
			if cont == "" {
				break
			}
		}
		lat = append(lat, time.Since(t0))
		out.Pages = pages
		if items != out.Objects {
			r.note("paginated list walked %d pods, unpaginated list %d", items, out.Objects)
		}
	}
	slices.Sort(lat)
	out.PagedP50ms, out.PagedP99ms = percentile(lat, 0.5), percentile(lat, 0.99)

	if r.t.etcd != nil {
		if err := r.listEtcd(ctx, out); err != nil {
			return err
		}
	}
	r.res.List = out
	return nil
}

// listEtcd times a Range of the pods prefix, whole and in pages.
func (r *run) listEtcd(ctx context.Context, out *ListResult) error {
	prefix := "/registry/pods/" + r.ns + "/"
	var lat []time.Duration
	for i := -1; i < r.opts.ListRuns; i++ {
		t0 := time.Now()
		resp, err := r.t.etcd.Get(ctx, prefix, clientv3.WithPrefix())
		d := time.Since(t0)
		if err != nil {
			return fmt.Errorf("etcd range: %w", err)
		}
		if i >= 0 {
			lat = append(lat, d)
		} else if len(resp.Kvs) != out.Objects {
			r.note("etcd range found %d pods, API list %d", len(resp.Kvs), out.Objects)
		}
	}
	slices.Sort(lat)
	out.EtcdP50ms, out.EtcdP99ms = percentile(lat, 0.5), percentile(lat, 0.99)
	lat = lat[:0]
	end := clientv3.GetPrefixRangeEnd(prefix)
	for range r.opts.ListRuns {
		t0 := time.Now()
		key := prefix
		var rev int64
		for {
			opts := []clientv3.OpOption{clientv3.WithRange(end), clientv3.WithLimit(int64(r.opts.PageLimit))}
			if rev != 0 {
				opts = append(opts, clientv3.WithRev(rev))
			}
			resp, err := r.t.etcd.Get(ctx, key, opts...)
			if err != nil {
				return fmt.Errorf("etcd paginated range: %w", err)
			}
			rev = resp.Header.Revision
			if !resp.More || len(resp.Kvs) == 0 {
				break
			}
			key = string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00"
		}
		lat = append(lat, time.Since(t0))
	}
	slices.Sort(lat)
	out.EtcdPagedP50ms, out.EtcdPagedP99ms = percentile(lat, 0.5), percentile(lat, 0.99)
	if out.EtcdP50ms > 0 {
		out.RatioVsEtcd = round3(out.P50ms / out.EtcdP50ms)
	}
	if out.EtcdPagedP50ms > 0 {
		out.PagedRatio = round3(out.PagedP50ms / out.EtcdPagedP50ms)
	}
	return nil
}

func countItems(body []byte) (int, error) {
	var l struct {
		Items []json.RawMessage `json:"items"`
	}
	if err := json.Unmarshal(body, &l); err != nil {
		return 0, fmt.Errorf("decode list: %w", err)
	}
	return len(l.Items), nil
}
