package crd

import (
	"encoding/json"
	"fmt"
	"math"
	"reflect"
	"regexp"
	"strings"
	"sync"
	"time"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// Schema is one version's openAPIV3Schema, prepared for validating,
// defaulting and pruning custom resources.
type Schema struct {
	root *apiextensionsv1.JSONSchemaProps
}

// NewSchema prepares s (nil means "no schema": nothing is validated or
// pruned).
func NewSchema(s *apiextensionsv1.JSONSchemaProps) *Schema {
	return &Schema{root: s}
}

// decodeDefault returns s.default decoded as custom resources hold values.
func decodeDefault(s *apiextensionsv1.JSONSchemaProps) (interface{}, bool) {
	if s == nil || s.Default == nil || len(s.Default.Raw) == 0 {
		return nil, false
	}
	var v interface{}
	if err := json.Unmarshal(s.Default.Raw, &v); err != nil {
		return nil, false
	}
	return normalizeNumbers(v), true
}

// prop returns a copy of s.properties[name].
func prop(s *apiextensionsv1.JSONSchemaProps, name string) (*apiextensionsv1.JSONSchemaProps, bool) {
	p, ok := s.Properties[name]
	if !ok {
		return nil, false
	}
	return &p, true
}

// normalizeNumbers turns float64 values that hold integers into int64, as
// custom resources decode them.
func normalizeNumbers(v interface{}) interface{} {
	switch x := v.(type) {
	case float64:
		if x == math.Trunc(x) && math.Abs(x) < 1<<53 {
			return int64(x)
		}
		return x
	case map[string]interface{}:
		for k, e := range x {
			x[k] = normalizeNumbers(e)
		}
		return x
	case []interface{}:
		for i, e := range x {
			x[i] = normalizeNumbers(e)
		}
		return x
	}
	return v
}

// Validate checks a custom resource (its content without metadata) against
// the schema, with upstream's error types and messages.
func (sc *Schema) Validate(obj map[string]interface{}) field.ErrorList {
	if sc.root == nil {
		return nil
	}
	var errs field.ErrorList
	root := sc.root
	// metadata, apiVersion and kind are validated by the generic code.
	for name := range root.Properties {
		if name == "metadata" || name == "apiVersion" || name == "kind" {
			continue
		}
		p, _ := prop(root, name)
		v, ok := obj[name]
		if !ok {
			continue
		}
		errs = append(errs, validateValue(p, v, field.NewPath(name))...)
	}
	for _, r := range root.Required {
		if r == "metadata" || r == "apiVersion" || r == "kind" {
			continue
		}
		if _, ok := obj[r]; !ok {
			errs = append(errs, field.Required(field.NewPath(r), ""))
		}
	}
	if root.AdditionalProperties != nil && root.AdditionalProperties.Schema != nil {
		for k, v := range obj {
			if k == "metadata" || k == "apiVersion" || k == "kind" {
				continue
			}
			if _, ok := root.Properties[k]; ok {
				continue
			}
			errs = append(errs, validateValue(root.AdditionalProperties.Schema, v, field.NewPath(k))...)
		}
	}
	return errs
}

// jsonType names the JSON type of a decoded value.
func jsonType(v interface{}) string {
	switch x := v.(type) {
	case nil:
		return "null"
	case string:
		return "string"
	case bool:
		return "boolean"
	case int64, int32, int:
		return "integer"
	case float64:
		if x == math.Trunc(x) {
			return "integer"
		}
		return "number"
	case map[string]interface{}:
		return "object"
	case []interface{}:
		return "array"
	}
	return fmt.Sprintf("%T", v)
}

func toFloat(v interface{}) (float64, bool) {
	switch x := v.(type) {
	case int64:
		return float64(x), true
	case int32:
		return float64(x), true
	case int:
		return float64(x), true
	case float64:
		return x, true
	}
	return 0, false
}

func typeMatches(want string, v interface{}) bool {
	got := jsonType(v)
	switch want {
	case "number":
		return got == "number" || got == "integer"
	default:
		return got == want
	}
}

func typeError(path *field.Path, want string, v interface{}) *field.Error {
	got := jsonType(v)
	return field.TypeInvalid(path, got, fmt.Sprintf("%s in body must be of type %s: %q", path.String(), want, got))
}

var patternCache sync.Map // string → *regexp.Regexp (nil when invalid)

func compiledPattern(p string) *regexp.Regexp {
	if re, ok := patternCache.Load(p); ok {
		return re.(*regexp.Regexp)
	}
	re, err := regexp.Compile(p)
	if err != nil {
		re = nil
	}
	patternCache.Store(p, re)
	return re
}

// validateValue validates v against s at path.
func validateValue(s *apiextensionsv1.JSONSchemaProps, v interface{}, path *field.Path) field.ErrorList {
	if v == nil {
		if s.Nullable || (s.XPreserveUnknownFields != nil && *s.XPreserveUnknownFields && s.Type == "") {
			return nil
		}
		if s.XIntOrString {
			return field.ErrorList{typeError(path, "integer-or-string", v)}
		}
		if s.Type == "" {
			return nil
		}
		return field.ErrorList{typeError(path, s.Type, v)}
	}
	var errs field.ErrorList
	if s.XIntOrString {
		t := jsonType(v)
		if t != "integer" && t != "string" {
			return field.ErrorList{typeError(path, "integer-or-string", v)}
		}
	} else if s.Type != "" && !typeMatches(s.Type, v) {
		return field.ErrorList{typeError(path, s.Type, v)}
	}
	if len(s.Enum) > 0 {
		found := false
		var allowed []string
		for _, e := range s.Enum {
			var ev interface{}
			if err := json.Unmarshal(e.Raw, &ev); err != nil {
				continue
			}
			ev = normalizeNumbers(ev)
			if s, ok := ev.(string); ok {
				allowed = append(allowed, s)
			} else {
				allowed = append(allowed, string(e.Raw))
			}
			if reflect.DeepEqual(ev, normalizeNumbers(runtime.DeepCopyJSONValue(v))) {
				found = true
			}
		}
		if !found {
			errs = append(errs, field.NotSupported(path, v, allowed))
		}
	}
	switch x := v.(type) {
	case string:
		if s.MaxLength != nil && int64(len([]rune(x))) > *s.MaxLength {
			errs = append(errs, field.TooLong(path, x, int(*s.MaxLength)))
		}
		if s.MinLength != nil && int64(len([]rune(x))) < *s.MinLength {
			errs = append(errs, field.Invalid(path, x, fmt.Sprintf("%s in body should be at least %d chars long", path.String(), *s.MinLength)))
		}
		if s.Pattern != "" {
			if re := compiledPattern(s.Pattern); re != nil && !re.MatchString(x) {
				errs = append(errs, field.Invalid(path, x, fmt.Sprintf("%s in body should match '%s'", path.String(), s.Pattern)))
			}
		}
		if s.Format != "" && !s.XIntOrString {
			if err := checkFormat(s.Format, x); err != "" {
				errs = append(errs, field.Invalid(path, x, fmt.Sprintf("%s in body must be of type %s: %q", path.String(), s.Format, x)))
			}
		}
	case map[string]interface{}:
		errs = append(errs, validateObject(s, x, path)...)
	case []interface{}:
		if s.MaxItems != nil && int64(len(x)) > *s.MaxItems {
			errs = append(errs, field.TooMany(path, len(x), int(*s.MaxItems)))
		}
		if s.MinItems != nil && int64(len(x)) < *s.MinItems {
			errs = append(errs, field.Invalid(path, x, fmt.Sprintf("%s in body should have at least %d items", path.String(), *s.MinItems)))
		}
		if s.UniqueItems {
			for i := range x {
				for j := 0; j < i; j++ {
					if reflect.DeepEqual(x[i], x[j]) {
						errs = append(errs, field.Duplicate(path.Index(i), x[i]))
						break
					}
				}
			}
		}
		if s.Items != nil && s.Items.Schema != nil {
			for i, e := range x {
				errs = append(errs, validateValue(s.Items.Schema, e, path.Index(i))...)
			}
		}
	default:
		if f, ok := toFloat(v); ok {
			errs = append(errs, validateNumber(s, f, v, path)...)
		}
	}
	for i := range s.AllOf {
		errs = append(errs, validateValue(&s.AllOf[i], v, path)...)
	}
	return errs
}

func validateNumber(s *apiextensionsv1.JSONSchemaProps, f float64, v interface{}, path *field.Path) field.ErrorList {
	var errs field.ErrorList
	if s.Minimum != nil {
		if s.ExclusiveMinimum && f <= *s.Minimum {
			errs = append(errs, field.Invalid(path, v, fmt.Sprintf("%s in body should be greater than %v", path.String(), *s.Minimum)))
		} else if f < *s.Minimum {
			errs = append(errs, field.Invalid(path, v, fmt.Sprintf("%s in body should be greater than or equal to %v", path.String(), *s.Minimum)))
		}
	}
	if s.Maximum != nil {
		if s.ExclusiveMaximum && f >= *s.Maximum {
			errs = append(errs, field.Invalid(path, v, fmt.Sprintf("%s in body should be less than %v", path.String(), *s.Maximum)))
		} else if f > *s.Maximum {
			errs = append(errs, field.Invalid(path, v, fmt.Sprintf("%s in body should be less than or equal to %v", path.String(), *s.Maximum)))
		}
	}
	if s.MultipleOf != nil && *s.MultipleOf != 0 {
		q := f / *s.MultipleOf
		if q != math.Trunc(q) {
			errs = append(errs, field.Invalid(path, v, fmt.Sprintf("%s in body should be a multiple of %v", path.String(), *s.MultipleOf)))
		}
	}
	switch s.Format {
	case "int32":
		if f < math.MinInt32 || f > math.MaxInt32 || f != math.Trunc(f) {
			errs = append(errs, field.Invalid(path, v, fmt.Sprintf("%s in body must be of type int32: %q", path.String(), fmt.Sprint(v))))
		}
	case "int64":
		if f != math.Trunc(f) {
			errs = append(errs, field.Invalid(path, v, fmt.Sprintf("%s in body must be of type int64: %q", path.String(), fmt.Sprint(v))))
		}
	}
	return errs
}

func validateObject(s *apiextensionsv1.JSONSchemaProps, x map[string]interface{}, path *field.Path) field.ErrorList {
	var errs field.ErrorList
	for _, r := range s.Required {
		if _, ok := x[r]; !ok {
			errs = append(errs, field.Required(path.Child(r), ""))
		}
	}
	if s.MaxProperties != nil && int64(len(x)) > *s.MaxProperties {
		errs = append(errs, field.TooMany(path, len(x), int(*s.MaxProperties)))
	}
	if s.MinProperties != nil && int64(len(x)) < *s.MinProperties {
		errs = append(errs, field.Invalid(path, len(x), fmt.Sprintf("%s in body should have at least %d properties", path.String(), *s.MinProperties)))
	}
	if s.XEmbeddedResource {
		if _, ok := x["apiVersion"]; !ok {
			errs = append(errs, field.Required(path.Child("apiVersion"), "must not be empty"))
		}
		if _, ok := x["kind"]; !ok {
			errs = append(errs, field.Required(path.Child("kind"), "must not be empty"))
		}
	}
	for k, v := range x {
		if p, ok := prop(s, k); ok {
			errs = append(errs, validateValue(p, v, path.Child(k))...)
			continue
		}
		if s.AdditionalProperties != nil && s.AdditionalProperties.Schema != nil {
			errs = append(errs, validateValue(s.AdditionalProperties.Schema, v, path.Key(k))...)
		}
	}
	return errs
}

// checkFormat validates the string formats Kubernetes checks; unknown
// formats pass. It returns a non-empty reason on failure.
func checkFormat(format, v string) string {
	switch format {
	case "date-time":
		if _, err := time.Parse(time.RFC3339Nano, v); err != nil {
			return "invalid date-time"
		}
	case "date":
		if _, err := time.Parse("2006-01-02", v); err != nil {
			return "invalid date"
		}
	case "byte":
		if !isBase64(v) {
			return "invalid base64"
		}
	}
	return ""
}

func isBase64(s string) bool {
	s = strings.TrimRight(s, "=")
	for _, c := range s {
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '+' || c == '/') {
			return false
		}
	}
	return true
}

