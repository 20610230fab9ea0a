package bench

// Result is the JSON object `skiff-bench api` prints.
type Result struct {
	Benchmark string `json:"benchmark"`
	Server    string `json:"server"`
	Clients   int    `json:"clients"`
	// ContentType is the clients' wire format: json or protobuf.
	ContentType string   `json:"content_type,omitempty"`
	Namespace   string   `json:"namespace"`
	Rounds      int      `json:"rounds"`
	GOMAXPROCS  int      `json:"gomaxprocs"`
	Host        HostInfo `json:"host"`
	IdleRSSMiB  float64  `json:"idle_rss_mib,omitempty"`
	IdleRSS     *RSSInfo `json:"idle_rss,omitempty"`

	Create      *Throughput        `json:"create,omitempty"`
	CreatePods  *Throughput        `json:"create_pods,omitempty"`
	Get         *Throughput        `json:"get,omitempty"`
	Update      *Throughput        `json:"update,omitempty"`
	List        *ListResult        `json:"list_10k,omitempty"`
	WatchFanout *WatchResult       `json:"watch_fanout,omitempty"`
	BadToken    *BadTokenResult    `json:"bad_token_flood,omitempty"`
	Targets     map[string]bool    `json:"targets"`
	Measured    map[string]float64 `json:"target_values"`
	// Connections counts the TCP connections the clients opened per phase.
	Connections map[string]int64 `json:"connections_opened"`
	Notes       []string         `json:"notes,omitempty"`
	DurationSec float64          `json:"duration_sec"`
}

// HostInfo tells how busy the machine was, since the benchmark client
// (and, embedded, the server) share its CPUs with everything else.
type HostInfo struct {
	CPUs         int     `json:"cpus"`
	LoadAvgStart float64 `json:"load_avg_1m_start"`
	LoadAvgEnd   float64 `json:"load_avg_1m_end"`
	// ProcessCPUSec is the CPU time this process used; with the wall time
	// it shows how much CPU the run actually got.
	ProcessCPUSec float64 `json:"process_cpu_sec"`
}

// RSSInfo says where the idle RSS was read and what it includes.
type RSSInfo struct {
	MiB    float64 `json:"mib"`
	Source string  `json:"source"`
	Note   string  `json:"note"`
	// GoHeapInuseMiB is the Go heap in use in this process at the same time.
	GoHeapInuseMiB float64 `json:"go_heap_inuse_mib,omitempty"`
}

// Throughput is one request/response phase.
type Throughput struct {
	Ops        int     `json:"ops"`
	Errors     int     `json:"errors"`
	OpsPerSec  float64 `json:"ops_per_sec"`
	P50ms      float64 `json:"p50_ms"`
	P99ms      float64 `json:"p99_ms"`
	ValueBytes int     `json:"value_bytes,omitempty"`
	// RoundOpsPerSec lists each round; OpsPerSec is their median.
	RoundOpsPerSec []float64 `json:"round_ops_per_sec,omitempty"`

	EtcdOps       int       `json:"etcd_ops,omitempty"`
	EtcdOpsPerSec float64   `json:"etcd_ops_per_sec,omitempty"`
	EtcdP50ms     float64   `json:"etcd_p50_ms,omitempty"`
	EtcdP99ms     float64   `json:"etcd_p99_ms,omitempty"`
	EtcdRounds    []float64 `json:"etcd_round_ops_per_sec,omitempty"`
	// RatioVsEtcd is a throughput ratio, Skiff / etcd (1 = as fast as etcd).
	RatioVsEtcd   float64 `json:"ratio_vs_etcd,omitempty"`
	EtcdOperation string  `json:"etcd_operation,omitempty"`
	// CPUPerOpUs and EtcdCPUPerOpUs are this process's CPU time per
	// operation (with --embedded: client, server and etcd together).
	CPUPerOpUs     float64 `json:"cpu_per_op_us,omitempty"`
	EtcdCPUPerOpUs float64 `json:"etcd_cpu_per_op_us,omitempty"`
}

