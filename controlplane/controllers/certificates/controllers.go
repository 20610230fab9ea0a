package certificates

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"time"

	"github.com/skiffhq/skiff/controlplane/controllers"
	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	certlisters "k8s.io/client-go/listers/certificates/v1"
)

// Signer signs a PKCS#10 request as a client certificate (pki.CA.SignCSR)
// or as a serving certificate for the request's own SANs
// (pki.CA.SignServingCSR).
type Signer interface {
	SignCSR(csrPEM []byte, cn string, orgs []string, ttl time.Duration) ([]byte, error)
	SignServingCSR(csrPEM []byte, cn string, orgs []string, ttl time.Duration) ([]byte, error)
}

// Config wires the approver and the signer.
type Config struct {
	Client kubernetes.Interface
	Logger *slog.Logger
	// Signer issues certificates; nil runs the approver only.
	Signer Signer
	// NoApprove leaves approval to others (--disable csrapproving).
	NoApprove bool
	// Duration of issued certificates when the CSR does not ask (default 1 year).
	Duration time.Duration
}

// Controller runs the CSR approver and signer loops.
type Controller struct {
	cfg    Config
	log    *slog.Logger
	lister certlisters.CertificateSigningRequestLister
}

// Name implements controllers.Controller (upstream's names joined).
func (c *Controller) Name() string { return "csrapproving-csrsigning" }

// New creates the controller.
func New(cfg Config) *Controller {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Duration == 0 {
		cfg.Duration = 365 * 24 * time.Hour
	}
	return &Controller{cfg: cfg, log: cfg.Logger.With("component", "certificates")}
}

// Run implements controllers.Controller.
func (c *Controller) Run(ctx context.Context, workers int) error {
	f := informers.NewSharedInformerFactory(c.cfg.Client, 0)
	inf := f.Certificates().V1().CertificateSigningRequests()
	c.lister = inf.Lister()
	q := controllers.NewQueue("certificatesigningrequest")
	if _, err := inf.Informer().AddEventHandler(controllers.Enqueue(q)); err != nil {
		return fmt.Errorf("csr informer: %w", err)
	}
	f.Start(ctx.Done())
	if !controllers.WaitForSync(ctx, inf.Informer().HasSynced) {
		return ctx.Err()
	}
	controllers.RunWorkers(ctx, q, workers, c.log, c.Reconcile)
	return nil
}

// Reconcile approves and then signs one CSR when it qualifies.
func (c *Controller) Reconcile(ctx context.Context, name string) (controllers.Result, error) {
	cached, err := c.lister.Get(name)
	if apierrors.IsNotFound(err) {
		return controllers.Result{}, nil
	}
	if err != nil {
		return controllers.Result{}, err
	}
	if (cached.Spec.SignerName != KubeletClientSigner && cached.Spec.SignerName != KubeletServingSigner) || condition(cached, certificatesv1.CertificateDenied) || condition(cached, certificatesv1.CertificateFailed) {
		return controllers.Result{}, nil
	}
	csr := cached.DeepCopy()
	if !condition(csr, certificatesv1.CertificateApproved) {
		if c.cfg.NoApprove {
			return controllers.Result{}, nil
		}
		if err := c.approve(ctx, csr); err != nil {
			return controllers.Result{}, err
		}
		return controllers.Result{}, nil // the update brings it back for signing
	}
	if c.cfg.Signer == nil || len(csr.Status.Certificate) > 0 {
		return controllers.Result{}, nil
	}
	return controllers.Result{}, c.sign(ctx, csr)
}

// approve approves a valid node client request from a bootstrap token
// (a new node) or from the node itself (renewal), and a valid serving
// request the node makes for names and addresses its Node object has;
// anything else is left for a human, as upstream's approver does.
func (c *Controller) approve(ctx context.Context, csr *certificatesv1.CertificateSigningRequest) error {
	var msg string
	if csr.Spec.SignerName == KubeletServingSigner {
		var err error
		if msg, err = c.servingApproval(ctx, csr); err != nil || msg == "" {
			return err
		}
	} else {
		node, _, err := ValidateNodeClientRequest(csr)
		if err != nil {
			c.log.Info("not auto-approving certificate request", "csr", csr.Name, "reason", err.Error())
			return nil
		}
		switch {
		case slices.Contains(csr.Spec.Groups, BootstrappersGroup):
			msg = "Auto approving kubelet client certificate after SubjectAccessReview."
		case csr.Spec.Username == NodeUserPrefix+node && slices.Contains(csr.Spec.Groups, NodesGroup):
			msg = "Auto approving self kubelet client certificate after SubjectAccessReview."
		default:
			return nil
		}
	}
	csr.Status.Conditions = append(csr.Status.Conditions, certificatesv1.CertificateSigningRequestCondition{
		Type:               certificatesv1.CertificateApproved,
		Status:             corev1.ConditionTrue,
		Reason:             "AutoApproved",
		Message:            msg,
		LastUpdateTime:     metav1.Now(),
		LastTransitionTime: metav1.Now(),
	})
	_, err := c.cfg.Client.CertificatesV1().CertificateSigningRequests().UpdateApproval(ctx, csr.Name, csr, metav1.UpdateOptions{})
	if err != nil {
		return fmt.Errorf("approve %s: %w", csr.Name, err)
	}
	c.log.Info("approved certificate request", "csr", csr.Name, "signer", csr.Spec.SignerName, "requestor", csr.Spec.Username)
	return nil
}

