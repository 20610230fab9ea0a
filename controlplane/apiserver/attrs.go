package apiserver

import (
	"encoding/json"
	"strconv"
	"strings"

	"github.com/skiffhq/skiff/controlplane/apiserver/registry"
	"github.com/skiffhq/skiff/controlplane/storage"
)

type attrMeta struct {
	Metadata struct {
		Name      string            `json:"name"`
		Namespace string            `json:"namespace"`
		Labels    map[string]string `json:"labels"`
	} `json:"metadata"`
}

// AttrFunc returns the function the watch cache uses to extract selector
// attributes of res's stored objects.
func AttrFunc(res *registry.Resource) storage.AttrFunc {
	paths := make(map[string][]string, len(res.SelectableFields))
	for name, path := range res.SelectableFields {
		paths[name] = strings.Split(path, ".")
	}
	return func(key string, value []byte) (storage.Attrs, error) {
		var m attrMeta
		if err := json.Unmarshal(value, &m); err != nil {
			return storage.Attrs{}, err
		}
		a := storage.Attrs{
			Namespace: m.Metadata.Namespace,
			Name:      m.Metadata.Name,
			Labels:    m.Metadata.Labels,
			Fields:    make(map[string]string, 2+len(paths)),
		}
		a.Fields["metadata.name"] = a.Name
		if res.Namespaced {
			a.Fields["metadata.namespace"] = a.Namespace
		}
		if len(paths) == 0 {
			return a, nil
		}
		var top map[string]json.RawMessage
		if err := json.Unmarshal(value, &top); err != nil {
			return a, err
		}
		for name, p := range paths {
			a.Fields[name] = extractField(top, p)
		}
		return a, nil
	}
}

// extractField follows path through raw JSON objects and renders the leaf
// as field selectors compare it ("" when missing).
func extractField(top map[string]json.RawMessage, path []string) string {
	cur := top
	for i, k := range path {
		raw, ok := cur[k]
		if !ok {
			return ""
		}
		if i == len(path)-1 {
			var v interface{}
			if err := json.Unmarshal(raw, &v); err != nil {
				return ""
			}
			switch x := v.(type) {
			case string:
				return x
			case bool:
				return strconv.FormatBool(x)
			case float64:
				return strconv.FormatFloat(x, 'f', -1, 64)
			case nil:
				return ""
			default:
				return string(raw)
			}
		}
		var next map[string]json.RawMessage
		if err := json.Unmarshal(raw, &next); err != nil {
			return ""
		}
		cur = next
	}
	return ""
}

func (s *Server) attrsFor(res *registry.Resource, key string, value []byte) (storage.Attrs, error) {
	return AttrFunc(res)(key, value)
}

// SyncCache registers a cache bucket for every served resource; it runs
// whenever the registry changes.
func (s *Server) SyncCache() {
	seen := map[string]bool{}
	for _, res := range s.reg.All() {
		if seen[res.StorageKeyPrefix] {
			continue
		}
		seen[res.StorageKeyPrefix] = true
		s.cache.Register(res.StorageKeyPrefix, AttrFunc(res))
	}
}
