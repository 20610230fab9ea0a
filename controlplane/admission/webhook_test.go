package admission_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/skiffhq/skiff/internal/testserver"
	admissionv1 "k8s.io/api/admission/v1"
	arv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

// webhookServer is a real HTTPS admission webhook with its own CA.
type webhookServer struct {
	*httptest.Server
	caPEM []byte
}

func startWebhookServer(t *testing.T) *webhookServer {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "webhook-test-ca"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "webhook"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage:    x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	handle := func(path string, decide func(req *admissionv1.AdmissionRequest, resp *admissionv1.AdmissionResponse)) {
		mux.HandleFunc(path, func(w http.ResponseWriter, r *http.Request) {
			var review admissionv1.AdmissionReview
			if err := json.NewDecoder(r.Body).Decode(&review); err != nil || review.Request == nil {
				http.Error(w, "bad review", http.StatusBadRequest)
				return
			}
			resp := &admissionv1.AdmissionResponse{UID: review.Request.UID, Allowed: true}
			decide(review.Request, resp)
			review.Response, review.Request = resp, nil
			_ = json.NewEncoder(w).Encode(review)
		})
	}
	handle("/mutate", func(req *admissionv1.AdmissionRequest, resp *admissionv1.AdmissionResponse) {
		var cm corev1.ConfigMap
		_ = json.Unmarshal(req.Object.Raw, &cm)
		var patch string
		if cm.Labels == nil {
			patch = `[{"op":"add","path":"/metadata/labels","value":{"mutated-by":"webhook"}}]`
		} else {
			patch = `[{"op":"add","path":"/metadata/labels/mutated-by","value":"webhook"}]`
		}
		pt := admissionv1.PatchTypeJSONPatch
		resp.Patch, resp.PatchType = []byte(patch), &pt
		resp.Warnings = []string{"mutated by the test webhook as " + req.UserInfo.Username}
	})
	handle("/validate", func(req *admissionv1.AdmissionRequest, resp *admissionv1.AdmissionResponse) {
		var cm corev1.ConfigMap
		_ = json.Unmarshal(req.Object.Raw, &cm)
		if cm.Data["verdict"] == "deny" {
			resp.Allowed = false
			resp.Result = &metav1.Status{Code: 403, Reason: metav1.StatusReasonForbidden, Message: "configmap " + cm.Name + " is not welcome (mutated-by=" + cm.Labels["mutated-by"] + ")"}
		}
	})
	handle("/slow", func(req *admissionv1.AdmissionRequest, resp *admissionv1.AdmissionResponse) {
		time.Sleep(3 * time.Second)
	})
	srv := httptest.NewUnstartedServer(mux)
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return &webhookServer{Server: srv, caPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER})}
}

