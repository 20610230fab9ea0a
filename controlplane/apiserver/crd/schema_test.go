package crd

import (
	"encoding/json"
	"reflect"
	"testing"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

func mustSchema(t *testing.T, doc string) *apiextensionsv1.JSONSchemaProps {
	t.Helper()
	var s apiextensionsv1.JSONSchemaProps
	if err := json.Unmarshal([]byte(doc), &s); err != nil {
		t.Fatal(err)
	}
	return &s
}

func mustObj(t *testing.T, doc string) map[string]interface{} {
	t.Helper()
	var m map[string]interface{}
	if err := json.Unmarshal([]byte(doc), &m); err != nil {
		t.Fatal(err)
	}
	return normalizeNumbers(m).(map[string]interface{})
}

const nested = `{"type":"object","properties":{
  "spec":{"type":"object","properties":{
    "items":{"type":"array","items":{"type":"object","properties":{
      "name":{"type":"string"},"weight":{"type":"integer","default":5}}}},
    "labels":{"type":"object","additionalProperties":{"type":"string"}},
    "free":{"type":"object","x-kubernetes-preserve-unknown-fields":true},
    "tmpl":{"type":"object","x-kubernetes-embedded-resource":true,"properties":{"spec":{"type":"object","properties":{"a":{"type":"string"}}}}},
    "mode":{"type":"string","default":"fast"}}}}}`

func TestDefaultAndPrune(t *testing.T) {
	sc := NewSchema(mustSchema(t, nested))
	obj := mustObj(t, `{"apiVersion":"x/v1","kind":"K","metadata":{"name":"a"},"top":1,
	  "spec":{"items":[{"name":"a","junk":1},{"name":"b","weight":2}],
	          "labels":{"k":"v"},"free":{"any":{"thing":1}},
	          "tmpl":{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p"},"spec":{"a":"x","b":"y"},"status":{}},
	          "mode":null,"drop":true}}`)
	sc.Default(obj)
	pruned := sc.Prune(obj)
	want := mustObj(t, `{"apiVersion":"x/v1","kind":"K","metadata":{"name":"a"},
	  "spec":{"items":[{"name":"a","weight":5},{"name":"b","weight":2}],
	          "labels":{"k":"v"},"free":{"any":{"thing":1}},
	          "tmpl":{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p"},"spec":{"a":"x"}},
	          "mode":"fast"}}`)
	if !reflect.DeepEqual(obj, want) {
		got, _ := json.Marshal(obj)
		t.Errorf("defaulted and pruned:\n%s", got)
	}
	wantPruned := map[string]bool{"top": true, "spec.items[0].junk": true, "spec.tmpl.spec.b": true, "spec.tmpl.status": true, "spec.drop": true}
	if len(pruned) != len(wantPruned) {
		t.Errorf("pruned = %v", pruned)
	}
	for _, p := range pruned {
		if !wantPruned[p] {
			t.Errorf("unexpected pruned path %q", p)
		}
	}
}

func TestValidateNested(t *testing.T) {
	sc := NewSchema(mustSchema(t, nested))
	errs := sc.Validate(mustObj(t, `{"spec":{"items":[{"name":1}],"labels":{"k":2},"tmpl":{"spec":{}}}}`))
	got := map[string]bool{}
	for _, e := range errs {
		got[e.Field] = true
	}
	for _, f := range []string{"spec.items[0].name", "spec.labels[k]", "spec.tmpl.apiVersion", "spec.tmpl.kind"} {
		if !got[f] {
			t.Errorf("no error on %s: %v", f, errs)
		}
	}
	if len(errs) != 4 {
		t.Errorf("errors = %v", errs)
	}
}

func TestStructuralRules(t *testing.T) {
	cases := map[string]string{
		`{"type":"object","properties":{"a":{}}}`:                                                                 "x.properties[a].type",
		`{"type":"object","properties":{"a":{"type":"array"}}}`:                                                   "x.properties[a].items",
		`{"type":"object","properties":{"a":{"type":"string","x-kubernetes-int-or-string":true}}}`:                "x.properties[a].type",
		`{"type":"object","properties":{"a":{"type":"object","x-kubernetes-preserve-unknown-fields":false}}}`:     "x.properties[a].x-kubernetes-preserve-unknown-fields",
		`{"type":"object","properties":{"metadata":{"type":"object","properties":{"labels":{"type":"object"}}}}}`: "x.properties[metadata]",
		`{"type":"object","properties":{"a":{"type":"integer","default":"x"}}}`:                                   "x.properties[a].default",
		`{"type":"string"}`: "x.type",
		`{"type":"object","properties":{"a":{"type":"array","uniqueItems":true,"items":{"type":"string"}}}}`: "x.properties[a].uniqueItems",
	}
	for doc, field := range cases {
		errs := validateStructural(mustSchema(t, doc), fieldPath("x"))
		found := false
		for _, e := range errs {
			if e.Field == field {
				found = true
			}
		}
		if !found {
			t.Errorf("%s: errors %v, want one on %s", doc, errs, field)
		}
	}
	ok := `{"type":"object","properties":{"a":{"x-kubernetes-int-or-string":true},"b":{"type":"object","x-kubernetes-preserve-unknown-fields":true},"c":{"type":"integer","default":3}}}`
	if errs := validateStructural(mustSchema(t, ok), fieldPath("x")); len(errs) > 0 {
		t.Errorf("valid schema rejected: %v", errs)
	}
}

func fieldPath(root string) *field.Path { return field.NewPath(root) }
