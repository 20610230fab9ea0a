package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// writeTimeout bounds the wait for one write to reach every watcher.
const writeTimeout = 10 * time.Second

// fanout tracks which watcher received which write, and when.
type fanout struct {
	watchers, writes int
	recv             []atomic.Int64 // unix nanos, [watcher*(writes+1)+seq]
	counts           []atomic.Int32
	done             []chan struct{}
	errMu            sync.Mutex
	err              error
}

func newFanout(watchers, writes int) *fanout {
	f := &fanout{
		watchers: watchers,
		writes:   writes,
		recv:     make([]atomic.Int64, watchers*(writes+1)),
		counts:   make([]atomic.Int32, writes+1),
		done:     make([]chan struct{}, writes+1),
	}
	for i := range f.done {
		f.done[i] = make(chan struct{})
	}
	return f
}

// got records that watcher w decoded write seq (0 is the warm-up write).
func (f *fanout) got(w, seq int) {
	if seq < 0 || seq > f.writes {
		return
	}
	slot := w*(f.writes+1) + seq
	if !f.recv[slot].CompareAndSwap(0, time.Now().UnixNano()) {
		return
	}
	if int(f.counts[seq].Add(1)) == f.watchers {
		close(f.done[seq])
	}
}

func (f *fanout) fail(err error) {
	f.errMu.Lock()
	defer f.errMu.Unlock()
	if f.err == nil {
		f.err = err
	}
}

// drive does the warm-up write and the timed writes, waiting after each
// for every watcher, and returns the per-watcher and last-watcher latencies.
func (f *fanout) drive(ctx context.Context, write func(ctx context.Context, seq int) error) (per, last []time.Duration, missed int, err error) {
	sent := make([]time.Time, f.writes+1)
	for seq := 0; seq <= f.writes; seq++ {
		sent[seq] = time.Now()
		if err := write(ctx, seq); err != nil {
			return nil, nil, 0, fmt.Errorf("write %d: %w", seq, err)
		}
		timeout := writeTimeout
		if seq == 0 {
			timeout = 60 * time.Second // watchers may still be connecting
		}
		select {
		case <-f.done[seq]:
		case <-time.After(timeout):
			if seq == 0 {
				f.errMu.Lock()
				defer f.errMu.Unlock()
				return nil, nil, 0, fmt.Errorf("only %d of %d watchers received the warm-up write (first watcher error: %v)", f.counts[0].Load(), f.watchers, f.err)
			}
		case <-ctx.Done():
			return nil, nil, 0, ctx.Err()
		}
	}
	for seq := 1; seq <= f.writes; seq++ {
		var worst time.Duration
		complete := true
		for w := range f.watchers {
			t := f.recv[w*(f.writes+1)+seq].Load()
			if t == 0 {
				missed++
				complete = false
				continue
			}
			d := time.Unix(0, t).Sub(sent[seq])
			per = append(per, d)
			worst = max(worst, d)
		}
		if complete {
			last = append(last, worst)
		} else {
			last = append(last, writeTimeout)
		}
	}
	slices.Sort(per)
	slices.Sort(last)
	return per, last, missed, nil
}

// watchEvent is the part of a watch event the watchers decode.
type watchEvent struct {
	Type   string `json:"type"`
	Object struct {
		Data struct {
			Seq string `json:"seq"`
		} `json:"data"`
	} `json:"object"`
}

