package kinds

import (
	"context"
	"fmt"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
	apiregv1 "k8s.io/kube-aggregator/pkg/apis/apiregistration/v1"
)

// APIService (apiregistration.k8s.io/v1): the registration of a group and
// version served by an extension API server behind a Service, or locally
// (spec.service unset). Defaulting, validation and columns as upstream's
// kube-aggregator.

// apiServiceDef is the registry entry; Builtins appends it.
var apiServiceDef = def{"apiregistration.k8s.io", "v1", "APIService", "apiservices", false, nil, []string{"api-extensions"}, []string{"status"},
	nil, true, false, func() runtime.Object { return &apiregv1.APIService{} }, ""}

func init() {
	k := gk("apiregistration.k8s.io", "APIService")
	defaulters[k] = func(obj runtime.Object) {
		if s := obj.(*apiregv1.APIService).Spec.Service; s != nil && s.Port == nil {
			port := int32(443)
			s.Port = &port
		}
	}
	validators[k] = func(_ context.Context, obj runtime.Object) field.ErrorList {
		return validateAPIService(obj.(*apiregv1.APIService))
	}
	statusValidators[k] = func(_ context.Context, obj, _ runtime.Object) field.ErrorList {
		var errs field.ErrorList
		for i, c := range obj.(*apiregv1.APIService).Status.Conditions {
			p := field.NewPath("status", "conditions").Index(i)
			if c.Type == "" {
				errs = append(errs, field.Required(p.Child("type"), ""))
			}
			switch c.Status {
			case apiregv1.ConditionTrue, apiregv1.ConditionFalse, apiregv1.ConditionUnknown:
			default:
				errs = append(errs, field.NotSupported(p.Child("status"), c.Status, []string{"True", "False", "Unknown"}))
			}
		}
		return errs
	}
	tblRegister("apiregistration.k8s.io", "APIService", []metav1.TableColumnDefinition{
		tblName(),
		tblCol("Service", "string", "The reference to the service that hosts this API endpoint."),
		tblCol("Available", "string", "Whether this service is available."),
		tblAge(),
	}, func(o *apiregv1.APIService) []interface{} {
		svc := "Local"
		if o.Spec.Service != nil {
			svc = o.Spec.Service.Namespace + "/" + o.Spec.Service.Name
		}
		avail := "Unknown"
		for _, c := range o.Status.Conditions {
			if c.Type == apiregv1.Available {
				avail = string(c.Status)
				if c.Status != apiregv1.ConditionTrue && c.Reason != "" {
					avail += " (" + c.Reason + ")"
				}
			}
		}
		return []interface{}{o.Name, svc, avail, tblSince(o.CreationTimestamp)}
	})
}

// validateAPIService is upstream's ValidateAPIService: the name is
// <version>.<group>, priorities in range, and a caBundle or
// insecureSkipTLSVerify only for a service.
func validateAPIService(a *apiregv1.APIService) field.ErrorList {
	var errs field.ErrorList
	spec := field.NewPath("spec")
	want := a.Spec.Version + "." + a.Spec.Group
	if a.Spec.Group == "" {
		want = a.Spec.Version
	}
	if a.Name != want {
		errs = append(errs, field.Invalid(field.NewPath("metadata", "name"), a.Name, fmt.Sprintf("must be `spec.version+\".\"+spec.group`: %q", want)))
	}
	if a.Spec.Group == "" && a.Spec.Version != "v1" {
		errs = append(errs, field.Required(spec.Child("group"), "only v1 may have an empty group and it better be legacy kube"))
	}
	if a.Spec.Group != "" {
		for _, msg := range validation.IsDNS1123Subdomain(a.Spec.Group) {
			errs = append(errs, field.Invalid(spec.Child("group"), a.Spec.Group, msg))
		}
	}
	for _, msg := range validation.IsDNS1035Label(a.Spec.Version) {
		errs = append(errs, field.Invalid(spec.Child("version"), a.Spec.Version, msg))
	}
	if a.Spec.GroupPriorityMinimum <= 0 || a.Spec.GroupPriorityMinimum > 20000 {
		errs = append(errs, field.Invalid(spec.Child("groupPriorityMinimum"), a.Spec.GroupPriorityMinimum, "must be positive and less than 20000"))
	}
	if a.Spec.VersionPriority <= 0 || a.Spec.VersionPriority > 1000 {
		errs = append(errs, field.Invalid(spec.Child("versionPriority"), a.Spec.VersionPriority, "must be positive and less than 1000"))
	}
	if a.Spec.Service == nil {
		if len(a.Spec.CABundle) != 0 {
			errs = append(errs, field.Invalid(spec.Child("caBundle"), fmt.Sprintf("%d bytes", len(a.Spec.CABundle)), "local APIServices may not have a caBundle"))
		}
		if a.Spec.InsecureSkipTLSVerify {
			errs = append(errs, field.Invalid(spec.Child("insecureSkipTLSVerify"), a.Spec.InsecureSkipTLSVerify, "local APIServices may not have insecureSkipTLSVerify"))
		}
		return errs
	}
	svc := spec.Child("service")
	if a.Spec.Service.Namespace == "" {
		errs = append(errs, field.Required(svc.Child("namespace"), ""))
	}
	if a.Spec.Service.Name == "" {
		errs = append(errs, field.Required(svc.Child("name"), ""))
	}
	if p := a.Spec.Service.Port; p != nil {
		for _, msg := range validation.IsValidPortNum(int(*p)) {
			errs = append(errs, field.Invalid(svc.Child("port"), *p, msg))
		}
	}
	if a.Spec.InsecureSkipTLSVerify && len(a.Spec.CABundle) > 0 {
		errs = append(errs, field.Invalid(spec.Child("insecureSkipTLSVerify"), a.Spec.InsecureSkipTLSVerify, "may not be true if caBundle is present"))
	}
	return errs
}
