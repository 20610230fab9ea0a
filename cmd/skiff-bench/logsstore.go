package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/skiffhq/skiff/addons/logging/esapi"
	"github.com/skiffhq/skiff/addons/logging/store"
	"github.com/skiffhq/skiff/internal/cpuprofile"
	"github.com/spf13/cobra"
)

// Issue 12's targets for the embedded store.
const (
	logsTargetDocsPerSec = 200000.0
	logsTargetSearchMs   = 500.0
)

type logsStoreOpts struct {
	dir          string
	small, large int
	searchLines  int
	batch        int
	clients      int
	queries      int
	keep         bool
	cpuProfile   string
	searchDir    string
	cacheMiB     int
}

type logsIngest struct {
	LineBytes     int     `json:"line_bytes"`
	Lines         int     `json:"lines"`
	DocBytes      float64 `json:"avg_document_bytes"`
	Seconds       float64 `json:"seconds"`
	DocsPerSec    float64 `json:"docs_per_second"`
	MBPerSec      float64 `json:"body_mb_per_second"`
	DiskBytesLine float64 `json:"disk_bytes_per_line"`
	CPUSeconds    float64 `json:"process_cpu_seconds"`
}

type logsLatency struct {
	Query   string  `json:"query"`
	Runs    int     `json:"runs"`
	P50Ms   float64 `json:"p50_ms"`
	P99Ms   float64 `json:"p99_ms"`
	MaxMs   float64 `json:"max_ms"`
	AvgHits float64 `json:"avg_total_hits"`
	// CPUMsPerRun is the bench process's CPU time (user + system: the
	// HTTP client, esapi and the store, in one process) over the runs,
	// divided by the runs: less sensitive than latency to the machine's
	// other load.
	CPUMsPerRun float64 `json:"cpu_ms_per_run,omitempty"`
}

type logsStoreResult struct {
	Benchmark         string        `json:"benchmark"`
	CPUs              int           `json:"cpus"`
	Path              string        `json:"path"`
	Fsync             bool          `json:"fsync"`
	BatchDocs         int           `json:"batch_docs"`
	Clients           int           `json:"clients"`
	Ingest            []logsIngest  `json:"ingest"`
	RawWriteMBPerSec  float64       `json:"raw_sequential_write_mb_per_second"`
	RawLinesPerSec    float64       `json:"raw_write_lines_per_second_100b"`
	RatioToRaw        float64       `json:"ratio_store_to_raw_write_100b"`
	SearchLines       int           `json:"search_corpus_lines"`
	SearchCorpusSecs  float64       `json:"search_corpus_load_seconds"`
	SearchDiskBytesLn float64       `json:"search_corpus_disk_bytes_per_line"`
	Search            []logsLatency `json:"search"`
	TargetDocsPerSec  float64       `json:"target_docs_per_second"`
	TargetSearchMs    float64       `json:"target_search_ms"`
	MeetsTargets      bool          `json:"meets_targets"`
	Note              string        `json:"note"`
}

