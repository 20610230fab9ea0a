package esapi

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/skiffhq/skiff/addons/logging/store"
)

func newServerFor(t *testing.T, h http.Handler) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.StripPrefix("/logs", h))
	t.Cleanup(srv.Close)
	return srv
}

// poisonBulkStates overwrites the buffers of the pooled bulk states (what
// the next requests will read into): if anything of an earlier request
// still pointed into them, its documents or its answer would change.
func poisonBulkStates() {
	var got []*bulkState
	for range 8 {
		st := bulkStates.Get().(*bulkState)
		b := st.body[:cap(st.body)]
		for i := range b {
			b[i] = 'X'
		}
		o := st.out[:cap(st.out)]
		for i := range o {
			o[i] = 'Y'
		}
		got = append(got, st)
	}
	for _, st := range got {
		bulkStates.Put(st)
	}
}

// TestBulkPooledBodies sends concurrent _bulk requests of different sizes
// and encodings (a known length, chunked, gzip) through one handler, so
// that body buffers and the rest of the per-request state are reused by
// other requests, and poisons the pooled buffers between rounds. Every
// response must name its own documents, and every stored document must be
// exactly the one sent with its id.
func TestBulkPooledBodies(t *testing.T) {
	st, err := store.Open(store.Options{Dir: t.TempDir(), NoSync: true, MaxAge: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	srv := newServerFor(t, &Handler{Store: st})
	const senders, rounds = 6, 8
	var mu sync.Mutex
	want := map[string]string{} // id -> source
	for round := range rounds {
		var wg sync.WaitGroup
		for g := range senders {
			wg.Go(func() {
				n := 5 + (g*7+round*13)%60
				var body bytes.Buffer
				var ids []string
				for i := range n {
					id := fmt.Sprintf("r%d-g%d-%d", round, g, i)
					src := fmt.Sprintf(`{"@timestamp":"2026-01-02T03:04:%02dZ","message":"%s %s","kubernetes":{"pod_name":"p%d"},"n":%d}`,
						i%60, id, strings.Repeat(string(rune('a'+g)), (round*31+i*17)%300), g, i)
					fmt.Fprintf(&body, `{"create":{"_index":"logs-kubernetes-g%d","_id":%q}}`+"\n%s\n", g%3, id, src)
					ids = append(ids, id)
					mu.Lock()
					want[id] = src
					mu.Unlock()
				}
				var rd io.Reader
				hdr := []string{"Content-Type", "application/x-ndjson"}
				switch (g + round) % 3 {
				case 0: // known length
					rd = bytes.NewReader(body.Bytes())
				case 1: // chunked: no length
					rd = io.MultiReader(bytes.NewReader(body.Bytes()))
				case 2:
					var gz bytes.Buffer
					zw := gzip.NewWriter(&gz)
					_, _ = zw.Write(body.Bytes())
					_ = zw.Close()
					rd = &gz
					hdr = append(hdr, "Content-Encoding", "gzip")
				}
				req, _ := http.NewRequest("POST", srv.URL+"/logs/_bulk", rd)
				for i := 0; i+1 < len(hdr); i += 2 {
					req.Header.Set(hdr[i], hdr[i+1])
				}
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Error(err)
					return
				}
				defer resp.Body.Close()
				raw, _ := io.ReadAll(resp.Body)
				var out struct {
					Errors bool
					Items  []map[string]struct {
						Index  string `json:"_index"`
						ID     string `json:"_id"`
						Status int
					}
				}
				if err := json.Unmarshal(raw, &out); err != nil || resp.StatusCode != 200 || out.Errors || len(out.Items) != n {
					t.Errorf("response %d %s: %v", resp.StatusCode, raw, err)
					return
				}
				for i, it := range out.Items {
					c := it["create"]
					if c.ID != ids[i] || c.Status != 201 || c.Index != fmt.Sprintf("logs-kubernetes-g%d", g%3) {
						t.Errorf("item %d = %+v, want id %s created", i, c, ids[i])
					}
				}
			})
		}
		wg.Wait()
		poisonBulkStates()
	}
	res, err := st.Search(t.Context(), store.SearchRequest{Indices: []string{"logs-*"}, Query: store.MatchAll{}, Size: 10000})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Hits) != len(want) {
		t.Fatalf("%d documents stored, want %d", len(res.Hits), len(want))
	}
	for _, h := range res.Hits {
		var got, exp any
		if err := json.Unmarshal(h.Source, &got); err != nil {
			t.Fatalf("%s: %s: %v", h.ID, h.Source, err)
		}
		_ = json.Unmarshal([]byte(want[h.ID]), &exp)
		if !reflect.DeepEqual(got, exp) {
			t.Errorf("document %s = %s, want %s", h.ID, h.Source, want[h.ID])
		}
	}
}

// TestBulkStateRelease: a state given back keeps no slice of its request
// (body, sources, ids, errors) anywhere in its items, ops or results, and
// drops buffers beyond the bounds.
func TestBulkStateRelease(t *testing.T) {
	st := &bulkState{body: []byte("x\n")}
	st.items = decodeBulk([]byte(`{"create":{"_index":"a","_id":"1"}}`+"\n"+`{"m":1}`+"\n"), "")
	st.ops = []store.Op{{Index: "a", ID: "1", Source: st.body}}
	st.res = []store.OpResult{{ID: "1", Status: 400, Err: io.EOF}}
	st.items, st.ops, st.res = st.items[:0], st.ops[:0], st.res[:0] // as after an error
	st.release()
	if st.items[:cap(st.items)][0].source != nil || st.ops[:cap(st.ops)][0].Source != nil || st.res[:cap(st.res)][0].Err != nil {
		t.Fatal("a released state still refers to its request")
	}
	big := &bulkState{body: make([]byte, 0, maxPooledBody+1), items: make([]bulkItem, 0, maxPooledItems+1)}
	big.release()
	if big.body != nil || big.items != nil {
		t.Fatal("oversize buffers kept")
	}
}
