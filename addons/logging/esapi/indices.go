package esapi

import (
	"fmt"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/skiffhq/skiff/addons/logging/store"
)

func (h *Handler) createIndex(w http.ResponseWriter, r *http.Request, name string) error {
	// Settings and mappings in the body are accepted and ignored.
	if _, err := h.readBody(r); err != nil {
		return err
	}
	if err := h.Store.CreateIndex(r.Context(), name); err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, map[string]any{"acknowledged": true, "shards_acknowledged": true, "index": name})
}

// deleteIndex deletes indices by name; in a cluster on every server that
// has them (acknowledged is false when a server did not answer).
func (h *Handler) deleteIndex(w http.ResponseWriter, r *http.Request, names string) error {
	var list, here []string
	for _, n := range strings.Split(names, ",") {
		if strings.ContainsAny(n, "*?") || n == "_all" {
			return esError(http.StatusBadRequest, "illegal_argument_exception", "Wildcard expressions or all indices are not allowed")
		}
		list = append(list, n)
		if h.Store.Exists(n) {
			here = append(here, n)
		}
	}
	if len(here) < len(list) && r.URL.Query().Get("ignore_unavailable") != "true" {
		if !h.federated(r) {
			for _, n := range list {
				if !slices.Contains(here, n) {
					return fmt.Errorf("%w: no such index [%s]", store.ErrIndexNotFound, n)
				}
			}
		} else if err := h.clusterHas(r, names); err != nil {
			return err
		}
	}
	if len(here) > 0 {
		if err := h.Store.DeleteIndex(r.Context(), here...); err != nil {
			return err
		}
	}
	acked := true
	if h.federated(r) {
		acked = h.deletePeers(r, list)
	}
	return writeJSON(w, http.StatusOK, map[string]any{"acknowledged": acked})
}

func (h *Handler) getIndex(w http.ResponseWriter, r *http.Request, pattern string) error {
	infos := h.clusterIndices(r, pattern)
	if len(infos) == 0 && !strings.ContainsAny(pattern, "*?") {
		if r.Method == http.MethodHead {
			w.WriteHeader(http.StatusNotFound)
			return nil
		}
		return fmt.Errorf("%w: no such index [%s]", store.ErrIndexNotFound, pattern)
	}
	out := map[string]any{}
	for _, in := range infos {
		out[in.Name] = map[string]any{
			"aliases":  map[string]any{},
			"mappings": map[string]any{"dynamic": "true"},
			"settings": map[string]any{"index": map[string]any{
				"number_of_shards": "1", "number_of_replicas": "0", "uuid": in.UID,
				"provided_name": in.Name, "creation_date": strconv.FormatInt(in.Created.UnixMilli(), 10),
			}},
		}
	}
	return writeJSON(w, http.StatusOK, out)
}

// catIndices answers _cat/indices as text columns or, with format=json,
// as objects with string values, as Elasticsearch does.
func (h *Handler) catIndices(w http.ResponseWriter, r *http.Request, pattern string) error {
	infos := h.clusterIndices(r, pattern)
	if q := r.URL.Query().Get("s"); q != "" {
		key, desc := strings.CutSuffix(q, ":desc")
		sort.SliceStable(infos, func(i, j int) bool {
			var less bool
			switch key {
			case "docs.count":
				less = infos[i].Docs < infos[j].Docs
			case "store.size":
				less = infos[i].Bytes < infos[j].Bytes
			default:
				less = infos[i].Name < infos[j].Name
			}
			if desc {
				return !less
			}
			return less
		})
	}
	bytesFmt := r.URL.Query().Get("bytes")
	size := func(n int64) string {
		if bytesFmt == "b" {
			return strconv.FormatInt(n, 10)
		}
		return humanBytes(n)
	}
	cols := defaultCatColumns
	if v := r.URL.Query().Get("h"); v != "" {
		cols = strings.Split(v, ",")
	}
	rows := make([][]string, 0, len(infos))
	for _, in := range infos {
		row := make([]string, len(cols))
		for i, c := range cols {
			row[i] = catColumn(in, c, size)
		}
		rows = append(rows, row)
	}
	if r.URL.Query().Get("format") == "json" {
		out := make([]map[string]string, 0, len(rows))
		for _, row := range rows {
			m := make(map[string]string, len(cols))
			for i, c := range cols {
				m[c] = row[i]
			}
			out = append(out, m)
		}
		return writeJSON(w, http.StatusOK, out)
	}
	var b strings.Builder
	if _, ok := r.URL.Query()["v"]; ok {
		b.WriteString(strings.Join(cols, " ") + "\n")
	}
	for _, row := range rows {
		b.WriteString(strings.Join(row, " ") + "\n")
	}
	w.Header().Set("Content-Type", "text/plain; charset=UTF-8")
	_, _ = w.Write([]byte(b.String()))
	return nil
}

// defaultCatColumns are _cat/indices' columns without h=.
var defaultCatColumns = []string{"health", "status", "index", "uuid", "pri", "rep", "docs.count", "docs.deleted", "store.size", "pri.store.size", "dataset.size"}

// catColumn is one _cat/indices cell (h= names, as Elasticsearch's).
func catColumn(in store.IndexInfo, col string, size func(int64) string) string {
	switch col {
	case "health", "h":
		return "green"
	case "status", "s":
		return "open"
	case "index", "i", "idx":
		return in.Name
	case "uuid", "id":
		return in.UID
	case "pri", "p", "shards.primary", "shardsPrimary":
		return "1"
	case "rep", "r", "shards.replica", "shardsReplica":
		return "0"
	case "docs.count", "dc", "docsCount":
		return strconv.FormatInt(in.Docs, 10)
	case "docs.deleted", "dd", "docsDeleted":
		return "0"
	case "store.size", "ss", "storeSize", "pri.store.size", "dataset.size":
		return size(in.Bytes)
	case "creation.date", "cd":
		return strconv.FormatInt(in.Created.UnixMilli(), 10)
	case "creation.date.string", "cds":
		return in.Created.UTC().Format("2006-01-02T15:04:05.000Z")
	}
	return ""
}

func humanBytes(n int64) string {
	units := []string{"b", "kb", "mb", "gb", "tb"}
	f := float64(n)
	i := 0
	for f >= 1024 && i < len(units)-1 {
		f /= 1024
		i++
	}
	if i == 0 {
		return strconv.FormatInt(n, 10) + "b"
	}
	return strconv.FormatFloat(f, 'f', 1, 64) + units[i]
}