func logsStoreCommand() *cobra.Command {
	var o logsStoreOpts
	cmd := &cobra.Command{
		Use:   "logs-store",
		Short: "Benchmark the embedded log store: _bulk ingest over HTTP (100 B and 1 KB lines), bytes per line on disk, query_string + time range search latency, against a raw sequential write of the same bytes",
		RunE: func(cmd *cobra.Command, _ []string) error {
			stopProfile, err := cpuprofile.Start(o.cpuProfile)
			if err != nil {
				return err
			}
			defer stopProfile()
			res, err := runLogsStoreBench(cmd.Context(), o)
			if err != nil {
				return err
			}
			return json.NewEncoder(cmd.OutOrStdout()).Encode(res)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.dir, "dir", "", "data directory (default: a temporary directory, removed afterwards)")
	f.IntVar(&o.small, "lines-100b", 1000000, "100 B lines sent through _bulk")
	f.IntVar(&o.large, "lines-1kb", 200000, "1 KB lines sent through _bulk")
	f.IntVar(&o.searchLines, "search-lines", 10000000, "lines in the search corpus (loaded in-process, 24 hours, 50 namespaces)")
	f.IntVar(&o.batch, "batch", 2000, "documents per _bulk request")
	f.IntVar(&o.clients, "clients", 4, "concurrent _bulk clients")
	f.IntVar(&o.queries, "queries", 20, "timed runs per search query")
	f.BoolVar(&o.keep, "keep", false, "keep the data directory")
	f.StringVar(&o.cpuProfile, "cpuprofile", "", "write a CPU profile of the whole run to this file")
	f.StringVar(&o.searchDir, "search-dir", "", "search corpus directory, kept; a corpus loaded there before (same --search-lines) is searched again without loading")
	f.IntVar(&o.cacheMiB, "cache-mib", 0, "decode cache of the search corpus's store in MiB (0: the store's default; negative: none)")
	return cmd
}

func cpuSeconds() float64 {
	var ru syscallRusage
	if getrusage(&ru) != nil {
		return 0
	}
	return ru.user + ru.sys
}

var benchLevels = []string{"info", "info", "info", "debug", "warn", "error"}

// appendBenchDoc appends one shipper-shaped document with a message of
// about lineBytes bytes.
func appendBenchDoc(b []byte, i int, ts time.Time, ns int, lineBytes int) []byte {
	level := benchLevels[i%len(benchLevels)]
	b = append(b, `{"@timestamp":"`...)
	b = ts.UTC().AppendFormat(b, time.RFC3339Nano)
	b = append(b, `","stream":"stdout","level":"`...)
	b = append(b, level...)
	b = append(b, `","message":"`...)
	start := len(b)
	b = ts.UTC().AppendFormat(b, "15:04:05.000")
	b = append(b, ' ')
	b = append(b, level...)
	b = append(b, " request id="...)
	b = strconv.AppendInt(b, int64(i), 10)
	switch i % 97 {
	case 0:
		b = append(b, " connection reset by peer"...)
	case 1:
		b = append(b, " upstream timeout after 30s"...)
	default:
		b = append(b, " handled GET /api/v1/items path=/items/"...)
		b = strconv.AppendInt(b, int64(i%1000), 10)
	}
	for len(b)-start < lineBytes {
		b = append(b, " lorem ipsum dolor sit amet consectetur"[:min(39, lineBytes-(len(b)-start))]...)
	}
	b = append(b, `","kubernetes":{"namespace_name":"ns-`...)
	b = strconv.AppendInt(b, int64(ns), 10)
	b = append(b, `","pod_name":"web-`...)
	b = strconv.AppendInt(b, int64(ns), 10)
	b = append(b, `-7d9f8c6b5-x`...)
	b = strconv.AppendInt(b, int64(i%7), 10)
	b = append(b, `","container_name":"web","host":"node-`...)
	b = strconv.AppendInt(b, int64(i%3), 10)
	b = append(b, `","labels":{"app":"web","app.kubernetes.io/name":"web","pod-template-hash":"7d9f8c6b5"}}}`...)
	return b
}

func runLogsStoreBench(ctx context.Context, o logsStoreOpts) (*logsStoreResult, error) {
	dir := o.dir
	if dir == "" {
		d, err := os.MkdirTemp("", "skiff-bench-logs-")
		if err != nil {
			return nil, err
		}
		dir = d
	}
	if !o.keep {
		defer os.RemoveAll(dir)
	}
	res := &logsStoreResult{Benchmark: "logs-store", CPUs: runtime.NumCPU(), Fsync: true, BatchDocs: o.batch, Clients: o.clients,
		Path:             "go client -> HTTP/1.1 loopback -> esapi.Handler (_bulk: decode, flatten, WAL group commit + fsync, head) -> store; blocks written in the background",
		TargetDocsPerSec: logsTargetDocsPerSec, TargetSearchMs: logsTargetSearchMs}

	var rawBytes int64
	for k, spec := range []struct{ lines, bytes int }{{o.small, 100}, {o.large, 1000}} {
		if spec.lines <= 0 {
			continue
		}
		in, n, err := benchIngest(ctx, filepath.Join(dir, fmt.Sprintf("ingest-%d", spec.bytes)), spec.lines, spec.bytes, o)
		if err != nil {
			return nil, err
		}
		if k == 0 {
			rawBytes = n
		}
		res.Ingest = append(res.Ingest, *in)
	}
	if rawBytes > 0 {
		mbps, err := rawWrite(filepath.Join(dir, "raw.bin"), rawBytes)
		if err != nil {
			return nil, err
		}
		res.RawWriteMBPerSec = mbps
		res.RawLinesPerSec = mbps * 1e6 / (float64(rawBytes) / float64(o.small))
		res.RatioToRaw = res.Ingest[0].DocsPerSec / res.RawLinesPerSec
	}
	if o.searchLines > 0 {
		sdir := filepath.Join(dir, "search")
		if o.searchDir != "" {
			sdir = o.searchDir
		}
		if err := benchSearch(ctx, sdir, o, res); err != nil {
			return nil, err
		}
	}
	res.MeetsTargets = len(res.Ingest) > 0 && res.Ingest[0].DocsPerSec >= logsTargetDocsPerSec
	for _, s := range res.Search {
		if s.P50Ms > logsTargetSearchMs {
			res.MeetsTargets = false
		}
	}
	res.Note = "one process: clients and store share the machine's CPUs; every _bulk answer waits for its WAL fsync (group commit); raw write = the same _bulk body bytes written sequentially in 1 MiB writes + one fsync; the search corpus is loaded in-process through store.Bulk (same code path minus HTTP), then flushed, and queried through esapi over HTTP"
	return res, nil
}

func serveStore(st *store.Store) (string, func(), error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	srv := &http.Server{Handler: http.StripPrefix("/logs", &esapi.Handler{Store: st}), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	return "http://" + ln.Addr().String() + "/logs", func() { _ = srv.Close() }, nil
}

func dirSize(dir string) int64 {
	var n int64
	_ = filepath.Walk(dir, func(_ string, fi os.FileInfo, err error) error {
		if err == nil && !fi.IsDir() {
			n += fi.Size()
		}
		return nil
	})
	return n
}

// benchIngest sends lines documents through HTTP _bulk and returns the
// measurements and the body bytes sent.
func benchIngest(ctx context.Context, dir string, lines, lineBytes int, o logsStoreOpts) (*logsIngest, int64, error) {
	st, err := store.Open(store.Options{Dir: dir, MaxAge: -1})
	if err != nil {
		return nil, 0, err
	}
	url, stop, err := serveStore(st)
	if err != nil {
		return nil, 0, err
	}
	defer stop()
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: o.clients * 2}}
	var next atomic.Int64
	var sent, docBytes atomic.Int64
	base := time.Now().Add(-time.Hour)
	errCh := make(chan error, o.clients)
	cpu0 := cpuSeconds()
	start := time.Now()
	var wg sync.WaitGroup
	for range o.clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var body []byte
			for {
				first := int(next.Add(int64(o.batch))) - o.batch
				if first >= lines || ctx.Err() != nil {
					return
				}
				last := min(first+o.batch, lines)
				body = body[:0]
				for i := first; i < last; i++ {
					body = append(body, `{"create":{"_index":"logs-kubernetes-ns-`...)
					body = strconv.AppendInt(body, int64(i%10), 10)
					body = append(body, `","_id":"`...)
					body = strconv.AppendInt(body, int64(i), 36)
					body = append(body, "\"}}\n"...)
					l := len(body)
					body = appendBenchDoc(body, i, base.Add(time.Duration(i)*time.Millisecond), i%10, lineBytes)
					docBytes.Add(int64(len(body) - l))
					body = append(body, '\n')
				}
				sent.Add(int64(len(body)))
				resp, err := client.Post(url+"/_bulk", "application/x-ndjson", bytes.NewReader(body))
				if err != nil {
					errCh <- err
					return
				}
				rb, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 || bytes.Contains(rb[:min(len(rb), 20)], []byte(`"errors":true`)) {
					errCh <- fmt.Errorf("bulk: %d %.300s", resp.StatusCode, rb)
					return
				}
			}
		}()
	}
	wg.Wait()
	secs := time.Since(start).Seconds()
	cpu := cpuSeconds() - cpu0
	select {
	case err := <-errCh:
		return nil, 0, err
	default:
	}
	if err := st.Close(); err != nil {
		return nil, 0, err
	}
	in := &logsIngest{LineBytes: lineBytes, Lines: lines, DocBytes: float64(docBytes.Load()) / float64(lines), Seconds: secs,
		DocsPerSec: float64(lines) / secs, MBPerSec: float64(sent.Load()) / secs / 1e6,
		DiskBytesLine: float64(dirSize(dir)) / float64(lines), CPUSeconds: cpu}
	_ = os.RemoveAll(dir)
	return in, sent.Load(), nil
}

