package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/skiffhq/skiff/addons/logging/shipper"
	"github.com/skiffhq/skiff/addons/logging/store"
	"github.com/skiffhq/skiff/internal/cpuprofile"
	"github.com/skiffhq/skiff/nodeagent/agent"
	"github.com/skiffhq/skiff/nodeagent/crilog"
	"github.com/spf13/cobra"
)

// logsChildReady is the line the shipper child prints once set up.
const logsChildReady = "shipper ready"

// Issue 12's shipper target.
const logsTargetShipperRSSMiB = 30.0

type logsOpts struct {
	small, large int
	pods         int
	searchLines  int
	queries      int
	timeout      time.Duration
	cpuProfile   string
	benchProfile string // CPU profile of the bench process (containers, crilog writer, store)
	allocProfile string // allocation profile of the bench process
	heapProfile  string
	// flushBytes, inflightBytes and bulkWorkers override the shipper's defaults (0: the
	// agent's).
	flushBytes    int
	inflightBytes int64
	bulkWorkers   int
	// timeline samples the phase every this long (0: not).
	timeline time.Duration
}

type logsPhase struct {
	LineBytes        int     `json:"line_bytes"`
	Lines            int     `json:"lines"`
	Pods             int     `json:"pods"`
	CRIBytesPerLine  float64 `json:"cri_file_bytes_per_line"`
	WriteSeconds     float64 `json:"container_write_seconds"`
	Seconds          float64 `json:"write_to_searchable_seconds"`
	LinesPerSec      float64 `json:"lines_per_second"`
	ShipperCPU       float64 `json:"shipper_cpu_seconds"`
	ShipperCPUPerSec float64 `json:"shipper_lines_per_cpu_second"`
	ShipperRSSMiB    float64 `json:"shipper_max_rss_mib"`
	ShipperHWMMiB    float64 `json:"shipper_vmhwm_mib"`
	ShipperAnonMiB   float64 `json:"shipper_max_anon_rss_mib"`
	ShipperFileMiB   float64 `json:"shipper_max_file_rss_mib"`
	ServerCPU        float64 `json:"writer_and_store_process_cpu_seconds"`
	SealCPU          float64 `json:"store_seal_remaining_heads_cpu_seconds"` // after the count: the heads not yet sealed into blocks
	LinesPerCPUSec   float64 `json:"lines_per_cpu_second_all_processes"`
	DiskBytesLine    float64 `json:"store_disk_bytes_per_line"`
	RawMBPerSec      float64 `json:"raw_sequential_write_mb_per_second"`
	RawLinesPerSec   float64 `json:"raw_write_lines_per_second"`
	RatioToRaw       float64 `json:"ratio_to_raw_write"`
	// Timeline (--timeline) is sampled from the first write until the
	// last line is counted.
	Timeline []timelinePoint `json:"timeline,omitempty"`
}

type logsResult struct {
	Benchmark         string        `json:"benchmark"`
	CPUs              int           `json:"cpus"`
	LoadAvgStart      string        `json:"load_average_start"`
	LoadAvgEnd        string        `json:"load_average_end"`
	Path              string        `json:"path"`
	Phases            []logsPhase   `json:"end_to_end"`
	SearchLines       int           `json:"search_corpus_lines"`
	SearchCorpusSecs  float64       `json:"search_corpus_load_seconds"`
	SearchDiskBytesLn float64       `json:"search_corpus_disk_bytes_per_line"`
	Search            []logsLatency `json:"search"`
	TargetLinesPerSec float64       `json:"target_lines_per_second_100b"`
	TargetRSSMiB      float64       `json:"target_shipper_rss_mib"`
	TargetSearchMs    float64       `json:"target_search_ms"`
	MeetsTargets      bool          `json:"meets_targets"`
	Note              string        `json:"note"`
}