// Default fills schema defaults into obj, as upstream does on every decode:
// a missing property (or a null one that is not nullable) takes its default.
func (sc *Schema) Default(obj map[string]interface{}) {
	if sc.root == nil {
		return
	}
	sc.defaultObject(sc.root, obj, true)
}

func (sc *Schema) defaultValue(s *apiextensionsv1.JSONSchemaProps, v interface{}) {
	switch x := v.(type) {
	case map[string]interface{}:
		sc.defaultObject(s, x, false)
	case []interface{}:
		if s.Items != nil && s.Items.Schema != nil {
			for i, e := range x {
				if e == nil && !s.Items.Schema.Nullable {
					if d, ok := decodeDefault(s.Items.Schema); ok {
						x[i] = runtime.DeepCopyJSONValue(d)
						continue
					}
				}
				sc.defaultValue(s.Items.Schema, e)
			}
		}
	}
}

func (sc *Schema) defaultObject(s *apiextensionsv1.JSONSchemaProps, x map[string]interface{}, root bool) {
	for name := range s.Properties {
		if root && name == "metadata" {
			continue
		}
		p, _ := prop(s, name)
		d, hasDefault := decodeDefault(p)
		cur, present := x[name]
		if hasDefault && (!present || (cur == nil && !p.Nullable)) {
			x[name] = runtime.DeepCopyJSONValue(d)
			cur = x[name]
		}
		if cur != nil {
			sc.defaultValue(p, cur)
		}
	}
	if s.AdditionalProperties != nil && s.AdditionalProperties.Schema != nil {
		for k, v := range x {
			if _, ok := s.Properties[k]; ok {
				continue
			}
			sc.defaultValue(s.AdditionalProperties.Schema, v)
		}
	}
}

