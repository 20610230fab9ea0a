package crd

import (
	"fmt"
	"sort"
	"strings"

	"k8s.io/apiextensions-apiserver/pkg/apihelpers"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apimachineryvalidation "k8s.io/apimachinery/pkg/api/validation"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/client-go/util/jsonpath"
)

var (
	printerColumnTypes   = []string{"boolean", "date", "integer", "number", "string"}
	printerColumnFormats = []string{"byte", "date", "date-time", "double", "float", "int32", "int64", "password"}
)

// ValidateDefinition checks a CRD as upstream's apiextensions validation
// does (the generic ObjectMeta rules run in the API server core).
func ValidateDefinition(crd *apiextensionsv1.CustomResourceDefinition) field.ErrorList {
	var errs field.ErrorList
	if want := crd.Spec.Names.Plural + "." + crd.Spec.Group; crd.Name != want {
		errs = append(errs, field.Invalid(field.NewPath("metadata", "name"), crd.Name, `must be spec.names.plural+"."+spec.group`))
	}
	errs = append(errs, validateApproval(crd)...)
	errs = append(errs, validateSpec(&crd.Spec, field.NewPath("spec"))...)
	errs = append(errs, validateNames(&crd.Status.AcceptedNames, field.NewPath("status", "acceptedNames"))...)
	errs = append(errs, validateStoredVersions(crd.Status.StoredVersions, crd.Spec.Versions, field.NewPath("status", "storedVersions"))...)
	return errs
}

// ValidateDefinitionUpdate adds the rules on changes: group and plural
// never change; scope and kind are fixed once the CRD is Established.
func ValidateDefinitionUpdate(crd, old *apiextensionsv1.CustomResourceDefinition) field.ErrorList {
	var errs field.ErrorList
	spec := field.NewPath("spec")
	if apihelpers.IsCRDConditionTrue(old, apiextensionsv1.Established) {
		errs = append(errs, apimachineryvalidation.ValidateImmutableField(crd.Spec.Scope, old.Spec.Scope, spec.Child("scope"))...)
		errs = append(errs, apimachineryvalidation.ValidateImmutableField(crd.Spec.Names.Kind, old.Spec.Names.Kind, spec.Child("names", "kind"))...)
	}
	errs = append(errs, apimachineryvalidation.ValidateImmutableField(crd.Spec.Group, old.Spec.Group, spec.Child("group"))...)
	errs = append(errs, apimachineryvalidation.ValidateImmutableField(crd.Spec.Names.Plural, old.Spec.Names.Plural, spec.Child("names", "plural"))...)
	return errs
}

// ValidateDefinitionStatus checks a status update.
func ValidateDefinitionStatus(crd *apiextensionsv1.CustomResourceDefinition) field.ErrorList {
	errs := validateNames(&crd.Status.AcceptedNames, field.NewPath("status", "acceptedNames"))
	return append(errs, validateStoredVersions(crd.Status.StoredVersions, crd.Spec.Versions, field.NewPath("status", "storedVersions"))...)
}

func validateApproval(crd *apiextensionsv1.CustomResourceDefinition) field.ErrorList {
	if !apihelpers.IsProtectedCommunityGroup(crd.Spec.Group) {
		return nil
	}
	path := field.NewPath("metadata", "annotations").Key(apiextensionsv1.KubeAPIApprovedAnnotation)
	state, reason := apihelpers.GetAPIApprovalState(crd.Annotations)
	switch state {
	case apihelpers.APIApprovalMissing:
		return field.ErrorList{field.Required(path, "protected groups must have approval annotation \""+apiextensionsv1.KubeAPIApprovedAnnotation+"\", see https://github.com/kubernetes/enhancements/pull/1111")}
	case apihelpers.APIApprovalInvalid:
		return field.ErrorList{field.Invalid(path, crd.Annotations[apiextensionsv1.KubeAPIApprovedAnnotation], reason)}
	}
	return nil
}