func logsCommand() *cobra.Command {
	var o logsOpts
	cmd := &cobra.Command{
		Use:   "logs",
		Short: "Benchmark the logging add-on end to end: CRI log files written in the bench, tailed by the shipper in a child process, shipped over loopback HTTP into the embedded store until searchable (100 B and 1 KB lines), shipper CPU and RSS, bytes per line on disk, search latency over a large corpus, against a raw sequential write",
		RunE: func(cmd *cobra.Command, _ []string) error {
			stopProfile, err := cpuprofile.Start(o.benchProfile)
			if err != nil {
				return err
			}
			res, err := runLogsBench(cmd.Context(), o)
			stopProfile()
			if err != nil {
				return err
			}
			if o.allocProfile != "" {
				if err := writeProfile(o.allocProfile, "allocs"); err != nil {
					return err
				}
			}
			return json.NewEncoder(cmd.OutOrStdout()).Encode(res)
		},
	}
	f := cmd.Flags()
	f.IntVar(&o.small, "lines-100b", 1000000, "100 B lines written and shipped")
	f.IntVar(&o.large, "lines-1kb", 200000, "1 KB lines written and shipped")
	f.IntVar(&o.pods, "pods", 4, "pods (one container each) writing in parallel")
	f.IntVar(&o.searchLines, "search-lines", 10000000, "lines in the search corpus (0 = skip the search part)")
	f.IntVar(&o.queries, "queries", 20, "timed runs per search query")
	f.DurationVar(&o.timeout, "timeout", 20*time.Minute, "give up on a phase after this long")
	f.StringVar(&o.benchProfile, "cpuprofile", "", "write the bench process's CPU profile (in-bench containers and crilog writer, and the embedded store) to this file")
	f.StringVar(&o.allocProfile, "allocprofile", "", "write the bench process's allocation profile (pprof allocs: every allocation since start) to this file when it ends")
	f.StringVar(&o.cpuProfile, "shipper-cpuprofile", "", "write the shipper child's CPU profile to this file (suffixed with the line size)")
	f.IntVar(&o.flushBytes, "shipper-flush-bytes", 0, "the shipper's bulk request size (0: the agent's default)")
	f.Int64Var(&o.inflightBytes, "shipper-max-inflight-bytes", 0, "the shipper's bound on unacknowledged document bytes (0: the agent's default)")
	f.IntVar(&o.bulkWorkers, "shipper-bulk-workers", 0, "the shipper's _bulk requests in flight at once (0: the agent's default)")
	f.DurationVar(&o.timeline, "timeline", 0, "sample documents counted, the bench's and the shipper's CPU and the machine's idle time this often during each phase (0: not), printed as each phase's timeline")
	f.StringVar(&o.heapProfile, "shipper-heapprofile", "", "write the shipper child's heap profile at its peak live heap to this file (suffixed with the line size)")
	return cmd
}

// logsShipperCommand is the child process the logs benchmark measures:
// the agent's shipper with its defaults, until SIGTERM.
func logsShipperCommand() *cobra.Command {
	var cfg shipper.Config
	var profile, heapProfile string
	cmd := &cobra.Command{
		Use:    "logs-shipper-child",
		Hidden: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			agent.QuietMemProfiler()
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGTERM, os.Interrupt)
			defer stop()
			stopProfile, err := cpuprofile.Start(profile)
			if err != nil {
				return err
			}
			defer stopProfile()
			stopHeap := peakHeapProfile(heapProfile)
			defer stopHeap()
			s, err := shipper.New(cfg)
			if err != nil {
				return err
			}
			// Set up as the agent that runs the shipper is once started
			// (GC goal, executable pages given back and evicted), then
			// tell the bench, which starts the containers.
			agent.TuneProcessAfter(ctx, slog.New(slog.DiscardHandler), 0)
			if _, err := fmt.Fprintln(cmd.OutOrStdout(), logsChildReady); err != nil {
				return err
			}
			return s.Run(ctx)
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.PodLogDir, "pod-log-dir", "", "pod log folder")
	f.StringVar(&cfg.StateDir, "state-dir", "", "checkpoint folder")
	f.StringVar(&cfg.URL, "url", "", "Elasticsearch-compatible URL")
	f.StringVar(&cfg.NodeName, "node-name", "bench-node", "kubernetes.host")
	f.StringVar(&profile, "cpuprofile", "", "write a CPU profile to this file")
	f.IntVar(&cfg.FlushBytes, "flush-bytes", 0, "bulk request size (0: default)")
	f.Int64Var(&cfg.MaxInFlightBytes, "max-inflight-bytes", 0, "bound on unacknowledged document bytes (0: default)")
	f.IntVar(&cfg.BulkWorkers, "bulk-workers", 0, "_bulk requests in flight at once (0: default)")
	f.StringVar(&heapProfile, "heapprofile", "", "write a heap profile taken at the peak live heap to this file")
	return cmd
}

// waitChildReady reads the child's output until its logsChildReady line
// (then drains the rest in the background), or fails after timeout.
func waitChildReady(r io.Reader, timeout time.Duration) error {
	ready := make(chan error, 1)
	go func() {
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			if sc.Text() == logsChildReady {
				ready <- nil
				_, _ = io.Copy(io.Discard, r)
				return
			}
		}
		ready <- fmt.Errorf("exited before it was ready (%v)", sc.Err())
	}()
	select {
	case err := <-ready:
		return err
	case <-time.After(timeout):
		return fmt.Errorf("not ready after %s", timeout)
	}
}