// Prune drops fields the schema does not specify (unless
// x-kubernetes-preserve-unknown-fields) and returns their paths.
func (sc *Schema) Prune(obj map[string]interface{}) []string {
	if sc.root == nil {
		return nil
	}
	var pruned []string
	pruneObject(sc.root, obj, nil, true, &pruned)
	return pruned
}

func preserves(s *apiextensionsv1.JSONSchemaProps) bool {
	return s.XPreserveUnknownFields != nil && *s.XPreserveUnknownFields
}

func pruneValue(s *apiextensionsv1.JSONSchemaProps, v interface{}, path []string, pruned *[]string) {
	switch x := v.(type) {
	case map[string]interface{}:
		pruneObject(s, x, path, false, pruned)
	case []interface{}:
		if s.Items != nil && s.Items.Schema != nil {
			for i, e := range x {
				pruneValue(s.Items.Schema, e, append(path, fmt.Sprintf("[%d]", i)), pruned)
			}
		}
	}
}

func pruneObject(s *apiextensionsv1.JSONSchemaProps, x map[string]interface{}, path []string, root bool, pruned *[]string) {
	keep := preserves(s) || s.XIntOrString
	embedded := s.XEmbeddedResource
	for k, v := range x {
		if (root || embedded) && (k == "apiVersion" || k == "kind" || k == "metadata") {
			if p, ok := prop(s, k); ok && k != "metadata" {
				pruneValue(p, v, append(path, k), pruned)
			}
			continue
		}
		if p, ok := prop(s, k); ok {
			pruneValue(p, v, append(path, k), pruned)
			continue
		}
		if s.AdditionalProperties != nil {
			if s.AdditionalProperties.Schema != nil {
				pruneValue(s.AdditionalProperties.Schema, v, append(path, k), pruned)
			}
			continue
		}
		if keep {
			continue
		}
		delete(x, k)
		*pruned = append(*pruned, joinPath(append(path, k)))
	}
}

func joinPath(p []string) string {
	var b strings.Builder
	for i, s := range p {
		if i > 0 && !strings.HasPrefix(s, "[") {
			b.WriteByte('.')
		}
		b.WriteString(s)
	}
	return b.String()
}