func (r *run) watchPhase(ctx context.Context) error {
	W, K := r.opts.Watchers, r.opts.WatchWrites
	name := fmt.Sprintf("bench-%s-watched", r.id)
	cmc := r.clients[0].CoreV1().ConfigMaps(r.ns)
	cm, err := cmc.Create(ctx, &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: r.ns},
		Data:       map[string]string{"seq": "-1", "payload": filler(0)},
	}, metav1.CreateOptions{})
	if err != nil {
		return fmt.Errorf("create watched configmap: %w", err)
	}
	var conns []*kubernetes.Clientset
	for range r.opts.WatchConns {
		cs, err := r.t.clientset(ctx)
		if err != nil {
			return err
		}
		conns = append(conns, cs)
	}
	wctx, cancel := context.WithCancel(ctx)
	f := newFanout(W, K)
	var wg sync.WaitGroup
	defer func() {
		cancel()
		wg.Wait()
	}()
	setup := time.Now()
	r.progress("starting %d watchers on %d connections", W, len(conns))
	for w := range W {
		rc := conns[w%len(conns)].CoreV1().RESTClient()
		wg.Add(1)
		go func() {
			defer wg.Done()
			body, err := rc.Get().Namespace(r.ns).Resource("configmaps").
				Param("watch", "true").Param("resourceVersion", cm.ResourceVersion).
				Stream(wctx)
			if err != nil {
				if wctx.Err() == nil {
					f.fail(fmt.Errorf("watcher %d: %w", w, err))
				}
				return
			}
			defer body.Close()
			dec := json.NewDecoder(body)
			for {
				var ev watchEvent
				if err := dec.Decode(&ev); err != nil {
					if wctx.Err() == nil && !errors.Is(err, io.EOF) {
						f.fail(fmt.Errorf("watcher %d: %w", w, err))
					}
					return
				}
				if ev.Type != "MODIFIED" {
					continue
				}
				if seq, err := strconv.Atoi(ev.Object.Data.Seq); err == nil {
					f.got(w, seq)
				}
			}
		}()
	}
	cur := cm
	per, last, missed, err := f.drive(ctx, func(ctx context.Context, seq int) error {
		c := cur.DeepCopy()
		c.Data["seq"] = strconv.Itoa(seq)
		out, err := cmc.Update(ctx, c, metav1.UpdateOptions{})
		if err != nil {
			return err
		}
		cur = out
		return nil
	})
	if err != nil {
		return err
	}
	res := &WatchResult{
		Watchers: W, Connections: len(conns), Writes: K, Missed: missed,
		P50ms: percentile(per, 0.5), P99ms: percentile(per, 0.99),
		LastWatcherP50ms: percentile(last, 0.5), LastWatcherP99ms: percentile(last, 0.99), LastWatcherMaxms: percentile(last, 1),
		SetupSec: round3(time.Since(setup).Seconds()),
	}
	if f.err != nil {
		r.note("watch: %v", f.err)
	}
	if r.t.etcd != nil {
		if err := r.watchEtcd(ctx, res); err != nil {
			return err
		}
	}
	r.res.WatchFanout = res
	return nil
}

// watchEtcd runs the same fan-out as raw etcd watches of one key (the
// client multiplexes them on one gRPC stream, as etcd clients do).
func (r *run) watchEtcd(ctx context.Context, res *WatchResult) error {
	W, K := r.opts.Watchers, r.opts.WatchWrites
	key := fmt.Sprintf("/skiff-bench/%s/watched", r.id)
	put, err := r.t.etcd.Put(ctx, key, "-1")
	if err != nil {
		return fmt.Errorf("etcd put: %w", err)
	}
	wctx, cancel := context.WithCancel(ctx)
	f := newFanout(W, K)
	var wg sync.WaitGroup
	defer func() {
		cancel()
		wg.Wait()
	}()
	for w := range W {
		ch := r.t.etcd.Watch(wctx, key, clientv3.WithRev(put.Header.Revision+1))
		wg.Add(1)
		go func() {
			defer wg.Done()
			for resp := range ch {
				if err := resp.Err(); err != nil {
					if wctx.Err() == nil {
						f.fail(fmt.Errorf("etcd watcher %d: %w", w, err))
					}
					return
				}
				for _, ev := range resp.Events {
					v, _, _ := strings.Cut(string(ev.Kv.Value), ":")
					if seq, err := strconv.Atoi(v); err == nil {
						f.got(w, seq)
					}
				}
			}
		}()
	}
	per, last, missed, err := f.drive(ctx, func(ctx context.Context, seq int) error {
		_, err := r.t.etcd.Put(ctx, key, strconv.Itoa(seq)+":"+filler(0))
		return err
	})
	if err != nil {
		return fmt.Errorf("etcd fan-out: %w", err)
	}
	if missed > 0 {
		r.note("etcd watch fan-out missed %d deliveries", missed)
	}
	res.EtcdP50ms, res.EtcdP99ms = percentile(per, 0.5), percentile(per, 0.99)
	res.EtcdLastWatcherP99ms = percentile(last, 0.99)
	if res.EtcdP99ms > 0 {
		res.RatioP99VsEtcd = round3(res.P99ms / res.EtcdP99ms)
	}
	return nil
}
