// Package certificates holds the node certificate flows of
// CertificateSigningRequests (certificates.k8s.io/v1): client certificates
// for the signer kubernetes.io/kube-apiserver-client-kubelet and serving
// certificates of the node agents' API for kubernetes.io/kubelet-serving.
// A storage hook records the requesting user; an approver approves node
// client requests from bootstrap tokens and renewals by the node itself,
// and serving requests a node makes for its own name and addresses; a
// signer issues approved requests with the cluster CA. See README.md.
package certificates

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/skiffhq/skiff/controlplane/apiserver"
	certificatesv1 "k8s.io/api/certificates/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// Names used by the flow, as upstream.
const (
	KubeletClientSigner  = "kubernetes.io/kube-apiserver-client-kubelet"
	KubeletServingSigner = "kubernetes.io/kubelet-serving"
	NodeUserPrefix       = "system:node:"
	NodesGroup           = "system:nodes"
	BootstrappersGroup   = "system:bootstrappers"
)

// ValidateNodeClientRequest checks that a CSR asks for what a node client
// certificate may hold (as upstream's kubelet client signer): CN
// system:node:<name>, O exactly system:nodes, no SANs, usages digital
// signature / key encipherment / client auth only. It returns the node.
func ValidateNodeClientRequest(csr *certificatesv1.CertificateSigningRequest) (string, *x509.CertificateRequest, error) {
	node, req, err := parseNodeRequest(csr)
	if err != nil {
		return "", nil, err
	}
	if len(req.DNSNames) > 0 || len(req.EmailAddresses) > 0 || len(req.IPAddresses) > 0 || len(req.URIs) > 0 {
		return "", nil, errors.New("subject alternative names are not allowed")
	}
	if err := checkUsages(csr.Spec.Usages, certificatesv1.UsageClientAuth); err != nil {
		return "", nil, err
	}
	return node, req, nil
}

// ValidateNodeServingRequest checks that a CSR asks for what a node's
// serving certificate may hold (as upstream's kubelet-serving signer): CN
// system:node:<name>, O exactly system:nodes, at least one DNS name or IP
// address and no other SANs, usages within digital signature / key
// encipherment / server auth (server auth required). It returns the node.
func ValidateNodeServingRequest(csr *certificatesv1.CertificateSigningRequest) (string, *x509.CertificateRequest, error) {
	node, req, err := parseNodeRequest(csr)
	if err != nil {
		return "", nil, err
	}
	if len(req.EmailAddresses) > 0 || len(req.URIs) > 0 {
		return "", nil, errors.New("email and URI subject alternative names are not allowed")
	}
	if len(req.DNSNames) == 0 && len(req.IPAddresses) == 0 {
		return "", nil, errors.New("at least one DNS name or IP address is required")
	}
	if err := checkUsages(csr.Spec.Usages, certificatesv1.UsageServerAuth); err != nil {
		return "", nil, err
	}
	return node, req, nil
}

// parseNodeRequest decodes the PKCS#10 request of a node CSR and checks
// its signature and subject (CN system:node:<name>, O exactly
// system:nodes).
func parseNodeRequest(csr *certificatesv1.CertificateSigningRequest) (string, *x509.CertificateRequest, error) {
	block, _ := pem.Decode(csr.Spec.Request)
	if block == nil || block.Type != "CERTIFICATE REQUEST" {
		return "", nil, errors.New("spec.request is not a PEM CERTIFICATE REQUEST")
	}
	req, err := x509.ParseCertificateRequest(block.Bytes)
	if err != nil {
		return "", nil, fmt.Errorf("spec.request: %w", err)
	}
	if err := req.CheckSignature(); err != nil {
		return "", nil, fmt.Errorf("spec.request signature: %w", err)
	}
	node, ok := strings.CutPrefix(req.Subject.CommonName, NodeUserPrefix)
	if !ok || node == "" {
		return "", nil, fmt.Errorf("subject common name must begin with %q", NodeUserPrefix)
	}
	if !slices.Equal(req.Subject.Organization, []string{NodesGroup}) {
		return "", nil, fmt.Errorf("subject organization must be exactly [%q]", NodesGroup)
	}
	return node, req, nil
}

// checkUsages allows digital signature, key encipherment and want, and
// requires want.
func checkUsages(usages []certificatesv1.KeyUsage, want certificatesv1.KeyUsage) error {
	has := false
	for _, u := range usages {
		switch u {
		case want:
			has = true
		case certificatesv1.UsageDigitalSignature, certificatesv1.UsageKeyEncipherment:
		default:
			return fmt.Errorf("usage %q is not allowed", u)
		}
	}
	if !has {
		return fmt.Errorf("usages must include %q", want)
	}
	return nil
}

// RequestorHook fills spec.username, uid, groups and extra from the
// authenticated user on create (upstream's CSR strategy; clients cannot
// set them), and refuses bootstrap tokens a CSR for any signer but the
// kubelet client signer.
type RequestorHook struct{}

var _ apiserver.StorageHook = RequestorHook{}

// GroupResource is what the hook is attached to.
var GroupResource = schema.GroupResource{Group: "certificates.k8s.io", Resource: "certificatesigningrequests"}

// BeforeCreate implements apiserver.StorageHook.
func (RequestorHook) BeforeCreate(ctx context.Context, obj runtime.Object, _ bool) error {
	csr, ok := obj.(*certificatesv1.CertificateSigningRequest)
	if !ok {
		return nil
	}
	u, _ := apiserver.UserFrom(ctx)
	csr.Spec.Username, csr.Spec.UID, csr.Spec.Groups, csr.Spec.Extra = "", "", nil, nil
	if u == nil {
		return nil
	}
	csr.Spec.Username, csr.Spec.UID, csr.Spec.Groups = u.Name, u.UID, slices.Clone(u.Groups)
	if len(u.Extra) > 0 {
		csr.Spec.Extra = map[string]certificatesv1.ExtraValue{}
		for k, v := range u.Extra {
			csr.Spec.Extra[k] = v
		}
	}
	if slices.Contains(u.Groups, BootstrappersGroup) && csr.Spec.SignerName != KubeletClientSigner {
		return apierrors.NewForbidden(GroupResource, csr.Name,
			fmt.Errorf("bootstrap tokens may only request certificates from signer %q", KubeletClientSigner))
	}
	return nil
}

// BeforeUpdate implements apiserver.StorageHook.
func (RequestorHook) BeforeUpdate(context.Context, runtime.Object, runtime.Object, bool) error {
	return nil
}

// Release implements apiserver.StorageHook.
func (RequestorHook) Release(context.Context, runtime.Object, runtime.Object) {}

// AfterDelete implements apiserver.StorageHook.
func (RequestorHook) AfterDelete(context.Context, runtime.Object) {}

func condition(csr *certificatesv1.CertificateSigningRequest, t certificatesv1.RequestConditionType) bool {
	for _, c := range csr.Status.Conditions {
		if c.Type == t {
			return true
		}
	}
	return false
}
