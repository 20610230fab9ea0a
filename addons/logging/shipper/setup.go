package shipper

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"time"

	elasticsearch "github.com/elastic/go-elasticsearch/v8"
	"github.com/elastic/go-elasticsearch/v8/esapi"
)

// SetupName names the index template and the ILM policy the shipper puts
// on an external Elasticsearch.
const SetupName = "skiff-logs-kubernetes"

// Setup asks the shipper to prepare an external Elasticsearch before it
// ships (as Filebeat's setup.template and setup.ilm do): an ILM policy
// SetupName that rolls the backing indices over daily or at 50 GB and
// deletes them after Retention, and an index template SetupName for
// IndexPrefix+"*" that makes those indices data streams with the
// documents' mapping (kubernetes.labels and kubernetes.annotations as
// flattened, so label keys with dots never clash) and the policy. Both
// are PUT on every start, which is idempotent and brings an older
// definition up to date.
type Setup struct {
	// Retention deletes backing indices this long after their rollover
	// (0: never).
	Retention time.Duration
}

// policyBody is the ILM policy.
func (st Setup) policyBody() []byte {
	phases := map[string]any{
		"hot": map[string]any{"actions": map[string]any{
			"rollover": map[string]any{"max_age": "1d", "max_primary_shard_size": "50gb"},
		}},
	}
	if st.Retention > 0 {
		phases["delete"] = map[string]any{"min_age": esDuration(st.Retention), "actions": map[string]any{"delete": map[string]any{}}}
	}
	return mustJSON(map[string]any{"policy": map[string]any{
		"_meta":  map[string]any{"managed_by": "skiff"},
		"phases": phases,
	}})
}

// templateVersion is bumped whenever templateBody changes.
const templateVersion = 1

// templateBody is the index template: priority 200 wins over
// Elasticsearch's built-in logs-*-* template (100).
func (st Setup) templateBody() []byte {
	keyword := map[string]any{"type": "keyword", "ignore_above": 1024}
	kube := map[string]any{}
	for _, f := range []string{"namespace_name", "pod_name", "pod_id", "container_name", "container_image", "host"} {
		kube[f] = keyword
	}
	kube["labels"] = map[string]any{"type": "flattened"}
	kube["annotations"] = map[string]any{"type": "flattened"}
	return mustJSON(map[string]any{
		"index_patterns": []string{IndexPrefix + "*"},
		"data_stream":    map[string]any{},
		"priority":       200,
		"version":        templateVersion,
		"_meta":          map[string]any{"managed_by": "skiff", "description": "container logs shipped by skiff agents"},
		"template": map[string]any{
			"settings": map[string]any{"index.lifecycle.name": SetupName},
			"mappings": map[string]any{
				"properties": map[string]any{
					"@timestamp": map[string]any{"type": "date_nanos"},
					"message":    map[string]any{"type": "match_only_text"},
					"stream":     map[string]any{"type": "keyword"},
					"kubernetes": map[string]any{"properties": kube},
				},
			},
		},
	})
}

// esDuration writes d in Elasticsearch's time units, in the largest unit
// that is exact (whole seconds at least).
func esDuration(d time.Duration) string {
	switch {
	case d%(24*time.Hour) == 0:
		return fmt.Sprintf("%dd", d/(24*time.Hour))
	case d%time.Hour == 0:
		return fmt.Sprintf("%dh", d/time.Hour)
	case d%time.Minute == 0:
		return fmt.Sprintf("%dm", d/time.Minute)
	}
	return fmt.Sprintf("%ds", (d+time.Second-1)/time.Second)
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

// setupError is a definitive answer: retrying will not change it.
type setupError struct {
	what   string
	status int
	body   string
}

func (e *setupError) Error() string {
	return fmt.Sprintf("%s: %d %s", e.what, e.status, e.body)
}

// runSetup puts the policy and the template, retrying transport errors,
// 429 and 5xx with backoff until ctx ends (the sink being down holds
// shipping back anyway, and documents sent before the template would
// create their data stream without it). A sink that refuses (other 4xx:
// no such API, no permission) is logged, and shipping goes on.
func (s *Shipper) runSetup(ctx context.Context, es *elasticsearch.Client) {
	st := *s.cfg.Setup
	steps := []struct {
		what string
		do   func() (*esapi.Response, error)
	}{
		{"ILM policy " + SetupName, func() (*esapi.Response, error) {
			return es.ILM.PutLifecycle(SetupName, es.ILM.PutLifecycle.WithBody(bytes.NewReader(st.policyBody())), es.ILM.PutLifecycle.WithContext(ctx))
		}},
		{"index template " + SetupName, func() (*esapi.Response, error) {
			return es.Indices.PutIndexTemplate(SetupName, bytes.NewReader(st.templateBody()), es.Indices.PutIndexTemplate.WithContext(ctx))
		}},
	}
	for _, step := range steps {
		for attempt := 0; ; attempt++ {
			err := setupCall(step.what, step.do)
			if err == nil {
				s.log.Info("elasticsearch set up", "put", step.what)
				break
			}
			if se, ok := err.(*setupError); ok && se.status >= 400 && se.status < 500 && se.status != http.StatusTooManyRequests {
				s.log.Warn("elasticsearch setup refused; shipping without it", "put", step.what, "err", err)
				s.m.setupFailures.Inc()
				return
			}
			s.log.Warn("elasticsearch setup failed, retrying", "put", step.what, "err", err)
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff(attempt)):
			}
		}
	}
}

func setupCall(what string, do func() (*esapi.Response, error)) error {
	res, err := do()
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	defer res.Body.Close()
	if res.IsError() {
		b, _ := io.ReadAll(io.LimitReader(res.Body, 512))
		return &setupError{what: what, status: res.StatusCode, body: string(bytes.TrimSpace(b))}
	}
	_, _ = io.Copy(io.Discard, res.Body)
	return nil
}