// ListResult is the LIST phase.
type ListResult struct {
	Objects int     `json:"objects"`
	Runs    int     `json:"runs"`
	Bytes   int     `json:"bytes"`
	P50ms   float64 `json:"p50_ms"`
	P99ms   float64 `json:"p99_ms"`
	// ClientGoDecodedP50ms is a typed client-go List (JSON decoded into
	// a PodList), the cost a Go controller sees.
	ClientGoDecodedP50ms float64 `json:"client_go_decoded_p50_ms"`

	PageLimit      int     `json:"page_limit"`
	Pages          int     `json:"pages"`
	PagedP50ms     float64 `json:"paginated_p50_ms"`
	PagedP99ms     float64 `json:"paginated_p99_ms"`
	EtcdP50ms      float64 `json:"etcd_p50_ms,omitempty"`
	EtcdP99ms      float64 `json:"etcd_p99_ms,omitempty"`
	EtcdPagedP50ms float64 `json:"etcd_paginated_p50_ms,omitempty"`
	EtcdPagedP99ms float64 `json:"etcd_paginated_p99_ms,omitempty"`
	// Ratios are latency ratios, Skiff / etcd (1 = as fast as etcd).
	RatioVsEtcd float64 `json:"p50_latency_ratio_vs_etcd,omitempty"`
	PagedRatio  float64 `json:"paginated_p50_latency_ratio_vs_etcd,omitempty"`
}

// WatchResult is the watch fan-out phase.
type WatchResult struct {
	Watchers    int `json:"watchers"`
	Connections int `json:"connections"`
	Writes      int `json:"writes"`
	// Missed counts (watcher, write) pairs not delivered within the timeout.
	Missed int `json:"missed"`
	// P50ms and P99ms are per-watcher delivery latencies over all writes:
	// from the start of the write request to the watcher decoding it.
	P50ms float64 `json:"p50_ms"`
	P99ms float64 `json:"p99_ms"`
	// LastWatcher* are, per write, the time until the last watcher had it.
	LastWatcherP50ms float64 `json:"last_watcher_p50_ms"`
	LastWatcherP99ms float64 `json:"last_watcher_p99_ms"`
	LastWatcherMaxms float64 `json:"last_watcher_max_ms"`
	SetupSec         float64 `json:"setup_sec"`

	EtcdP50ms            float64 `json:"etcd_p50_ms,omitempty"`
	EtcdP99ms            float64 `json:"etcd_p99_ms,omitempty"`
	EtcdLastWatcherP99ms float64 `json:"etcd_last_watcher_p99_ms,omitempty"`
	RatioP99VsEtcd       float64 `json:"p99_latency_ratio_vs_etcd,omitempty"`
}

// BadTokenResult is the invalid-bearer-token flood phase.
type BadTokenResult struct {
	BadRequests     int            `json:"bad_requests"`
	BadStatus       map[string]int `json:"bad_status"`
	FloodSec        float64        `json:"flood_sec"`
	FloodPerSec     float64        `json:"flood_req_per_sec"`
	FloodWorkers    int            `json:"flood_workers"`
	FloodSources    int            `json:"flood_sources"`
	BaselineOps     int            `json:"baseline_valid_ops"`
	BaselineP50ms   float64        `json:"baseline_valid_p50_ms"`
	BaselineP99ms   float64        `json:"baseline_valid_p99_ms"`
	DuringFloodOps  int            `json:"flood_valid_ops"`
	DuringFloodP50  float64        `json:"flood_valid_p50_ms"`
	DuringFloodP99  float64        `json:"flood_valid_p99_ms"`
	DuringFloodErrs int            `json:"flood_valid_errors"`
	P50Ratio        float64        `json:"p50_ratio"`
	P99Ratio        float64        `json:"p99_ratio"`
	// Spread is the same flood from FloodSources loopback addresses,
	// which the per-source throttle of failed authentication does not
	// slow (nil when the target is not on loopback).
	Spread *BadTokenResult `json:"spread,omitempty"`
}
