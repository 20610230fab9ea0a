package shipper

import (
	"bufio"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// esRecorder answers the few Elasticsearch APIs the shipper uses and
// records what it was sent: setup requests in order, then bulk creates.
type esRecorder struct {
	mu       sync.Mutex
	calls    []string // "PUT /_ilm/policy/x", "POST /_bulk", ...
	bodies   map[string][]byte
	created  int
	answer   func(call string, n int) int // status for the n-th such call (0: 200)
	perCalls map[string]int
}

func newESRecorder(t *testing.T, answer func(call string, n int) int) (*httptest.Server, *esRecorder) {
	r := &esRecorder{bodies: map[string][]byte{}, perCalls: map[string]int{}, answer: answer}
	srv := httptest.NewServer(r)
	t.Cleanup(srv.Close)
	return srv, r
}

// esRequest sets the headers an Elasticsearch answers with and returns the
// request's body, un-gzipped; false when it answered 400 instead.
func esRequest(w http.ResponseWriter, req *http.Request) ([]byte, bool) {
	w.Header().Set("X-Elastic-Product", "Elasticsearch")
	w.Header().Set("Content-Type", "application/json")
	var body io.Reader = req.Body
	if req.Header.Get("Content-Encoding") == "gzip" {
		zr, err := gzip.NewReader(req.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return nil, false
		}
		body = zr
	}
	b, _ := io.ReadAll(body)
	return b, true
}

// bulkCreate is a create action of a _bulk body.
type bulkCreate struct{ Index, ID string }

// bulkCreates returns the create actions of a _bulk body, in order.
func bulkCreates(b []byte) []bulkCreate {
	var out []bulkCreate
	sc := bufio.NewScanner(strings.NewReader(string(b)))
	sc.Buffer(make([]byte, 1<<20), 8<<20)
	for sc.Scan() {
		var action map[string]struct {
			Index string `json:"_index"`
			ID    string `json:"_id"`
		}
		if err := json.Unmarshal(sc.Bytes(), &action); err != nil || action["create"].Index == "" {
			continue
		}
		sc.Scan() // the document
		out = append(out, bulkCreate{Index: action["create"].Index, ID: action["create"].ID})
	}
	return out
}

func (r *esRecorder) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	b, ok := esRequest(w, req)
	if !ok {
		return
	}
	call := req.Method + " " + req.URL.Path
	r.mu.Lock()
	r.calls = append(r.calls, call)
	r.bodies[call] = b
	n := r.perCalls[call]
	r.perCalls[call]++
	r.mu.Unlock()
	if status := r.answer(call, n); status != 0 {
		w.WriteHeader(status)
		fmt.Fprintf(w, `{"error":{"type":"test","reason":"answered %d"},"status":%d}`, status, status)
		return
	}
	if !strings.HasSuffix(req.URL.Path, "/_bulk") {
		_, _ = w.Write([]byte(`{"acknowledged":true}`))
		return
	}
	var items []string
	for _, c := range bulkCreates(b) {
		items = append(items, fmt.Sprintf(`{"create":{"_index":%q,"_id":%q,"status":201,"result":"created"}}`, c.Index, c.ID))
	}
	r.mu.Lock()
	r.created += len(items)
	r.mu.Unlock()
	fmt.Fprintf(w, `{"took":1,"errors":false,"items":[%s]}`, strings.Join(items, ","))
}

func (r *esRecorder) snapshot() ([]string, map[string][]byte, int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	bodies := map[string][]byte{}
	for k, v := range r.bodies {
		bodies[k] = v
	}
	return append([]string(nil), r.calls...), bodies, r.created
}

