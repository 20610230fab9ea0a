package esapi

import (
	"fmt"
	"net/http"
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

func (h *Handler) deleteIndex(w http.ResponseWriter, r *http.Request, names string) error {
	var list []string
	for _, n := range strings.Split(names, ",") {
		if strings.ContainsAny(n, "*?") || n == "_all" {
			return esError(http.StatusBadRequest, "illegal_argument_exception", "Wildcard expressions or all indices are not allowed")
		}
		if !h.Store.Exists(n) {
			return fmt.Errorf("%w: no such index [%s]", store.ErrIndexNotFound, n)
		}
		list = append(list, n)
	}
	if err := h.Store.DeleteIndex(r.Context(), list...); err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, map[string]any{"acknowledged": true})
}

func (h *Handler) getIndex(w http.ResponseWriter, r *http.Request, pattern string) error {
	infos := h.Store.Indices(pattern)
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
	infos := h.Store.Indices(pattern)
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
	if r.URL.Query().Get("format") == "json" {
		rows := make([]map[string]string, 0, len(infos))
		for _, in := range infos {
			rows = append(rows, map[string]string{
				"health": "green", "status": "open", "index": in.Name, "uuid": in.UID,
				"pri": "1", "rep": "0", "docs.count": strconv.FormatInt(in.Docs, 10), "docs.deleted": "0",
				"store.size": size(in.Bytes), "pri.store.size": size(in.Bytes), "dataset.size": size(in.Bytes),
			})
		}
		return writeJSON(w, http.StatusOK, rows)
	}
	var b strings.Builder
	if _, ok := r.URL.Query()["v"]; ok {
		b.WriteString("health status index uuid pri rep docs.count docs.deleted store.size pri.store.size\n")
	}
	for _, in := range infos {
		fmt.Fprintf(&b, "green  open   %s %s 1 0 %d 0 %s %s\n", in.Name, in.UID, in.Docs, size(in.Bytes), size(in.Bytes))
	}
	w.Header().Set("Content-Type", "text/plain; charset=UTF-8")
	_, _ = w.Write([]byte(b.String()))
	return nil
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