// rawWrite writes n bytes sequentially in 1 MiB writes, fsyncs once and
// returns MB/s.
func rawWrite(path string, n int64) (float64, error) {
	f, err := os.Create(path)
	if err != nil {
		return 0, err
	}
	defer os.Remove(path)
	buf := make([]byte, 1<<20)
	for i := range buf {
		buf[i] = byte('a' + i%26)
	}
	start := time.Now()
	for w := int64(0); w < n; {
		k := min(int64(len(buf)), n-w)
		if _, err := f.Write(buf[:k]); err != nil {
			f.Close()
			return 0, err
		}
		w += k
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return 0, err
	}
	secs := time.Since(start).Seconds()
	return float64(n) / secs / 1e6, f.Close()
}

func benchSearch(ctx context.Context, dir string, o logsStoreOpts, res *logsStoreResult) error {
	// A corpus loaded before into --search-dir is described by corpus.json.
	type corpus struct {
		Lines    int       `json:"lines"`
		Begin    time.Time `json:"begin"`
		End      time.Time `json:"end"`
		LoadSecs float64   `json:"load_seconds"`
	}
	var prior corpus
	if b, err := os.ReadFile(filepath.Join(dir, "corpus.json")); err == nil && json.Unmarshal(b, &prior) == nil && prior.Lines != o.searchLines {
		return fmt.Errorf("%s holds a corpus of %d lines, not %d", dir, prior.Lines, o.searchLines)
	}
	cache := o.cacheMiB << 20
	if o.cacheMiB < 0 {
		cache = -1
	}
	st, err := store.Open(store.Options{Dir: dir, MaxAge: -1, CacheBytes: cache})
	if err != nil {
		return err
	}
	defer st.Close()
	const namespaces = 50
	end := time.Now().UTC().Truncate(time.Minute)
	begin := end.Add(-24 * time.Hour)
	reuse := prior.Lines == o.searchLines
	if reuse {
		begin, end = prior.Begin, prior.End
	}
	step := 24 * time.Hour / time.Duration(o.searchLines)
	start := time.Now()
	const batch = 5000
	var wg sync.WaitGroup
	var next atomic.Int64
	var firstErr error
	var errOnce sync.Once
	for range 2 {
		if reuse {
			break
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			ops := make([]store.Op, 0, batch)
			var buf []byte
			for {
				first := int(next.Add(batch)) - batch
				if first >= o.searchLines {
					return
				}
				ops, buf = ops[:0], buf[:0]
				for i := first; i < min(first+batch, o.searchLines); i++ {
					l := len(buf)
					ns := (i / 7) % namespaces
					buf = appendBenchDoc(buf, i, begin.Add(time.Duration(i)*step), ns, 100)
					ops = append(ops, store.Op{Index: "logs-kubernetes-ns-" + strconv.Itoa(ns), ID: strconv.FormatInt(int64(i), 36), Create: true, Source: buf[l:len(buf):len(buf)]})
				}
				if _, err := st.Bulk(ctx, ops); err != nil {
					errOnce.Do(func() { firstErr = err })
					return
				}
			}
		}()
	}
	wg.Wait()
	if firstErr != nil {
		return firstErr
	}
	if err := st.Flush(); err != nil {
		return err
	}
	res.SearchLines = o.searchLines
	res.SearchCorpusSecs = time.Since(start).Seconds()
	if reuse {
		res.SearchCorpusSecs = prior.LoadSecs
	} else if o.searchDir != "" {
		b, _ := json.Marshal(corpus{Lines: o.searchLines, Begin: begin, End: end, LoadSecs: res.SearchCorpusSecs})
		if err := os.WriteFile(filepath.Join(dir, "corpus.json"), b, 0o644); err != nil {
			return err
		}
	}
	res.SearchDiskBytesLn = float64(dirSize(dir)) / float64(o.searchLines)
	runtime.GC()

	url, stop, err := serveStore(st)
	if err != nil {
		return err
	}
	defer stop()
	queries := []struct{ name, body string }{
		{"query_string level:error AND kubernetes.namespace_name:ns-7, 1 h range, size 10 sorted by @timestamp desc",
			`{"size":10,"sort":[{"@timestamp":"desc"}],"query":{"bool":{"must":[{"query_string":{"query":"level:error AND kubernetes.namespace_name:ns-7"}}],"filter":[{"range":{"@timestamp":{"gte":"%s","lt":"%s"}}}]}}}`},
		{"same + date_histogram 1m + terms level, size 0, track_total_hits",
			`{"size":0,"track_total_hits":true,"query":{"bool":{"must":[{"query_string":{"query":"level:error AND kubernetes.namespace_name:ns-7"}}],"filter":[{"range":{"@timestamp":{"gte":"%s","lt":"%s"}}}]}},"aggs":{"h":{"date_histogram":{"field":"@timestamp","fixed_interval":"1m"}},"l":{"terms":{"field":"level.keyword"}}}}`},
		{"query_string \"connection reset\" (phrase, 1 in 97 lines) over a 6 h range, size 10 sorted desc",
			`{"size":10,"sort":[{"@timestamp":"desc"}],"query":{"bool":{"must":[{"query_string":{"query":"\"connection reset\""}}],"filter":[{"range":{"@timestamp":{"gte":"%s","lt":"%s"}}}]}}}`},
	}
	windows := []time.Duration{time.Hour, time.Hour, 6 * time.Hour}
	client := &http.Client{}
	for qi, q := range queries {
		var lat []float64
		var hits float64
		cpu0 := processCPU()
		for r := range o.queries {
			// Different windows each run, spread over the day.
			w := windows[qi]
			from := begin.Add(time.Duration(r*7919%int(24*time.Hour/w-1)) * w)
			if from.Add(w).After(end) {
				from = end.Add(-w)
			}
			body := fmt.Sprintf(q.body, from.Format(time.RFC3339), from.Add(w).Format(time.RFC3339))
			t0 := time.Now()
			resp, err := client.Post(url+"/logs-*/_search", "application/json", bytes.NewReader([]byte(body)))
			if err != nil {
				return err
			}
			rb, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			lat = append(lat, float64(time.Since(t0).Microseconds())/1000)
			if resp.StatusCode != 200 {
				return fmt.Errorf("search: %d %.300s", resp.StatusCode, rb)
			}
			var sr struct {
				Hits struct {
					Total struct{ Value float64 }
				}
			}
			if err := json.Unmarshal(rb, &sr); err != nil {
				return err
			}
			hits += sr.Hits.Total.Value
		}
		sort.Float64s(lat)
		cpuMs := float64((processCPU() - cpu0).Microseconds()) / 1000 / float64(len(lat))
		res.Search = append(res.Search, logsLatency{Query: q.name, Runs: len(lat), P50Ms: lat[len(lat)/2], P99Ms: lat[min(len(lat)-1, len(lat)*99/100)], MaxMs: lat[len(lat)-1], AvgHits: hits / float64(len(lat)), CPUMsPerRun: cpuMs})
	}
	return nil
}

// processCPU is this process's user + system CPU time so far.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