// writeLog writes n CRI lines for a pod's container.
func writeLog(t *testing.T, logDir string, n int) {
	t.Helper()
	path := filepath.Join(logDir, "ns1_web-0_uid-1", "app", "0.log")
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, "2026-11-30T00:00:00.%09dZ stdout F line %d\n", i, i)
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestSetupBeforeShipping: the policy and template are put before the
// first bulk request (after a 503 is retried), and say what an
// Elasticsearch needs: the delete phase at the retention, data streams
// for logs-kubernetes-*, flattened labels, the policy by name.
func TestSetupBeforeShipping(t *testing.T) {
	es, rec := newESRecorder(t, func(call string, n int) int {
		if strings.HasPrefix(call, "PUT /_ilm/") && n == 0 {
			return http.StatusServiceUnavailable
		}
		return 0
	})
	root := t.TempDir()
	logDir := filepath.Join(root, "logs")
	writeLog(t, logDir, 20)
	startShipper(t, Config{PodLogDir: logDir, StateDir: filepath.Join(root, "state"), NodeName: "node-a", URL: es.URL,
		Setup: &Setup{Retention: 7 * 24 * time.Hour}, FlushInterval: 50 * time.Millisecond})
	deadline := time.Now().Add(20 * time.Second)
	for {
		if _, _, created := rec.snapshot(); created >= 20 {
			break
		}
		if time.Now().After(deadline) {
			calls, _, created := rec.snapshot()
			t.Fatalf("%d of 20 lines shipped; calls: %v", created, calls)
		}
		time.Sleep(50 * time.Millisecond)
	}
	calls, bodies, _ := rec.snapshot()
	policy, template := "PUT /_ilm/policy/"+SetupName, "PUT /_index_template/"+SetupName
	var order []string
	for _, c := range calls {
		if c == policy || c == template || strings.HasSuffix(c, "/_bulk") {
			if len(order) == 0 || order[len(order)-1] != c {
				order = append(order, c)
			}
		}
	}
	if len(order) < 3 || order[0] != policy || order[1] != template || !strings.HasSuffix(order[2], "/_bulk") {
		t.Fatalf("calls in order %v, want the policy (retried), the template, then bulk", order)
	}
	if n := strings.Count(strings.Join(calls, "\n"), policy); n != 2 {
		t.Errorf("policy put %d times, want 2 (a 503, then 200)", n)
	}

	var p struct {
		Policy struct {
			Phases map[string]struct {
				MinAge  string                     `json:"min_age"`
				Actions map[string]json.RawMessage `json:"actions"`
			} `json:"phases"`
		} `json:"policy"`
	}
	if err := json.Unmarshal(bodies[policy], &p); err != nil {
		t.Fatalf("policy body: %v", err)
	}
	if d := p.Policy.Phases["delete"]; d.MinAge != "7d" || d.Actions["delete"] == nil {
		t.Errorf("delete phase %+v, want min_age 7d with a delete action", d)
	}
	if p.Policy.Phases["hot"].Actions["rollover"] == nil {
		t.Error("no rollover in the hot phase")
	}

	var tpl struct {
		IndexPatterns []string        `json:"index_patterns"`
		DataStream    json.RawMessage `json:"data_stream"`
		Priority      int             `json:"priority"`
		Template      struct {
			Settings map[string]string `json:"settings"`
			Mappings struct {
				Properties struct {
					Timestamp  map[string]any `json:"@timestamp"`
					Kubernetes struct {
						Properties map[string]map[string]any `json:"properties"`
					} `json:"kubernetes"`
				} `json:"properties"`
			} `json:"mappings"`
		} `json:"template"`
	}
	if err := json.Unmarshal(bodies[template], &tpl); err != nil {
		t.Fatalf("template body: %v", err)
	}
	if len(tpl.IndexPatterns) != 1 || tpl.IndexPatterns[0] != IndexPrefix+"*" || tpl.DataStream == nil || tpl.Priority <= 100 {
		t.Errorf("template patterns %v, data_stream %s, priority %d", tpl.IndexPatterns, tpl.DataStream, tpl.Priority)
	}
	if tpl.Template.Settings["index.lifecycle.name"] != SetupName {
		t.Errorf("template settings %v do not name the policy", tpl.Template.Settings)
	}
	kp := tpl.Template.Mappings.Properties.Kubernetes.Properties
	if kp["labels"]["type"] != "flattened" || kp["annotations"]["type"] != "flattened" || kp["namespace_name"]["type"] != "keyword" {
		t.Errorf("kubernetes mapping %v", kp)
	}
	if tpl.Template.Mappings.Properties.Timestamp["type"] != "date_nanos" {
		t.Errorf("@timestamp mapping %v", tpl.Template.Mappings.Properties.Timestamp)
	}
}

// TestSetupRefusedShipsAnyway: a sink without the APIs (VictoriaLogs
// answers 400) is counted and logged; every line is still shipped.
func TestSetupRefusedShipsAnyway(t *testing.T) {
	es, rec := newESRecorder(t, func(call string, _ int) int {
		if strings.HasPrefix(call, "PUT /_ilm/") || strings.HasPrefix(call, "PUT /_index_template/") {
			return http.StatusBadRequest
		}
		return 0
	})
	root := t.TempDir()
	logDir := filepath.Join(root, "logs")
	writeLog(t, logDir, 10)
	reg := prometheus.NewRegistry()
	r := startShipper(t, Config{PodLogDir: logDir, StateDir: filepath.Join(root, "state"), NodeName: "node-a", URL: es.URL,
		Setup: &Setup{}, FlushInterval: 50 * time.Millisecond, Registerer: reg})
	deadline := time.Now().Add(20 * time.Second)
	for {
		if _, _, created := rec.snapshot(); created >= 10 {
			break
		}
		if time.Now().After(deadline) {
			calls, _, created := rec.snapshot()
			t.Fatalf("%d of 10 lines shipped after a refused setup; calls: %v", created, calls)
		}
		time.Sleep(50 * time.Millisecond)
	}
	var m dto.Metric
	if err := r.s.m.setupFailures.Write(&m); err != nil {
		t.Fatal(err)
	}
	if got := m.GetCounter().GetValue(); got != 1 {
		t.Errorf("setup failures %v, want 1", got)
	}
	calls, _, _ := rec.snapshot()
	for _, c := range calls {
		if strings.HasPrefix(c, "PUT /_index_template/") {
			t.Errorf("template put after the policy was refused: %v", calls)
		}
	}
}

func TestESDuration(t *testing.T) {
	for d, want := range map[time.Duration]string{
		7 * 24 * time.Hour: "7d", 36 * time.Hour: "36h", 90 * time.Minute: "90m", 1500 * time.Millisecond: "2s", 45 * time.Second: "45s",
	} {
		if got := esDuration(d); got != want {
			t.Errorf("esDuration(%v) = %q, want %q", d, got, want)
		}
	}
	if strings.Contains(string(Setup{}.policyBody()), "delete") {
		t.Error("a zero retention still has a delete phase")
	}
}