func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	return strings.Join(strings.Fields(string(b))[:3], " ")
}

func runLogsBench(ctx context.Context, o logsOpts) (*logsResult, error) {
	dir, err := os.MkdirTemp("", "skiff-bench-logs-e2e-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	res := &logsResult{Benchmark: "logs", CPUs: runtime.NumCPU(), LoadAvgStart: loadAvg(),
		Path:              "in-bench containers (one write(2) per line into a pipe) -> in-bench agent copy (io.CopyBuffer, 32 KiB, as containerd's cio copies the FIFO) into the crilog writer (as the node agent writes container output: one file write per read) -> CRI files -> shipper (child process: tail, CRI parse, metadata, _bulk bodies built by the shipper, sent with go-elasticsearch's Bulk API, gzip only to a remote sink) -> HTTP/1.1 loopback -> esapi _bulk -> store (WAL fsync, head: searchable)",
		TargetLinesPerSec: logsTargetDocsPerSec, TargetRSSMiB: logsTargetShipperRSSMiB, TargetSearchMs: logsTargetSearchMs}
	for _, spec := range []struct{ lines, bytes int }{{o.small, 100}, {o.large, 1000}} {
		if spec.lines <= 0 {
			continue
		}
		ph, err := logsPhaseRun(ctx, filepath.Join(dir, strconv.Itoa(spec.bytes)), spec.lines, spec.bytes, o)
		if err != nil {
			return nil, fmt.Errorf("%d B lines: %w", spec.bytes, err)
		}
		res.Phases = append(res.Phases, *ph)
	}
	if o.searchLines > 0 {
		sr := &logsStoreResult{}
		if err := benchSearch(ctx, filepath.Join(dir, "search"), logsStoreOpts{searchLines: o.searchLines, queries: o.queries}, sr); err != nil {
			return nil, err
		}
		res.SearchLines, res.SearchCorpusSecs, res.SearchDiskBytesLn, res.Search = sr.SearchLines, sr.SearchCorpusSecs, sr.SearchDiskBytesLn, sr.Search
	}
	res.MeetsTargets = len(res.Phases) > 0 && res.Phases[0].LineBytes == 100 && res.Phases[0].LinesPerSec >= logsTargetDocsPerSec
	for _, p := range res.Phases {
		// The shipper's own memory: the child is this 170 MB bench binary,
		// whose file-backed pages (page cache, shared) are reported apart.
		if p.ShipperRSSMiB >= logsTargetShipperRSSMiB {
			res.MeetsTargets = false
		}
	}
	for _, s := range res.Search {
		if s.P50Ms > logsTargetSearchMs {
			res.MeetsTargets = false
		}
	}
	res.LoadAvgEnd = loadAvg()
	res.Note = "lines/s = lines / (first container write -> last line counted in the store); the shipper runs with the agent's defaults in a child process, from its own copy of the executable, set up as the agent is once started (GC goal, executable pages given back and evicted: agent.TuneProcessAfter) before the containers start (its CPU from wait4; shipper_max_rss_mib, to which the RSS target applies, is the highest RssAnon+RssFile+RssShmem sampled every 20 ms from /proc while it ships, shipper_max_anon_rss_mib / _file_ the highest of each, file = pages of its executable; shipper_vmhwm_mib is VmHWM, which includes start-up; wait4's ru_maxrss is not used: for a child started with CLONE_VM|CLONE_VFORK it holds the parent's RSS at exec); the containers' writes to their pipes, the agent's copies into the crilog writer and the store share the bench process; raw write = the CRI files' bytes written sequentially in 1 MiB writes + one fsync; the search corpus is loaded in-process (as logs-store does) and queried over HTTP"
	return res, nil
}

