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

// TestBulkResponseDecoder: the shipper's decoder reads what the indexer's
// default decoder (encoding/json) reads, and the compact responses on its
// fast path.
func TestBulkResponseDecoder(t *testing.T) {
	fast := 0
	for _, s := range bulkResponses {
		var got, want esutil.BulkIndexerResponse
		gotErr := bulkDecoder{}.UnmarshalFromReader(strings.NewReader(s), &got)
		wantErr := json.Unmarshal([]byte(s), &want)
		if (gotErr != nil) != (wantErr != nil) || !reflect.DeepEqual(got, want) {
			t.Errorf("%s:\n got %+v (%v)\nwant %+v (%v)", s, got, gotErr, want, wantErr)
		}
		if _, ok := parseCompactBulk([]byte(s)); ok {
			fast++
		}
	}
	if fast != 3 {
		t.Errorf("%d responses on the fast path, want the 3 compact ones", fast)
	}
	res, ok := parseCompactBulk([]byte(bulkResponses[1]))
	if !ok || !res.HasErrors || res.Took != 3 || len(res.Items) != 3 ||
		res.Items[1]["create"].Status != 409 || res.Items[1]["create"].Error.Type != "version_conflict_engine_exception" ||
		res.Items[2]["index"].Error.Reason != "failed to parse" {
		t.Errorf("compact response read as %+v (%v)", res, ok)
	}
}

// FuzzBulkResponse: whatever the fast path accepts, encoding/json decodes
// to the same response.
func FuzzBulkResponse(f *testing.F) {
	for _, s := range bulkResponses {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		got, ok := parseCompactBulk(b)
		if !ok {
			return
		}
		var want esutil.BulkIndexerResponse
		if err := json.Unmarshal(b, &want); err != nil {
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