func validateStoredVersions(stored []string, versions []apiextensionsv1.CustomResourceDefinitionVersion, path *field.Path) field.ErrorList {
	if len(stored) == 0 {
		return field.ErrorList{field.Invalid(path, stored, "must have at least one stored version")}
	}
	var errs field.ErrorList
	index := map[string]int{}
	for i, v := range stored {
		index[v] = i
	}
	for _, v := range versions {
		_, ok := index[v.Name]
		if v.Storage && !ok {
			errs = append(errs, field.Invalid(path, v.Name, "must have the storage version "+v.Name))
		}
		delete(index, v.Name)
	}
	left := make([]string, 0, len(index))
	for v := range index {
		left = append(left, v)
	}
	sort.Strings(left)
	for _, v := range left {
		errs = append(errs, field.Invalid(path.Index(index[v]), v, "must appear in spec.versions"))
	}
	return errs
}

func validateSpec(spec *apiextensionsv1.CustomResourceDefinitionSpec, path *field.Path) field.ErrorList {
	var errs field.ErrorList
	switch {
	case spec.Group == "":
		errs = append(errs, field.Required(path.Child("group"), ""))
	case len(validation.IsDNS1123Subdomain(spec.Group)) > 0:
		errs = append(errs, field.Invalid(path.Child("group"), spec.Group, strings.Join(validation.IsDNS1123Subdomain(spec.Group), ",")))
	case !strings.Contains(spec.Group, "."):
		errs = append(errs, field.Invalid(path.Child("group"), spec.Group, "should be a domain with at least one dot"))
	}
	switch spec.Scope {
	case "":
		errs = append(errs, field.Required(path.Child("scope"), ""))
	case apiextensionsv1.ClusterScoped, apiextensionsv1.NamespaceScoped:
	default:
		errs = append(errs, field.NotSupported(path.Child("scope"), spec.Scope, []string{string(apiextensionsv1.ClusterScoped), string(apiextensionsv1.NamespaceScoped)}))
	}
	storage := 0
	seen := map[string]bool{}
	unique := true
	for i := range spec.Versions {
		v := &spec.Versions[i]
		vp := path.Child("versions").Index(i)
		if v.Storage {
			storage++
		}
		if seen[v.Name] {
			unique = false
		}
		seen[v.Name] = true
		if msgs := validation.IsDNS1035Label(v.Name); len(msgs) > 0 {
			errs = append(errs, field.Invalid(vp.Child("name"), v.Name, strings.Join(msgs, ",")))
		}
		errs = append(errs, validateVersion(v, vp)...)
	}
	if !unique {
		errs = append(errs, field.Invalid(path.Child("versions"), versionNames(spec.Versions), "must contain unique version names"))
	}
	if storage != 1 {
		errs = append(errs, field.Invalid(path.Child("versions"), versionNames(spec.Versions), "must have exactly one version marked as storage version"))
	}
	names := path.Child("names")
	for _, req := range []struct{ name, val string }{
		{"plural", spec.Names.Plural}, {"singular", spec.Names.Singular}, {"kind", spec.Names.Kind}, {"listKind", spec.Names.ListKind},
	} {
		if req.val == "" {
			errs = append(errs, field.Required(names.Child(req.name), ""))
		}
	}
	errs = append(errs, validateNames(&spec.Names, names)...)
	errs = append(errs, validateConversion(spec.Conversion, path.Child("conversion"))...)
	return errs
}

func versionNames(vs []apiextensionsv1.CustomResourceDefinitionVersion) []string {
	out := make([]string, len(vs))
	for i, v := range vs {
		out[i] = v.Name
	}
	return out
}

func validateConversion(c *apiextensionsv1.CustomResourceConversion, path *field.Path) field.ErrorList {
	if c == nil {
		return nil
	}
	var errs field.ErrorList
	switch c.Strategy {
	case "":
		errs = append(errs, field.Required(path.Child("strategy"), ""))
	case apiextensionsv1.NoneConverter:
		if c.Webhook != nil {
			errs = append(errs, field.Forbidden(path.Child("webhook"), "should not be set when strategy is not set to Webhook"))
		}
	case apiextensionsv1.WebhookConverter:
		if c.Webhook == nil {
			errs = append(errs, field.Required(path.Child("webhook"), "required when strategy is set to Webhook"))
		}
	default:
		errs = append(errs, field.NotSupported(path.Child("strategy"), c.Strategy, []string{string(apiextensionsv1.NoneConverter), string(apiextensionsv1.WebhookConverter)}))
	}
	return errs
}

