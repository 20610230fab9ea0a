package shipper

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"github.com/elastic/go-elasticsearch/v8/esutil"
)

var bulkResponses = []string{
	`{"errors":false,"items":[{"create":{"status":201}},{"create":{"status":201}}]}`,
	`{"errors":true,"took":3,"items":[{"create":{"status":201}},{"create":{"status":409,"error":{"type":"version_conflict_engine_exception","reason":"[x]: version conflict","index":"logs-a"}}},{"index":{"status":400,"error":{"type":"document_parsing_exception","reason":"failed to parse"}}}]}`,
	" { \"errors\" : false ,\n\"items\" : [ ] } ",
	// What the fast path leaves to encoding/json: full responses, escapes,
	// null, case-insensitive keys, repeated keys, numbers it does not read.
	`{"took":1,"errors":false,"items":[{"create":{"_index":"logs-a","_id":"x","_version":1,"result":"created","_shards":{"total":1,"successful":1,"failed":0},"_seq_no":0,"_primary_term":1,"status":201}}]}`,
	`{"errors":true,"items":[{"create":{"status":400,"error":{"type":"x","reason":"a \"quoted\" reason","caused_by":{"type":"y","reason":"z"}}}}]}`,
	`{"errors":null,"items":[{"create":{"Status":201}}]}`,
	`{"errors":false,"errors":true,"items":[{"create":{"status":201,"status":409}}]}`,
	`{"items":[{"create":{"status":2.01e2}},{}, {"a":{},"b":{"status":1}}]}`,
	`{"items":[{"create":{"status":0201}}]}`,
	`{"items":[]} trailing`,
}

// jsonBulkResponse is what go-elasticsearch's bulk indexer read with its
// default decoder (encoding/json), converted.
func jsonBulkResponse(b []byte) (bulkResponse, error) {
	var full esutil.BulkIndexerResponse
	if err := json.Unmarshal(b, &full); err != nil {
		return bulkResponse{}, err
	}
	return fromIndexerResponse(&full, nil), nil
}

// TestBulkResponseDecoder: the shipper's decoder reads what the indexer's
// default decoder (encoding/json) reads, and the compact responses on its
// fast path; items are appended to the slice given (reused per batch).
func TestBulkResponseDecoder(t *testing.T) {
	fast := 0
	for _, s := range bulkResponses {
		got, gotErr := readBulkResponse(strings.NewReader(s), nil)
		want, wantErr := jsonBulkResponse([]byte(s))
		if (gotErr != nil) != (wantErr != nil) || !reflect.DeepEqual(got, want.Items) {
			t.Errorf("%s:\n got %+v (%v)\nwant %+v (%v)", s, got, gotErr, want, wantErr)
		}
		res, ok := parseCompactBulk([]byte(s), nil)
		if ok {
			fast++
			if !reflect.DeepEqual(res, want) {
				t.Errorf("%s: fast path\n got %+v\nwant %+v", s, res, want)
			}
		}
	}
	if fast != 3 {
		t.Errorf("%d responses on the fast path, want the 3 compact ones", fast)
	}
	res, ok := parseCompactBulk([]byte(bulkResponses[1]), nil)
	if !ok || !res.HasErrors || res.Took != 3 || len(res.Items) != 3 ||
		res.Items[1].Status != 409 || res.Items[1].ErrType != "version_conflict_engine_exception" ||
		res.Items[2].ErrReason != "failed to parse" || !res.Items[0].ok() || res.Items[1].ok() {
		t.Errorf("compact response read as %+v (%v)", res, ok)
	}
	prev := make([]bulkItem, 1, 4)
	if got, err := readBulkResponse(strings.NewReader(bulkResponses[0]), prev[:0]); err != nil || len(got) != 2 || &got[0] != &prev[0] {
		t.Errorf("items not read into the slice given: %+v, %v", got, err)
	}
	// More than one action in an item (malformed): the first in sorted order.
	if got, err := readBulkResponse(strings.NewReader(`{"items":[{"index":{"status":400},"create":{"status":201}}]}`), nil); err != nil || len(got) != 1 || got[0].Status != 201 {
		t.Errorf("item with two actions read as %+v, %v", got, err)
	}
}

// FuzzBulkResponse: whatever the fast path accepts, encoding/json decodes
// to the same response.
func FuzzBulkResponse(f *testing.F) {
	for _, s := range bulkResponses {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		got, ok := parseCompactBulk(b, nil)
		if !ok {
			return
		}
		want, err := jsonBulkResponse(b)
		if err != nil {
			t.Fatalf("%q: fast path read %+v, encoding/json fails: %v", b, got, err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("%q:\n got %+v\nwant %+v", b, got, want)
		}
	})
}

// TestLoopbackURL: gzip is left off only for a sink on this host.
func TestLoopbackURL(t *testing.T) {
	for u, want := range map[string]bool{
		"http://127.0.0.1:9200": true, "https://localhost/logs": true, "http://[::1]:9200": true, "http://127.3.2.1": true,
		"https://10.0.0.5:6443/logs": false, "https://es.example.com": false, "http://[fe80::1]:9200": false, "::bad": false,
	} {
		if got := loopbackURL(u); got != want {
			t.Errorf("loopbackURL(%q) = %v, want %v", u, got, want)
		}
	}
}
