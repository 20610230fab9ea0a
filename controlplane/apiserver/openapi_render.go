package apiserver

import (
	"encoding/json"
	"sync"
)

// oaVersion selects the OpenAPI dialect a schema is rendered in.
type oaVersion int

const (
	oaV2 oaVersion = 2
	oaV3 oaVersion = 3
)

func (v oaVersion) ref(name string) string {
	if v == oaV2 {
		return "#/definitions/" + name
	}
	return "#/components/schemas/" + name
}

// renderSchema converts s into the JSON shape of version v. References
// that carry a description or extensions are written as upstream does:
// siblings of $ref in swagger 2.0, an allOf wrapper in OpenAPI 3.
func renderSchema(s *oaSchema, v oaVersion) map[string]any {
	m := map[string]any{}
	if s.Ref != "" {
		if s.Description == "" && len(s.Ext) == 0 {
			m["$ref"] = v.ref(s.Ref)
			return m
		}
		if v == oaV2 {
			m["$ref"] = v.ref(s.Ref)
		} else {
			m["allOf"] = []any{map[string]any{"$ref": v.ref(s.Ref)}}
		}
	}
	if s.Description != "" {
		m["description"] = s.Description
	}
	if len(s.OneOf) > 0 && v == oaV3 {
		alts := make([]any, len(s.OneOf))
		for i, t := range s.OneOf {
			alts[i] = map[string]any{"type": t}
		}
		m["oneOf"] = alts
	} else if s.Type != "" {
		m["type"] = s.Type
	}
	if s.Format != "" {
		m["format"] = s.Format
	}
	if s.IntOrString && v == oaV3 {
		m["x-kubernetes-int-or-string"] = true
	}
	if s.Items != nil {
		m["items"] = renderSchema(s.Items, v)
	}
	if s.Additional != nil {
		m["additionalProperties"] = renderSchema(s.Additional, v)
	}
	if len(s.Properties) > 0 {
		props := make(map[string]any, len(s.Properties))
		for k, p := range s.Properties {
			props[k] = renderSchema(p, v)
		}
		m["properties"] = props
	}
	if len(s.Required) > 0 {
		m["required"] = s.Required
	}
	for k, e := range s.Ext {
		m[k] = e
	}
	return m
}

// renderedDefs caches the JSON of built-in definitions per version; their
// Go types never change, so neither does their JSON.
var renderedDefs sync.Map // key renderKey → json.RawMessage

type renderKey struct {
	v    oaVersion
	name string
}

func renderDefinition(name string, s *oaSchema, v oaVersion, gvks []map[string]string) (json.RawMessage, error) {
	if len(gvks) == 0 {
		if b, ok := renderedDefs.Load(renderKey{v, name}); ok {
			return b.(json.RawMessage), nil
		}
	}
	m := renderSchema(s, v)
	if len(gvks) > 0 {
		m["x-kubernetes-group-version-kind"] = gvks
	}
	b, err := json.Marshal(m)
	if err != nil {
		return nil, err
	}
	if len(gvks) == 0 {
		renderedDefs.Store(renderKey{v, name}, json.RawMessage(b))
	}
	return b, nil
}