// logsPhaseRun writes lines CRI records of lineBytes over o.pods pods,
// ships them with a child shipper into a fresh store and waits until the
// store holds them all.
func logsPhaseRun(ctx context.Context, dir string, lines, lineBytes int, o logsOpts) (*logsPhase, error) {
	podDir, stateDir, storeDir := filepath.Join(dir, "pods"), filepath.Join(dir, "state"), filepath.Join(dir, "store")
	st, err := store.Open(store.Options{Dir: storeDir, MaxAge: -1})
	if err != nil {
		return nil, err
	}
	defer st.Close()
	url, stopHTTP, err := serveStore(st)
	if err != nil {
		return nil, err
	}
	defer stopHTTP()
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	// The shipper runs from its own copy of the executable, as `skiff
	// agent` has its binary to itself on a node (see copyExecutable).
	if self, err = copyExecutable(self, filepath.Join(dir, fmt.Sprintf("skiff-bench-shipper-%d", lineBytes))); err != nil {
		return nil, err
	}
	args := []string{"logs-shipper-child", "--pod-log-dir", podDir, "--state-dir", stateDir, "--url", url}
	if o.cpuProfile != "" {
		args = append(args, "--cpuprofile", fmt.Sprintf("%s.%d", o.cpuProfile, lineBytes))
	}
	if o.flushBytes > 0 {
		args = append(args, "--flush-bytes", strconv.Itoa(o.flushBytes))
	}
	if o.inflightBytes > 0 {
		args = append(args, "--max-inflight-bytes", strconv.FormatInt(o.inflightBytes, 10))
	}
	if o.bulkWorkers > 0 {
		args = append(args, "--bulk-workers", strconv.Itoa(o.bulkWorkers))
	}
	if o.heapProfile != "" {
		args = append(args, "--heapprofile", fmt.Sprintf("%s.%d", o.heapProfile, lineBytes))
	}
	child := exec.CommandContext(ctx, self, args...)
	child.Stderr = os.Stderr
	child.Cancel = func() error { return child.Process.Signal(syscall.SIGTERM) }
	childOut, err := child.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(podDir, 0o700); err != nil {
		return nil, err
	}
	if err := child.Start(); err != nil {
		return nil, err
	}
	childDone := false
	defer func() {
		if !childDone {
			_ = child.Process.Kill()
			_ = child.Wait()
		}
	}()
	// The containers start once the shipper is set up, as on a node where
	// the agent runs long before: its start-up is not timed, and its
	// memory is sampled from then on.
	if err := waitChildReady(childOut, time.Minute); err != nil {
		return nil, fmt.Errorf("shipper child: %w", err)
	}
	stopMem := sampleProcMem(child.Process.Pid)
	defer stopMem()

	countDocs := func() int64 {
		var n int64
		for _, in := range st.Indices() {
			n += in.Docs
		}
		return n
	}
	stopTimeline := func() []timelinePoint { return nil }
	if o.timeline > 0 {
		stopTimeline = sampleTimeline(o.timeline, child.Process.Pid, countDocs)
	}
	cpu0 := cpuSeconds()
	start := time.Now()
	var wg sync.WaitGroup
	var criBytes int64
	var mu sync.Mutex
	errCh := make(chan error, o.pods)
	for p := range o.pods {
		wg.Add(1)
		go func() {
			defer wg.Done()
			path := filepath.Join(podDir, fmt.Sprintf("bench_web-%d_uid-%d", p, p), "app", "0.log")
			size, err := benchContainerLog(path, p, o.pods, lines, lineBytes)
			if err != nil {
				errCh <- err
				return
			}
			mu.Lock()
			criBytes += size
			mu.Unlock()
		}()
	}
	wg.Wait()
	writeSecs := time.Since(start).Seconds()
	select {
	case err := <-errCh:
		return nil, err
	default:
	}
	deadline := time.Now().Add(o.timeout)
	for {
		n := countDocs()
		if n >= int64(lines) {
			break
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("only %d of %d lines searchable after %s", n, lines, o.timeout)
		}
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		time.Sleep(20 * time.Millisecond)
	}
	secs := time.Since(start).Seconds()
	serverCPU := cpuSeconds() - cpu0
	timeline := stopTimeline()
	// The count is the searchable view; check it as a query does.
	if c, err := st.Count(ctx, []string{"logs-*"}, store.Text{Field: "message", Text: "request"}); err != nil || c != int64(lines) {
		return nil, fmt.Errorf("query found %d of %d lines (%v)", c, lines, err)
	}
	// Sealing the heads into blocks (done in the background as heads
	// fill, the rest here) is part of each line's cost too.
	cpuSeal := cpuSeconds()
	if err := st.Flush(); err != nil {
		return nil, err
	}
	sealCPU := cpuSeconds() - cpuSeal
	mem := stopMem()
	_ = child.Process.Signal(syscall.SIGTERM)
	err = child.Wait()
	childDone = true
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		return nil, err
	}
	ph := &logsPhase{LineBytes: lineBytes, Lines: lines, Pods: o.pods, WriteSeconds: writeSecs, Seconds: secs,
		LinesPerSec: float64(lines) / secs, ServerCPU: serverCPU, SealCPU: sealCPU, CRIBytesPerLine: float64(criBytes) / float64(lines),
		Timeline: timeline}
	if ru, ok := child.ProcessState.SysUsage().(*syscall.Rusage); ok {
		ph.ShipperCPU = float64(ru.Utime.Sec) + float64(ru.Utime.Usec)/1e6 + float64(ru.Stime.Sec) + float64(ru.Stime.Usec)/1e6
	}
	ph.ShipperRSSMiB, ph.ShipperHWMMiB = float64(mem.MaxRSSKiB)/1024, float64(mem.HWMKiB)/1024
	ph.ShipperAnonMiB, ph.ShipperFileMiB = float64(mem.MaxAnonKiB)/1024, float64(mem.MaxFileKiB)/1024
	if ph.ShipperCPU > 0 {
		ph.ShipperCPUPerSec = float64(lines) / ph.ShipperCPU
	}
	ph.LinesPerCPUSec = float64(lines) / (ph.ShipperCPU + serverCPU)
	if err := st.Flush(); err != nil {
		return nil, err
	}
	ph.DiskBytesLine = float64(dirSize(storeDir)) / float64(lines)
	_ = os.RemoveAll(podDir)
	mbps, err := rawWrite(filepath.Join(dir, "raw.bin"), criBytes)
	if err != nil {
		return nil, err
	}
	ph.RawMBPerSec = mbps
	ph.RawLinesPerSec = mbps * 1e6 / ph.CRIBytesPerLine
	ph.RatioToRaw = ph.LinesPerSec / ph.RawLinesPerSec
	return ph, nil
}