func testWebhook(t *testing.T, s *testserver.Server) {
	ctx := context.Background()
	c, warns := clientWithWarnings(t, s)
	wh := startWebhookServer(t)
	namespace(t, c, "hooked", map[string]string{"webhook-test": "on"})
	namespace(t, c, "unhooked", nil)
	none := arv1.SideEffectClassNone
	sel := &metav1.LabelSelector{MatchLabels: map[string]string{"webhook-test": "on"}}
	rules := []arv1.RuleWithOperations{{
		Operations: []arv1.OperationType{arv1.Create, arv1.Update},
		Rule:       arv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"configmaps"}},
	}}
	url := func(path string) *string { return ptr.To(wh.URL + path) }

	if _, err := c.AdmissionregistrationV1().MutatingWebhookConfigurations().Create(ctx, &arv1.MutatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: "label-adder"},
		Webhooks: []arv1.MutatingWebhook{{
			Name: "label.skiff.test", ClientConfig: arv1.WebhookClientConfig{URL: url("/mutate"), CABundle: wh.caPEM},
			Rules: rules, NamespaceSelector: sel, SideEffects: &none, AdmissionReviewVersions: []string{"v1"},
		}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.AdmissionregistrationV1().ValidatingWebhookConfigurations().Create(ctx, &arv1.ValidatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: "gatekeeper"},
		Webhooks: []arv1.ValidatingWebhook{{
			Name: "deny.skiff.test", ClientConfig: arv1.WebhookClientConfig{URL: url("/validate"), CABundle: wh.caPEM},
			Rules: rules, NamespaceSelector: sel, SideEffects: &none, AdmissionReviewVersions: []string{"v1"},
		}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	n := 0
	cm := func(ns string, data map[string]string) (*corev1.ConfigMap, error) {
		n++
		return c.CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("cm-%d", n)}, Data: data}, metav1.CreateOptions{})
	}
	// The configurations reach the API's cache quickly; poll the first time.
	eventually(t, "mutating webhook applied", 5*time.Second, func() (bool, error) {
		got, err := cm("hooked", nil)
		return err == nil && got.Labels["mutated-by"] == "webhook", err
	})
	warns.take()
	got, err := cm("hooked", map[string]string{"verdict": "ok"})
	if err != nil || got.Labels["mutated-by"] != "webhook" {
		t.Fatalf("mutated configmap: %v %v", got, err)
	}
	if w := warns.take(); len(w) != 1 || w[0] != "mutated by the test webhook as system:admin" {
		t.Errorf("webhook warnings = %q", w)
	}
	// The validating webhook runs after mutation and its denial is passed on.
	_, err = cm("hooked", map[string]string{"verdict": "deny"})
	wantStatus(t, err, 403, fmt.Sprintf(`admission webhook "deny.skiff.test" denied the request: configmap cm-%d is not welcome (mutated-by=webhook)`, n))
	// The namespace selector keeps other namespaces out.
	got, err = cm("unhooked", map[string]string{"verdict": "deny"})
	if err != nil || got.Labels["mutated-by"] != "" {
		t.Fatalf("unselected namespace: %v %v", got, err)
	}

	// A webhook that cannot be reached: Ignore lets requests through,
	// Fail refuses them.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	down := "https://" + ln.Addr().String() + "/down"
	ln.Close()
	setValidating := func(name, target string, policy arv1.FailurePolicyType, timeout int32) {
		t.Helper()
		cfg := &arv1.ValidatingWebhookConfiguration{
			ObjectMeta: metav1.ObjectMeta{Name: "broken"},
			Webhooks: []arv1.ValidatingWebhook{{
				Name: name, ClientConfig: arv1.WebhookClientConfig{URL: &target, CABundle: wh.caPEM},
				Rules: rules, NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"webhook-test": "broken"}},
				SideEffects: &none, AdmissionReviewVersions: []string{"v1"}, FailurePolicy: &policy, TimeoutSeconds: &timeout,
			}},
		}
		cur, err := c.AdmissionregistrationV1().ValidatingWebhookConfigurations().Get(ctx, "broken", metav1.GetOptions{})
		if err == nil {
			cfg.ResourceVersion = cur.ResourceVersion
			_, err = c.AdmissionregistrationV1().ValidatingWebhookConfigurations().Update(ctx, cfg, metav1.UpdateOptions{})
		} else {
			_, err = c.AdmissionregistrationV1().ValidatingWebhookConfigurations().Create(ctx, cfg, metav1.CreateOptions{})
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	namespace(t, c, "broken", map[string]string{"webhook-test": "broken"})
	setValidating("down.skiff.test", down, arv1.Fail, 2)
	eventually(t, "Fail policy refuses", 5*time.Second, func() (bool, error) {
		_, err := cm("broken", nil)
		return err != nil && strings.HasPrefix(err.Error(), `Internal error occurred: failed calling webhook "down.skiff.test": failed to call webhook: Post "`+down+`?timeout=2s"`) &&
			strings.Contains(err.Error(), "connection refused"), err
	})
	setValidating("down.skiff.test", down, arv1.Ignore, 2)
	eventually(t, "Ignore policy admits", 5*time.Second, func() (bool, error) {
		_, err := cm("broken", nil)
		return err == nil, err
	})

	// timeoutSeconds bounds the call.
	setValidating("slow.skiff.test", wh.URL+"/slow", arv1.Fail, 1)
	eventually(t, "timeout with Fail", 10*time.Second, func() (bool, error) {
		start := time.Now()
		_, err := cm("broken", nil)
		took := time.Since(start)
		return err != nil && strings.Contains(err.Error(), `failed calling webhook "slow.skiff.test"`) &&
			strings.Contains(err.Error(), "context deadline exceeded") && took < 2900*time.Millisecond, err
	})
	setValidating("slow.skiff.test", wh.URL+"/slow", arv1.Ignore, 1)
	eventually(t, "timeout with Ignore", 10*time.Second, func() (bool, error) {
		_, err := cm("broken", nil)
		return err == nil, err
	})
	// The webhook's own certificate must chain to the caBundle.
	cfg, err := c.AdmissionregistrationV1().ValidatingWebhookConfigurations().Get(ctx, "broken", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	fail := arv1.Fail
	cfg.Webhooks[0].Name = "untrusted.skiff.test"
	cfg.Webhooks[0].ClientConfig = arv1.WebhookClientConfig{URL: url("/validate"), CABundle: s.Config.TLSClientConfig.CAData}
	cfg.Webhooks[0].FailurePolicy = &fail
	if _, err := c.AdmissionregistrationV1().ValidatingWebhookConfigurations().Update(ctx, cfg, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "wrong caBundle refused", 5*time.Second, func() (bool, error) {
		_, err := cm("broken", nil)
		return err != nil && strings.Contains(err.Error(), `failed calling webhook "untrusted.skiff.test"`) &&
			strings.Contains(err.Error(), "certificate signed by unknown authority"), err
	})
}
