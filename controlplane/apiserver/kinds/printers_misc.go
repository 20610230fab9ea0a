package kinds

import (
	"strings"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	certificatesv1 "k8s.io/api/certificates/v1"
	certificatesv1beta1 "k8s.io/api/certificates/v1beta1"
	coordinationv1 "k8s.io/api/coordination/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	rbacv1beta1 "k8s.io/api/rbac/v1beta1"
	schedulingv1 "k8s.io/api/scheduling/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/duration"
)

func init() {
	tblRegister("coordination.k8s.io", "Lease", []metav1.TableColumnDefinition{
		tblName(),
		tblCol("Holder", "string", coordinationv1.LeaseSpec{}.SwaggerDoc()["holderIdentity"]),
		tblAge(),
	}, func(o *coordinationv1.Lease) []interface{} {
		holder := ""
		if o.Spec.HolderIdentity != nil {
			holder = *o.Spec.HolderIdentity
		}
		return []interface{}{o.Name, holder, tblSince(o.CreationTimestamp)}
	})

	tblRegister("scheduling.k8s.io", "PriorityClass", []metav1.TableColumnDefinition{
		tblName(),
		tblCol("Value", "integer", schedulingv1.PriorityClass{}.SwaggerDoc()["value"]),
		tblCol("Global-Default", "boolean", schedulingv1.PriorityClass{}.SwaggerDoc()["globalDefault"]),
		tblAge(),
		tblCol("PreemptionPolicy", "string", schedulingv1.PriorityClass{}.SwaggerDoc()["preemptionPolicy"]),
	}, func(o *schedulingv1.PriorityClass) []interface{} {
		policy := ""
		if o.PreemptionPolicy != nil {
			policy = string(*o.PreemptionPolicy)
		}
		return []interface{}{o.Name, int64(o.Value), o.GlobalDefault, tblSince(o.CreationTimestamp), policy}
	})

	tblRegister("policy", "PodDisruptionBudget", []metav1.TableColumnDefinition{
		tblName(),
		tblCol("Min Available", "string", "The minimum number of pods that must be available."),
		tblCol("Max Unavailable", "string", "The maximum number of pods that may be unavailable."),
		tblCol("Allowed Disruptions", "integer", "Calculated number of pods that may be disrupted at this time."),
		tblAge(),
	}, func(o *policyv1.PodDisruptionBudget) []interface{} {
		minAvail, maxUnavail := "N/A", "N/A"
		if o.Spec.MinAvailable != nil {
			minAvail = o.Spec.MinAvailable.String()
		}
		if o.Spec.MaxUnavailable != nil {
			maxUnavail = o.Spec.MaxUnavailable.String()
		}
		return []interface{}{o.Name, minAvail, maxUnavail, int64(o.Status.DisruptionsAllowed), tblSince(o.CreationTimestamp)}
	})

	bindingCols := func(kind, what string) []metav1.TableColumnDefinition {
		roleRef := rbacv1beta1.RoleBinding{}.SwaggerDoc()["roleRef"]
		if kind == "ClusterRoleBinding" {
			roleRef = rbacv1beta1.ClusterRoleBinding{}.SwaggerDoc()["roleRef"]
		}
		return []metav1.TableColumnDefinition{
			tblName(),
			tblCol("Role", "string", roleRef),
			tblAge(),
			tblWide("Users", "string", "Users in the "+what),
			tblWide("Groups", "string", "Groups in the "+what),
			tblWide("ServiceAccounts", "string", "ServiceAccounts in the "+what),
		}
	}
	tblRegister("rbac.authorization.k8s.io", "RoleBinding", bindingCols("RoleBinding", "roleBinding"),
		func(o *rbacv1.RoleBinding) []interface{} {
			return bindingRow(o.Name, o.RoleRef, o.Subjects, o.CreationTimestamp)
		})
	tblRegister("rbac.authorization.k8s.io", "ClusterRoleBinding", bindingCols("ClusterRoleBinding", "clusterRoleBinding"),
		func(o *rbacv1.ClusterRoleBinding) []interface{} {
			return bindingRow(o.Name, o.RoleRef, o.Subjects, o.CreationTimestamp)
		})

	// Upstream prints roles, cluster roles and CRDs with the default
	// columns (name, creation time).
	tblRegister("rbac.authorization.k8s.io", "Role", tblDefaultColumns(), func(o *rbacv1.Role) []interface{} { return tblDefaultRow(o) })
	tblRegister("rbac.authorization.k8s.io", "ClusterRole", tblDefaultColumns(), func(o *rbacv1.ClusterRole) []interface{} { return tblDefaultRow(o) })
	tblRegister("apiextensions.k8s.io", "CustomResourceDefinition", tblDefaultColumns(),
		func(o *apiextensionsv1.CustomResourceDefinition) []interface{} { return tblDefaultRow(o) })

	tblRegister("certificates.k8s.io", "CertificateSigningRequest", []metav1.TableColumnDefinition{
		tblName(),
		tblAge(),
		tblCol("SignerName", "string", certificatesv1beta1.CertificateSigningRequestSpec{}.SwaggerDoc()["signerName"]),
		tblCol("Requestor", "string", certificatesv1beta1.CertificateSigningRequestSpec{}.SwaggerDoc()["request"]),
		tblCol("RequestedDuration", "string", certificatesv1beta1.CertificateSigningRequestSpec{}.SwaggerDoc()["expirationSeconds"]),
		tblCol("Condition", "string", certificatesv1beta1.CertificateSigningRequestStatus{}.SwaggerDoc()["conditions"]),
	}, func(o *certificatesv1.CertificateSigningRequest) []interface{} {
		signer := "<none>"
		if o.Spec.SignerName != "" {
			signer = o.Spec.SignerName
		}
		requested := "<none>"
		if o.Spec.ExpirationSeconds != nil {
			requested = duration.HumanDuration(time.Duration(*o.Spec.ExpirationSeconds) * time.Second)
		}
		return []interface{}{o.Name, tblSince(o.CreationTimestamp), signer, o.Spec.Username, requested, csrCondition(o)}
	})

	webhookCols := func() []metav1.TableColumnDefinition {
		return []metav1.TableColumnDefinition{
			tblName(),
			tblCol("Webhooks", "integer", "Webhooks indicates the number of webhooks registered in this configuration"),
			tblAge(),
		}
	}
	tblRegister("admissionregistration.k8s.io", "MutatingWebhookConfiguration", webhookCols(),
		func(o *admissionregistrationv1.MutatingWebhookConfiguration) []interface{} {
			return []interface{}{o.Name, int64(len(o.Webhooks)), tblSince(o.CreationTimestamp)}
		})
	tblRegister("admissionregistration.k8s.io", "ValidatingWebhookConfiguration", webhookCols(),
		func(o *admissionregistrationv1.ValidatingWebhookConfiguration) []interface{} {
			return []interface{}{o.Name, int64(len(o.Webhooks)), tblSince(o.CreationTimestamp)}
		})
}

