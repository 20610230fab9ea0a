package metrics

import (
	"context"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	statsv1alpha1 "k8s.io/kubelet/pkg/apis/stats/v1alpha1"
)

// TestNewHTTPScraperUsesHTTP1 checks that scrapes reach an agent offering
// HTTP/2 over HTTP/1.1 with the CA of the rest config, and that a second
// round reuses the kept-alive connection instead of dialing again (a
// handshake per node per round doubled a 1,000-node round's CPU).
func TestNewHTTPScraperUsesHTTP1(t *testing.T) {
	var mu sync.Mutex
	var protos []string
	var conns atomic.Int32
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		protos = append(protos, r.Proto)
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		// Enough pods that the body is chunked: the connection is reused
		// only if the scraper reads past the JSON to the last chunk.
		var pods []statsv1alpha1.PodStats
		for i := range 50 {
			pods = append(pods, podStats("ns", fmt.Sprintf("p%d", i), time.Now(), 1, 1<<20))
		}
		_ = json.NewEncoder(w).Encode(summary("n1", time.Now(), 1, 1<<20, pods...))
	}))
	srv.EnableHTTP2 = true
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.StartTLS()
	defer srv.Close()
	if got := srv.TLS.NextProtos; len(got) == 0 || got[0] != "h2" {
		t.Fatalf("test agent does not offer h2: %v", got)
	}
	ca := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	sc, err := NewHTTPScraper(&rest.Config{Host: srv.URL, TLSClientConfig: rest.TLSClientConfig{CAData: ca}})
	if err != nil {
		t.Fatal(err)
	}
	sc.URL = func(*corev1.Node) (string, error) { return srv.URL + "/stats/summary", nil }
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1"}}
	for range 2 {
		s, err := sc.Scrape(context.Background(), node)
		if err != nil {
			t.Fatal(err)
		}
		if s.Node.NodeName != "n1" || len(s.Pods) != 50 {
			t.Fatalf("summary of %q with %d pods", s.Node.NodeName, len(s.Pods))
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(protos) != 2 || protos[0] != "HTTP/1.1" || protos[1] != "HTTP/1.1" {
		t.Errorf("scrapes used %v, want HTTP/1.1 twice", protos)
	}
	if n := conns.Load(); n != 1 {
		t.Errorf("two scrapes opened %d connections, want 1 kept alive", n)
	}
}