// benchContainerLog writes pod p's share of lines (every pods-th) to the
// CRI file at path as the node agent gets a container's output: the
// "container" writes each line with its own write(2) into a pipe (an app
// with line-buffered stdout), and the "agent" copies the pipe into the
// crilog stream with io.CopyBuffer and a 32 KiB buffer, as containerd's cio
// copies the container's FIFO for the agent. It returns once the last line
// is in the CRI file (the copy is done and the writer closed), with the
// file's size.
func benchContainerLog(path string, p, pods, lines, lineBytes int) (int64, error) {
	w, err := crilog.Open(path)
	if err != nil {
		return 0, err
	}
	pr, pw, err := os.Pipe()
	if err != nil {
		_ = w.Close()
		return 0, err
	}
	copied := make(chan error, 1)
	go func() {
		// Hidden behind a plain io.Reader: *os.File's WriteTo would make
		// io.CopyBuffer ignore the buffer; containerd copies from its fifo
		// type with the buffer.
		_, err := io.CopyBuffer(w.Stream(crilog.Stdout), struct{ io.Reader }{pr}, make([]byte, 32<<10))
		// A failed copy closes the read end, so the container's next
		// write fails (EPIPE) rather than blocking on a full pipe.
		_ = pr.Close()
		if err != nil {
			err = fmt.Errorf("agent copy: %w", err)
		}
		copied <- err
	}()
	var werr error
	var buf []byte
	base := time.Now()
	for i := p; i < lines; i += pods {
		buf = appendBenchLine(buf[:0], i, base, lineBytes)
		if _, werr = pw.Write(buf); werr != nil {
			werr = fmt.Errorf("container write: %w", werr)
			break
		}
	}
	_ = pw.Close()
	cerr := <-copied
	if err := errors.Join(cerr, werr, w.Close()); err != nil {
		return 0, err
	}
	fi, err := os.Stat(path)
	if err != nil {
		return 0, err
	}
	return fi.Size(), nil
}

// appendBenchLine appends one container output line of lineBytes bytes
// (newline included): a plain-text request log, every 97th a
// "connection reset by peer".
func appendBenchLine(b []byte, i int, base time.Time, lineBytes int) []byte {
	start := len(b)
	b = base.Add(time.Duration(i)*time.Millisecond).UTC().AppendFormat(b, "15:04:05.000")
	level := benchLevels[i%len(benchLevels)]
	b = append(b, ' ')
	b = append(b, level...)
	b = append(b, " request id="...)
	b = strconv.AppendInt(b, int64(i), 10)
	if i%97 == 0 {
		b = append(b, " connection reset by peer"...)
	} else {
		b = append(b, " handled GET /api/v1/items path=/items/"...)
		b = strconv.AppendInt(b, int64(i%1000), 10)
	}
	for len(b)-start < lineBytes-1 {
		b = append(b, " lorem ipsum dolor sit amet consectetur"[:min(39, lineBytes-1-(len(b)-start))]...)
	}
	return append(b, '\n')
}
