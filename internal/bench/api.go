package bench

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"runtime"
	"slices"
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// Options configure API.
type Options struct {
	// Kubeconfig targets an existing cluster; Embedded starts an
	// in-process Skiff server instead (exactly one must be set).
	Kubeconfig string
	Embedded   bool
	// Clients is the number of parallel clients, each with its own
	// connection.
	Clients int
	// Count is the number of operations per round of the create, get and
	// update phases; Duration caps each round.
	Count    int
	Duration time.Duration
	// Rounds repeats create, get and update (alternating Skiff and raw
	// etcd); throughput is the median of the rounds.
	Rounds int
	// Objects is the number of pods for the LIST phase, ListRuns how
	// often each LIST is timed and PageLimit the page size of the
	// paginated LIST.
	Objects   int
	ListRuns  int
	PageLimit int
	// Watchers is the number of watchers of the fan-out phase, spread
	// over WatchConns connections (0 = one per 250 watchers); WatchWrites
	// is the number of timed writes.
	Watchers    int
	WatchConns  int
	WatchWrites int
	// FloodRequests is the number of bad-token requests, sent by
	// FloodWorkers goroutines (0 = skip the phase).
	FloodRequests int
	FloodWorkers  int
	// FloodSources is the number of loopback source addresses a second
	// flood is spread over, on a loopback target (0 = no second flood).
	FloodSources int
	Namespace    string
	// ServerPID is read for the idle RSS of a --kubeconfig target.
	ServerPID int
	// ServerBin, with Embedded, is a skiff binary started as a separate
	// `skiff server` whose idle RSS is the one reported (the in-process
	// server shares its process with the benchmark client).
	ServerBin string
	// ContentType is the wire format of the benchmark clients: "json"
	// (the default) or "protobuf" (protobuf bodies, Accept protobuf with a
	// JSON fallback, as kube components).
	ContentType string
	// Phases selects phases by name (create, get, update, list, watch,
	// flood); empty runs all. get and update need create.
	Phases []string
	// Progress receives progress lines (nil = discard).
	Progress io.Writer
}

// Defaults fills unset options.
func (o *Options) Defaults() {
	setDefault(&o.Clients, 8)
	setDefault(&o.Count, 2000)
	setDefault(&o.Rounds, 3)
	setDefault(&o.Objects, 10000)
	setDefault(&o.ListRuns, 5)
	setDefault(&o.PageLimit, 500)
	setDefault(&o.Watchers, 1000)
	setDefault(&o.WatchWrites, 20)
	setDefault(&o.FloodWorkers, 32)
	if o.ContentType == "" {
		o.ContentType = "json"
	}
	if o.Duration <= 0 {
		o.Duration = 30 * time.Second
	}
	if o.Namespace == "" {
		o.Namespace = "skiff-bench"
	}
	if o.WatchConns <= 0 {
		o.WatchConns = max(1, (o.Watchers+249)/250)
	}
	if o.Progress == nil {
		o.Progress = io.Discard
	}
}

func setDefault(p *int, v int) {
	if *p <= 0 {
		*p = v
	}
}

// run is the state shared by the phases of one benchmark run.
type run struct {
	opts    Options
	t       *target
	ns      string
	id      string
	clients []*kubernetes.Clientset
	kv      *kvState
	res     *Result
}

func (r *run) progress(format string, args ...any) {
	fmt.Fprintf(r.opts.Progress, "skiff-bench api: "+format+"\n", args...)
}

func (r *run) note(format string, args ...any) {
	r.res.Notes = append(r.res.Notes, fmt.Sprintf(format, args...))
}

// API runs the API benchmark and returns its result.
func API(ctx context.Context, opts Options) (*Result, error) {
	opts.Defaults()
	if opts.Embedded == (opts.Kubeconfig != "") {
		return nil, errors.New("set exactly one of --embedded and --kubeconfig")
	}
	if opts.ContentType != "json" && opts.ContentType != "protobuf" {
		return nil, fmt.Errorf("content type %q: want json or protobuf", opts.ContentType)
	}
	start, cpu0, load0 := time.Now(), processCPU(), LoadAvg()
	var (
		t   *target
		err error
	)
	if opts.Embedded {
		t, err = startEmbedded(ctx, opts.Progress)
	} else {
		t, err = fromKubeconfig(opts.Kubeconfig)
	}
	if err != nil {
		return nil, err
	}
	defer t.close()
	t.protobuf = opts.ContentType == "protobuf"
	idb := make([]byte, 3)
	_, _ = rand.Read(idb)
	r := &run{opts: opts, t: t, ns: opts.Namespace, id: hex.EncodeToString(idb), res: &Result{
		Benchmark:   "api",
		Server:      t.name,
		Clients:     opts.Clients,
		ContentType: opts.ContentType,
		Namespace:   opts.Namespace,
		Rounds:      opts.Rounds,
		GOMAXPROCS:  runtime.GOMAXPROCS(0),
		Host:        HostInfo{CPUs: runtime.NumCPU(), LoadAvgStart: load0},
		Targets:     map[string]bool{},
		Measured:    map[string]float64{},
		Connections: map[string]int64{},
	}}
	if err := r.idleRSS(); err != nil {
		return nil, err
	}
	if err := r.setup(ctx); err != nil {
		return nil, err
	}
	type phase struct {
		name string
		fn   func(context.Context) error
	}
	phases := []phase{
		{"create", r.createPhase},
		{"get", r.getPhase},
		{"update", r.updatePhase},
		{"list", r.listPhase},
		{"watch", r.watchPhase},
		{"flood", r.floodPhase},
	}
	for _, name := range opts.Phases {
		if !slices.ContainsFunc(phases, func(p phase) bool { return p.name == name }) {
			return nil, fmt.Errorf("unknown phase %q", name)
		}
	}
	if len(opts.Phases) > 0 && !slices.Contains(opts.Phases, "create") &&
		(slices.Contains(opts.Phases, "get") || slices.Contains(opts.Phases, "update")) {
		return nil, errors.New("the get and update phases need the create phase")
	}
	for _, p := range phases {
		if len(opts.Phases) > 0 && !slices.Contains(opts.Phases, p.name) {
			continue
		}
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		r.progress("phase %s", p.name)
		before := t.dials.Load()
		if err := p.fn(ctx); err != nil {
			return nil, fmt.Errorf("%s phase: %w", p.name, err)
		}
		r.res.Connections[p.name] = t.dials.Load() - before
	}
	r.cleanup(ctx)
	r.targets()
	r.res.DurationSec = round3(time.Since(start).Seconds())
	r.res.Host.LoadAvgEnd = LoadAvg()
	r.res.Host.ProcessCPUSec = round3((processCPU() - cpu0).Seconds())
	return r.res, nil
}

