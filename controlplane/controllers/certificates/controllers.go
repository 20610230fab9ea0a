package certificates

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
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

// Signer signs a PKCS#10 request as a client certificate (pki.CA.SignCSR).
type Signer interface {
	SignCSR(csrPEM []byte, cn string, orgs []string, ttl time.Duration) ([]byte, error)
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
	if cached.Spec.SignerName != KubeletClientSigner || condition(cached, certificatesv1.CertificateDenied) || condition(cached, certificatesv1.CertificateFailed) {
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
// (a new node) or from the node itself (renewal); anything else is left
// for a human, as upstream's approver does.
func (c *Controller) approve(ctx context.Context, csr *certificatesv1.CertificateSigningRequest) error {
	node, _, err := ValidateNodeClientRequest(csr)
	if err != nil {
		c.log.Info("not auto-approving certificate request", "csr", csr.Name, "reason", err.Error())
		return nil
	}
	var msg string
	switch {
	case slices.Contains(csr.Spec.Groups, BootstrappersGroup):
		msg = "Auto approving kubelet client certificate after SubjectAccessReview."
	case csr.Spec.Username == NodeUserPrefix+node && slices.Contains(csr.Spec.Groups, NodesGroup):
		msg = "Auto approving self kubelet client certificate after SubjectAccessReview."
	default:
		return nil
	}
	csr.Status.Conditions = append(csr.Status.Conditions, certificatesv1.CertificateSigningRequestCondition{
		Type:               certificatesv1.CertificateApproved,
		Status:             corev1.ConditionTrue,
		Reason:             "AutoApproved",
		Message:            msg,
		LastUpdateTime:     metav1.Now(),
		LastTransitionTime: metav1.Now(),
	})
	_, err = c.cfg.Client.CertificatesV1().CertificateSigningRequests().UpdateApproval(ctx, csr.Name, csr, metav1.UpdateOptions{})
	if err != nil {
		return fmt.Errorf("approve %s: %w", csr.Name, err)
	}
	c.log.Info("approved certificate request", "csr", csr.Name, "node", node, "requestor", csr.Spec.Username)
	return nil
}

// sign issues the certificate; a request the signer refuses gets the
// Failed condition, as upstream.
func (c *Controller) sign(ctx context.Context, csr *certificatesv1.CertificateSigningRequest) error {
	_, req, err := ValidateNodeClientRequest(csr)
	var cert []byte
	if err == nil {
		ttl := c.cfg.Duration
		if s := csr.Spec.ExpirationSeconds; s != nil {
			ttl = min(ttl, max(time.Duration(*s)*time.Second, 10*time.Minute))
		}
		cert, err = c.cfg.Signer.SignCSR(csr.Spec.Request, req.Subject.CommonName, req.Subject.Organization, ttl)
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
