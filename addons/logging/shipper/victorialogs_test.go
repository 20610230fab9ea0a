package shipper

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// victoriaLogs is a VictoriaLogs server (github.com/VictoriaMetrics/
// VictoriaLogs, a third-party server that accepts Elasticsearch _bulk):
// the shipper is proven against a sink nobody here wrote.
type victoriaLogs struct{ base string }

// startVictoriaLogs runs victoria-logs from PATH on a free loopback port
// (deploy/install-deps.sh installs it), or skips the test.
func startVictoriaLogs(t *testing.T) *victoriaLogs {
	t.Helper()
	bin, err := exec.LookPath("victoria-logs")
	if err != nil {
		t.Skip("victoria-logs is not on PATH: GOBIN=/usr/local/bin go install github.com/VictoriaMetrics/VictoriaLogs/app/victoria-logs@v1.52.1 (deploy/install-deps.sh does)")
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	cmd := exec.Command(bin, "-storageDataPath="+t.TempDir(), "-httpListenAddr="+addr,
		"-inmemoryDataFlushInterval=1s", "-loggerLevel=ERROR")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	vl := &victoriaLogs{base: "http://" + addr}
	deadline := time.Now().Add(60 * time.Second)
	for {
		res, err := http.Get(vl.base + "/health")
		if err == nil {
			res.Body.Close()
			if res.StatusCode == 200 {
				return vl
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("victoria-logs did not become healthy: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// sinkURL is the Elasticsearch-compatible base the shipper ships to.
func (v *victoriaLogs) sinkURL() string { return v.base + "/insert/elasticsearch" }

// headers are what VictoriaLogs needs to read Elasticsearch documents.
func (v *victoriaLogs) headers() http.Header {
	return http.Header{"VL-Time-Field": {"@timestamp"}, "VL-Msg-Field": {"message"},
		"VL-Stream-Fields": {"kubernetes.pod_name,kubernetes.container_name"}}
}

// rows runs a LogsQL query and returns its rows.
func (v *victoriaLogs) rows(t *testing.T, query string) []map[string]string {
	t.Helper()
	res, err := http.PostForm(v.base+"/select/logsql/query", url.Values{"query": {query}})
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if res.StatusCode != 200 {
		t.Fatalf("query %q: %s", query, res.Status)
	}
	var out []map[string]string
	sc := bufio.NewScanner(res.Body)
	sc.Buffer(make([]byte, 1<<20), 8<<20)
	for sc.Scan() {
		var m map[string]string
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("row %q: %v", sc.Text(), err)
		}
		out = append(out, m)
	}
	return out
}

// count is the number of stored lines matching a LogsQL filter.
func (v *victoriaLogs) count(t *testing.T, filter string) int {
	t.Helper()
	r := v.rows(t, filter+" | stats count() n")
	if len(r) != 1 {
		return 0
	}
	var n int
	fmt.Sscan(strings.TrimSpace(r[0]["n"]), &n)
	return n
}