// servingApproval returns the approval message for a node serving
// request, or "" to leave it alone: the requester must be the node the
// certificate names, and every DNS name and IP address must be the node's
// name or one of the addresses its Node object reports. Upstream leaves
// these requests to an administrator or an external approver; Skiff's
// agents join with a token and need a certificate the API server
// verifies, and a node can only ask for what it already claims.
func (c *Controller) servingApproval(ctx context.Context, csr *certificatesv1.CertificateSigningRequest) (string, error) {
	name, req, err := ValidateNodeServingRequest(csr)
	if err != nil {
		c.log.Info("not auto-approving certificate request", "csr", csr.Name, "reason", err.Error())
		return "", nil
	}
	if csr.Spec.Username != NodeUserPrefix+name || !slices.Contains(csr.Spec.Groups, NodesGroup) {
		c.log.Info("not auto-approving certificate request", "csr", csr.Name, "reason", "serving certificates are approved for the node itself only")
		return "", nil
	}
	node, err := c.cfg.Client.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		c.log.Info("not auto-approving certificate request", "csr", csr.Name, "reason", "node "+name+" is not registered")
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("node of %s: %w", csr.Name, err)
	}
	if bad := foreignSANs(node, req); bad != "" {
		c.log.Info("not auto-approving certificate request", "csr", csr.Name, "reason", bad+" is not an address of node "+name)
		return "", nil
	}
	return "Auto approving kubelet serving certificate for the node's own name and addresses.", nil
}

// foreignSANs returns the first SAN of req that is neither the node's name
// nor one of its addresses ("" when there is none).
func foreignSANs(node *corev1.Node, req *x509.CertificateRequest) string {
	known := map[string]bool{node.Name: true}
	for _, a := range node.Status.Addresses {
		if ip := net.ParseIP(a.Address); ip != nil {
			known[ip.String()] = true
		} else {
			known[a.Address] = true
		}
	}
	for _, d := range req.DNSNames {
		if !known[d] {
			return d
		}
	}
	for _, ip := range req.IPAddresses {
		if !known[ip.String()] {
			return ip.String()
		}
	}
	return ""
}

// sign issues the certificate; a request the signer refuses gets the
// Failed condition, as upstream.
func (c *Controller) sign(ctx context.Context, csr *certificatesv1.CertificateSigningRequest) error {
	validate, signCSR := ValidateNodeClientRequest, c.cfg.Signer.SignCSR
	if csr.Spec.SignerName == KubeletServingSigner {
		validate, signCSR = ValidateNodeServingRequest, c.cfg.Signer.SignServingCSR
	}
	_, req, err := validate(csr)
	var cert []byte
	if err == nil {
		ttl := c.cfg.Duration
		if s := csr.Spec.ExpirationSeconds; s != nil {
			ttl = min(ttl, max(time.Duration(*s)*time.Second, 10*time.Minute))
		}
		cert, err = signCSR(csr.Spec.Request, req.Subject.CommonName, req.Subject.Organization, ttl)
	}
	if err != nil {
		csr.Status.Conditions = append(csr.Status.Conditions, certificatesv1.CertificateSigningRequestCondition{
			Type: certificatesv1.CertificateFailed, Status: corev1.ConditionTrue, Reason: "SignerValidationFailure",
			Message: err.Error(), LastUpdateTime: metav1.Now(), LastTransitionTime: metav1.Now(),
		})
	} else {
		csr.Status.Certificate = cert
	}
	if _, uerr := c.cfg.Client.CertificatesV1().CertificateSigningRequests().UpdateStatus(ctx, csr, metav1.UpdateOptions{}); uerr != nil {
		return fmt.Errorf("sign %s: %w", csr.Name, errors.Join(uerr, err))
	}
	if err == nil {
		c.log.Info("signed certificate request", "csr", csr.Name)
	}
	return nil
}