func validateNames(n *apiextensionsv1.CustomResourceDefinitionNames, path *field.Path) field.ErrorList {
	var errs field.ErrorList
	label := func(p *field.Path, v string, mixedCase bool) {
		if v == "" {
			return
		}
		check := v
		if mixedCase {
			check = strings.ToLower(v)
		}
		if msgs := validation.IsDNS1035Label(check); len(msgs) > 0 {
			msg := strings.Join(msgs, ",")
			if mixedCase {
				msg = "may have mixed case, but should otherwise match: " + msg
			}
			errs = append(errs, field.Invalid(p, v, msg))
		}
	}
	label(path.Child("plural"), n.Plural, false)
	label(path.Child("singular"), n.Singular, false)
	label(path.Child("kind"), n.Kind, true)
	label(path.Child("listKind"), n.ListKind, true)
	for i, s := range n.ShortNames {
		if msgs := validation.IsDNS1035Label(s); len(msgs) > 0 {
			errs = append(errs, field.Invalid(path.Child("shortNames").Index(i), s, strings.Join(msgs, ",")))
		}
	}
	if n.Kind != "" && n.Kind == n.ListKind {
		errs = append(errs, field.Invalid(path.Child("listKind"), n.ListKind, "kind and listKind may not be the same"))
	}
	for i, c := range n.Categories {
		if msgs := validation.IsDNS1035Label(c); len(msgs) > 0 {
			errs = append(errs, field.Invalid(path.Child("categories").Index(i), c, strings.Join(msgs, ",")))
		}
	}
	return errs
}

func validateVersion(v *apiextensionsv1.CustomResourceDefinitionVersion, path *field.Path) field.ErrorList {
	var errs field.ErrorList
	sp := path.Child("schema", "openAPIV3Schema")
	if v.Schema == nil || v.Schema.OpenAPIV3Schema == nil {
		errs = append(errs, field.Required(sp, "schemas are required"))
	} else {
		errs = append(errs, validateStructural(v.Schema.OpenAPIV3Schema, sp)...)
	}
	if sub := v.Subresources; sub != nil && sub.Scale != nil {
		scp := path.Child("subresources", "scale")
		errs = append(errs, validateScalePath(sub.Scale.SpecReplicasPath, ".spec.", true, scp.Child("specReplicasPath"))...)
		errs = append(errs, validateScalePath(sub.Scale.StatusReplicasPath, ".status.", true, scp.Child("statusReplicasPath"))...)
		if sub.Scale.LabelSelectorPath != nil && *sub.Scale.LabelSelectorPath != "" {
			errs = append(errs, validateScalePath(*sub.Scale.LabelSelectorPath, ".status.", false, scp.Child("labelSelectorPath"))...)
		}
	}
	for i := range v.AdditionalPrinterColumns {
		errs = append(errs, validateColumn(&v.AdditionalPrinterColumns[i], path.Child("additionalPrinterColumns").Index(i))...)
	}
	return errs
}

func validateScalePath(p, under string, required bool, path *field.Path) field.ErrorList {
	if p == "" {
		if required {
			return field.ErrorList{field.Required(path, "")}
		}
		return nil
	}
	if errs := validateSimpleJSONPath(p, path); len(errs) > 0 {
		return errs
	}
	if !strings.HasPrefix(p, under) {
		return field.ErrorList{field.Invalid(path, p, "should be a json path under "+strings.TrimSuffix(under, "."))}
	}
	return nil
}

func validateSimpleJSONPath(s string, path *field.Path) field.ErrorList {
	switch {
	case s == "":
		return field.ErrorList{field.Invalid(path, s, "must not be empty")}
	case s[0] != '.':
		return field.ErrorList{field.Invalid(path, s, "must be a simple json path starting with .")}
	}
	return nil
}