// idleRSS reads the resident memory before any data is loaded.
func (r *run) idleRSS() error {
	switch {
	case r.opts.Embedded && r.opts.ServerBin != "":
		r.progress("idle RSS of %s server", r.opts.ServerBin)
		info, err := ServerIdleRSS(context.Background(), r.opts.ServerBin, 2*time.Minute)
		if err != nil {
			return err
		}
		r.res.IdleRSSMiB, r.res.IdleRSS = info.MiB, info
	case r.opts.Embedded:
		// Let start-up work (compaction, first GCs) settle.
		time.Sleep(2 * time.Second)
		mib, err := readRSS("self")
		if err != nil {
			return err
		}
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		r.res.IdleRSSMiB = mib
		r.res.IdleRSS = &RSSInfo{
			MiB:            mib,
			Source:         "/proc/self/status VmRSS",
			Note:           "embedded: the whole process (Skiff server, embedded etcd and the benchmark client), empty cluster, before any benchmark data",
			GoHeapInuseMiB: round3(float64(ms.HeapInuse) / (1 << 20)),
		}
	case r.opts.ServerPID > 0:
		pid := strconv.Itoa(r.opts.ServerPID)
		mib, err := readRSS(pid)
		if err != nil {
			return err
		}
		r.res.IdleRSSMiB = mib
		r.res.IdleRSS = &RSSInfo{MiB: mib, Source: "/proc/" + pid + "/status VmRSS", Note: "server process before any benchmark data"}
	}
	return nil
}

// setup creates the namespace and the clients.
func (r *run) setup(ctx context.Context) error {
	for range r.opts.Clients {
		cs, err := r.t.clientset(ctx)
		if err != nil {
			return err
		}
		r.clients = append(r.clients, cs)
	}
	_, err := r.clients[0].CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: r.ns}}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("create namespace %s: %w", r.ns, err)
	}
	return nil
}

// cleanup removes what the run created on a cluster that outlives it.
func (r *run) cleanup(ctx context.Context) {
	if r.opts.Embedded {
		return
	}
	if err := r.clients[0].CoreV1().Namespaces().Delete(ctx, r.ns, metav1.DeleteOptions{}); err != nil {
		r.note("cleanup: delete namespace %s: %v", r.ns, err)
	}
}

// targets compares the results with the goals of the design.
func (r *run) targets() {
	res := r.res
	set := func(key string, v float64, ok bool) {
		res.Targets[key] = ok
		res.Measured[key] = v
	}
	if c := res.Create; c != nil && c.EtcdOpsPerSec > 0 {
		set("create_ge_50pct_etcd", c.RatioVsEtcd, c.RatioVsEtcd >= 0.5)
	}
	if l := res.List; l != nil {
		set("list_10k_p50_under_300ms", l.P50ms, l.P50ms < 300)
		set("list_10k_p99_under_300ms", l.P99ms, l.P99ms < 300)
		if l.Objects < 10000 {
			r.note("LIST targets are for 10000 pods; this run listed %d", l.Objects)
		}
	}
	if w := res.WatchFanout; w != nil {
		set("watch_fanout_p99_under_100ms", w.P99ms, w.P99ms < 100 && w.Missed == 0)
		set("watch_fanout_last_watcher_p99_under_100ms", w.LastWatcherP99ms, w.LastWatcherP99ms < 100 && w.Missed == 0)
		if w.Watchers < 1000 {
			r.note("watch targets are for 1000 watchers; this run had %d", w.Watchers)
		}
	}
	if b := res.BadToken; b != nil {
		// The bar: a flood of bad tokens slows valid requests
		// at most 2x, whether from one source or spread out.
		worst := b.P99Ratio
		if b.Spread != nil {
			worst = max(worst, b.Spread.P99Ratio)
		}
		set("bad_token_flood_p99_under_2x", worst, worst > 0 && worst <= 2)
	}
	if res.IdleRSS != nil {
		set("idle_rss_under_100mib", res.IdleRSSMiB, res.IdleRSSMiB < 100)
	}
}