func bindingRow(name string, ref rbacv1.RoleRef, subjects []rbacv1.Subject, created metav1.Time) []interface{} {
	var users, groups, sas []string
	for _, s := range subjects {
		switch s.Kind {
		case rbacv1.ServiceAccountKind:
			sas = append(sas, s.Namespace+"/"+s.Name)
		case rbacv1.UserKind:
			users = append(users, s.Name)
		case rbacv1.GroupKind:
			groups = append(groups, s.Name)
		}
	}
	return []interface{}{name, ref.Kind + "/" + ref.Name, tblSince(created),
		strings.Join(users, ", "), strings.Join(groups, ", "), strings.Join(sas, ", ")}
}

// csrCondition summarises a CSR: Denied/Approved/Pending, then Failed and
// Issued flags.
func csrCondition(o *certificatesv1.CertificateSigningRequest) string {
	var approved, denied, failed bool
	for _, c := range o.Status.Conditions {
		switch c.Type {
		case certificatesv1.CertificateApproved:
			approved = true
		case certificatesv1.CertificateDenied:
			denied = true
		case certificatesv1.CertificateFailed:
			failed = true
		}
	}
	status := "Pending"
	if denied {
		status = "Denied"
	} else if approved {
		status = "Approved"
	}
	if failed {
		status += ",Failed"
	}
	if len(o.Status.Certificate) > 0 {
		status += ",Issued"
	}
	return status
}
