package metrics

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/rest"
)

// Scraper fetches one node's stats summary.
type Scraper interface {
	Scrape(ctx context.Context, node *corev1.Node) (*Summary, error)
}

// ErrNoAddress is returned for a node without an address or agent port.
var ErrNoAddress = errors.New("node has no address or kubelet port")

// HTTPScraper reads GET /stats/summary from node agents (the kubelet API).
type HTTPScraper struct {
	// Client carries the credentials the agents authorize (nodes/stats) and
	// trusts their serving certificates (the cluster CA).
	Client *http.Client
	// URL, when set, overrides where a node's summary is read (tests and
	// hollow nodes). The default is https://<InternalIP>:<kubelet port>.
	URL func(node *corev1.Node) (string, error)
	// MaxBytes bounds one response (default 64 MiB).
	MaxBytes int64
}

var _ Scraper = (*HTTPScraper)(nil)

// NewHTTPScraper reads summaries with rc's credentials and CA over HTTP/1.1
// keep-alive connections, as Prometheus scrapes by default. One request per
// node per round gains nothing from HTTP/2's multiplexing, and each idle
// HTTP/2 connection holds its framer's read buffer and HPACK tables besides
// what HTTP/1.1 holds: about 30 KiB a node, 30 MiB at 1,000 nodes.
func NewHTTPScraper(rc *rest.Config) (*HTTPScraper, error) {
	rc = rest.CopyConfig(rc)
	rc.NextProtos = []string{"http/1.1"}
	hc, err := rest.HTTPClientFor(rc)
	if err != nil {
		return nil, fmt.Errorf("agent client: %w", err)
	}
	return &HTTPScraper{Client: hc}, nil
}

// Scrape implements Scraper.
func (h *HTTPScraper) Scrape(ctx context.Context, node *corev1.Node) (*Summary, error) {
	url, err := h.url(node)
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := h.Client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("scrape %s: %w", node.Name, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return nil, fmt.Errorf("scrape %s: %s: %s", node.Name, resp.Status, b)
	}
	limit := h.MaxBytes
	if limit <= 0 {
		limit = 64 << 20
	}
	s, err := decodeSummary(io.LimitReader(resp.Body, limit))
	if err != nil {
		return nil, fmt.Errorf("scrape %s: decode summary: %w", node.Name, err)
	}
	// The decoder stops at the end of the JSON value; an HTTP/1.1
	// connection is kept for the next round only if its body was read to
	// the end (a chunked body's last chunk follows the value).
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10))
	return s, nil
}

func (h *HTTPScraper) url(node *corev1.Node) (string, error) {
	if h.URL != nil {
		return h.URL(node)
	}
	port := node.Status.DaemonEndpoints.KubeletEndpoint.Port
	var addr string
	for _, t := range []corev1.NodeAddressType{corev1.NodeInternalIP, corev1.NodeExternalIP, corev1.NodeHostName} {
		for _, a := range node.Status.Addresses {
			if a.Type == t && addr == "" {
				addr = a.Address
			}
		}
	}
	if addr == "" || port == 0 {
		return "", fmt.Errorf("%s: %w", node.Name, ErrNoAddress)
	}
	return "https://" + net.JoinHostPort(addr, strconv.Itoa(int(port))) + "/stats/summary", nil
}