func validateColumn(c *apiextensionsv1.CustomResourceColumnDefinition, path *field.Path) field.ErrorList {
	var errs field.ErrorList
	if c.Name == "" {
		errs = append(errs, field.Required(path.Child("name"), ""))
	}
	switch {
	case c.Type == "":
		errs = append(errs, field.Required(path.Child("type"), "must be one of "+strings.Join(printerColumnTypes, ",")))
	case !contains(printerColumnTypes, c.Type):
		errs = append(errs, field.Invalid(path.Child("type"), c.Type, "must be one of "+strings.Join(printerColumnTypes, ",")))
	}
	if c.Format != "" && !contains(printerColumnFormats, c.Format) {
		errs = append(errs, field.Invalid(path.Child("format"), c.Format, "must be one of "+strings.Join(printerColumnFormats, ",")))
	}
	if c.JSONPath == "" {
		errs = append(errs, field.Required(path.Child("jsonPath"), ""))
	} else if e := validateSimpleJSONPath(c.JSONPath, path.Child("jsonPath")); len(e) > 0 {
		errs = append(errs, e...)
	} else if err := jsonpath.New(c.Name).Parse("{" + c.JSONPath + "}"); err != nil {
		errs = append(errs, field.Invalid(path.Child("jsonPath"), c.JSONPath, fmt.Sprintf("must be a valid JSONPath: %v", err)))
	}
	return errs
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// validateStructural applies the essential rules of structural schemas
// and the OpenAPI subset Kubernetes accepts.
func validateStructural(s *apiextensionsv1.JSONSchemaProps, path *field.Path) field.ErrorList {
	var errs field.ErrorList
	switch {
	case s.Type == "":
		errs = append(errs, field.Required(path.Child("type"), "must not be empty at the root"))
	case s.Type != "object":
		errs = append(errs, field.Invalid(path.Child("type"), s.Type, "must be object at the root"))
	}
	if md, ok := s.Properties["metadata"]; ok {
		for k := range md.Properties {
			if k != "name" && k != "generateName" {
				errs = append(errs, field.Forbidden(path.Child("properties").Key("metadata"), "must not specify anything other than name and generateName, but metadata is implicitly specified"))
				break
			}
		}
		if md.Type != "" && md.Type != "object" {
			errs = append(errs, field.Invalid(path.Child("properties").Key("metadata").Child("type"), md.Type, "must be object"))
		}
	}
	errs = append(errs, validateNode(s, path, "", true)...)
	return errs
}

// validateNode checks one schema node. where says what the node is for the
// "type must not be empty" message ("" at the root).
func validateNode(s *apiextensionsv1.JSONSchemaProps, path *field.Path, where string, root bool) field.ErrorList {
	var errs field.ErrorList
	preserve := s.XPreserveUnknownFields != nil && *s.XPreserveUnknownFields
	if s.XPreserveUnknownFields != nil && !*s.XPreserveUnknownFields {
		errs = append(errs, field.Invalid(path.Child("x-kubernetes-preserve-unknown-fields"), false, "must be true or undefined"))
	}
	if s.XIntOrString {
		if s.Type != "" {
			errs = append(errs, field.Invalid(path.Child("type"), s.Type, "must be empty if x-kubernetes-int-or-string is true"))
		}
	} else if !root && s.Type == "" && !preserve {
		errs = append(errs, field.Required(path.Child("type"), "must not be empty for specified "+where))
	}
	if s.XEmbeddedResource {
		if s.Type != "object" {
			errs = append(errs, field.Invalid(path.Child("type"), s.Type, "must be object if x-kubernetes-embedded-resource is true"))
		}
		if len(s.Properties) == 0 && !preserve {
			errs = append(errs, field.Required(path.Child("properties"), "must not be empty if x-kubernetes-embedded-resource is true without x-kubernetes-preserve-unknown-fields"))
		}
	}
	if s.Type == "null" {
		errs = append(errs, field.Forbidden(path.Child("type"), "type cannot be set to null, use nullable as an alternative"))
	}
	if s.UniqueItems {
		errs = append(errs, field.Forbidden(path.Child("uniqueItems"), "uniqueItems cannot be set to true since the runtime complexity becomes quadratic"))
	}
	if s.ID != "" {
		errs = append(errs, field.Forbidden(path.Child("id"), "id is not supported"))
	}
	if s.Ref != nil {
		errs = append(errs, field.Forbidden(path.Child("$ref"), "$ref is not supported"))
	}
	if s.AdditionalItems != nil {
		errs = append(errs, field.Forbidden(path.Child("additionalItems"), "additionalItems is not supported"))
	}
	if len(s.PatternProperties) > 0 {
		errs = append(errs, field.Forbidden(path.Child("patternProperties"), "patternProperties is not supported"))
	}
	if len(s.Definitions) > 0 {
		errs = append(errs, field.Forbidden(path.Child("definitions"), "definitions is not supported"))
	}
	if s.Dependencies != nil {
		errs = append(errs, field.Forbidden(path.Child("dependencies"), "dependencies is not supported"))
	}
	if s.Items != nil && len(s.Items.JSONSchemas) > 0 {
		errs = append(errs, field.Forbidden(path.Child("items"), "items must be a schema object and not an array"))
	}
	if s.Type == "array" && (s.Items == nil || s.Items.Schema == nil) {
		errs = append(errs, field.Required(path.Child("items"), "must be specified"))
	}
	if s.Pattern != "" && compiledPattern(s.Pattern) == nil {
		errs = append(errs, field.Invalid(path.Child("pattern"), s.Pattern, "must be a valid regular expression"))
	}
	if s.AdditionalProperties != nil {
		if len(s.Properties) > 0 && (!s.AdditionalProperties.Allows || s.AdditionalProperties.Schema != nil) {
			errs = append(errs, field.Forbidden(path.Child("additionalProperties"), "additionalProperties and properties are mutual exclusive"))
		}
		if s.AdditionalProperties.Schema != nil {
			errs = append(errs, validateNode(s.AdditionalProperties.Schema, path.Child("additionalProperties"), "additionalProperties", false)...)
		}
	}
	if s.Default != nil {
		if root {
			errs = append(errs, field.Forbidden(path.Child("default"), "must not be set at the root"))
		} else if d, ok := decodeDefault(s); ok {
			for _, e := range validateValue(s, d, field.NewPath("default")) {
				errs = append(errs, field.Invalid(path.Child("default"), d, e.ErrorBody()))
			}
		}
	}
	keys := make([]string, 0, len(s.Properties))
	for k := range s.Properties {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if root && k == "metadata" {
			continue
		}
		p := s.Properties[k]
		errs = append(errs, validateNode(&p, path.Child("properties").Key(k), "object fields", false)...)
	}
	if s.Items != nil && s.Items.Schema != nil {
		errs = append(errs, validateNode(s.Items.Schema, path.Child("items"), "array items", false)...)
	}
	for i := range s.AllOf {
		errs = append(errs, validateJunctor(&s.AllOf[i], path.Child("allOf").Index(i))...)
	}
	for i := range s.AnyOf {
		errs = append(errs, validateJunctor(&s.AnyOf[i], path.Child("anyOf").Index(i))...)
	}
	for i := range s.OneOf {
		errs = append(errs, validateJunctor(&s.OneOf[i], path.Child("oneOf").Index(i))...)
	}
	if s.Not != nil {
		errs = append(errs, validateJunctor(s.Not, path.Child("not"))...)
	}
	return errs
}

// validateJunctor checks a node under allOf/anyOf/oneOf/not: structural
// schemas forbid types, defaults and other metadata there.
func validateJunctor(s *apiextensionsv1.JSONSchemaProps, path *field.Path) field.ErrorList {
	var errs field.ErrorList
	if s.Type != "" {
		errs = append(errs, field.Forbidden(path.Child("type"), "must be empty to be structural"))
	}
	if s.Default != nil {
		errs = append(errs, field.Forbidden(path.Child("default"), "must be undefined to be structural"))
	}
	if s.Description != "" {
		errs = append(errs, field.Forbidden(path.Child("description"), "must be empty to be structural"))
	}
	if s.Nullable {
		errs = append(errs, field.Forbidden(path.Child("nullable"), "must be false to be structural"))
	}
	return errs
}
