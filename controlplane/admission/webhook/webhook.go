// Package webhook is upstream's MutatingAdmissionWebhook and
// ValidatingAdmissionWebhook admission plugins: the
// admissionregistration.k8s.io/v1 configurations in the API's state pick
// webhooks by rules, namespaceSelector and objectSelector; each is called
// over HTTPS (url, or a Service resolved through its endpoints or
// clusterIP) with an AdmissionReview v1, trusting its caBundle, within
// timeoutSeconds. Mutating webhooks run one after another and may answer
// with a JSONPatch; validating webhooks run in parallel, last. A call that
// fails follows the webhook's failurePolicy.
package webhook

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"reflect"
	"strconv"
	"sync"
	"time"

	jsonpatch "gopkg.in/evanphx/json-patch.v4"

	"github.com/skiffhq/skiff/controlplane/admission/internal/objects"
	"github.com/skiffhq/skiff/controlplane/apiserver"
	admissionv1 "k8s.io/api/admission/v1"
	arv1 "k8s.io/api/admissionregistration/v1"
	authnv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/uuid"
)

// Plugin is one of the two webhook plugins.
type Plugin struct {
	r        *objects.Reader
	log      *slog.Logger
	mutating bool

	mu      sync.Mutex
	clients map[[32]byte]*http.Client
	configs configCache
}

var _ apiserver.AdmissionPlugin = (*Plugin)(nil)

// NewMutating returns the MutatingAdmissionWebhook plugin.
func NewMutating(r *objects.Reader, log *slog.Logger) *Plugin {
	return newPlugin(r, log, true)
}

// NewValidating returns the ValidatingAdmissionWebhook plugin.
func NewValidating(r *objects.Reader, log *slog.Logger) *Plugin {
	return newPlugin(r, log, false)
}

func newPlugin(r *objects.Reader, log *slog.Logger, mutating bool) *Plugin {
	if log == nil {
		log = slog.Default()
	}
	name := "ValidatingAdmissionWebhook"
	if mutating {
		name = "MutatingAdmissionWebhook"
	}
	return &Plugin{r: r, log: log.With("component", "admission", "plugin", name), mutating: mutating, clients: map[[32]byte]*http.Client{}}
}

// Name implements apiserver.AdmissionPlugin.
func (p *Plugin) Name() string {
	if p.mutating {
		return "MutatingAdmissionWebhook"
	}
	return "ValidatingAdmissionWebhook"
}

// hook is one webhook with what is common to both kinds.
type hook struct {
	config            string
	name              string
	clientConfig      arv1.WebhookClientConfig
	rules             []arv1.RuleWithOperations
	failurePolicy     arv1.FailurePolicyType
	namespaceSelector *metav1.LabelSelector
	objectSelector    *metav1.LabelSelector
	sideEffects       arv1.SideEffectClass
	timeout           time.Duration
	reviewVersions    []string
}

// configCache keeps the decoded webhooks until a configuration changes.
type configCache struct {
	fingerprint string
	hooks       []hook
}

func (p *Plugin) hooks() ([]hook, error) {
	plural := "validatingwebhookconfigurations"
	if p.mutating {
		plural = "mutatingwebhookconfigurations"
	}
	prefix := p.r.Prefix("admissionregistration.k8s.io", plural)
	if prefix == "" {
		return nil, nil
	}
	objs, _, err := p.r.Cache.List(prefix, prefix, nil)
	if err != nil {
		return nil, err
	}
	var fp bytes.Buffer
	for _, o := range objs {
		fp.WriteString(o.Key)
		fp.WriteString(strconv.FormatInt(o.ModRev, 10))
	}
	p.mu.Lock()
	if p.configs.fingerprint == fp.String() {
		hs := p.configs.hooks
		p.mu.Unlock()
		return hs, nil
	}
	p.mu.Unlock()
	var hs []hook
	for _, o := range objs {
		if p.mutating {
			var c arv1.MutatingWebhookConfiguration
			if err := json.Unmarshal(o.Value, &c); err != nil {
				return nil, fmt.Errorf("decode %s: %w", o.Key, err)
			}
			for _, w := range c.Webhooks {
				hs = append(hs, newHook(c.Name, w.Name, w.ClientConfig, w.Rules, w.FailurePolicy, w.NamespaceSelector, w.ObjectSelector, w.SideEffects, w.TimeoutSeconds, w.AdmissionReviewVersions))
			}
		} else {
			var c arv1.ValidatingWebhookConfiguration
			if err := json.Unmarshal(o.Value, &c); err != nil {
				return nil, fmt.Errorf("decode %s: %w", o.Key, err)
			}
			for _, w := range c.Webhooks {
				hs = append(hs, newHook(c.Name, w.Name, w.ClientConfig, w.Rules, w.FailurePolicy, w.NamespaceSelector, w.ObjectSelector, w.SideEffects, w.TimeoutSeconds, w.AdmissionReviewVersions))
			}
		}
	}
	p.mu.Lock()
	p.configs = configCache{fingerprint: fp.String(), hooks: hs}
	p.mu.Unlock()
	return hs, nil
}

func newHook(config, name string, cc arv1.WebhookClientConfig, rules []arv1.RuleWithOperations, fp *arv1.FailurePolicyType,
	ns, obj *metav1.LabelSelector, se *arv1.SideEffectClass, timeout *int32, versions []string) hook {
	h := hook{config: config, name: name, clientConfig: cc, rules: rules, failurePolicy: arv1.Fail,
		namespaceSelector: ns, objectSelector: obj, sideEffects: arv1.SideEffectClassUnknown, timeout: 10 * time.Second, reviewVersions: versions}
	if fp != nil {
		h.failurePolicy = *fp
	}
	if se != nil {
		h.sideEffects = *se
	}
	if timeout != nil && *timeout > 0 {
		h.timeout = time.Duration(*timeout) * time.Second
	}
	return h
}

// exempt resources are never sent to webhooks, so a broken webhook cannot
// lock administrators out of fixing its configuration.
func exempt(a *apiserver.Attributes) bool {
	if a.Resource.Group != "admissionregistration.k8s.io" {
		return false
	}
	switch a.Resource.Plural {
	case "validatingwebhookconfigurations", "mutatingwebhookconfigurations",
		"validatingadmissionpolicies", "validatingadmissionpolicybindings",
		"mutatingadmissionpolicies", "mutatingadmissionpolicybindings":
		return true
	}
	return false
}

// Admit implements apiserver.AdmissionPlugin: mutating webhooks, in order.
func (p *Plugin) Admit(ctx context.Context, a *apiserver.Attributes) error {
	if !p.mutating || a.Resource == nil || exempt(a) {
		return nil
	}
	hs, err := p.hooks()
	if err != nil || len(hs) == 0 {
		return err
	}
	for _, h := range hs {
		ok, err := p.matches(h, a)
		if err != nil {
			return err
		}
		if !ok {
			continue
		}
		if err := p.run(ctx, h, a); err != nil {
			return err
		}
	}
	return nil
}

// Validate implements apiserver.AdmissionPlugin: validating webhooks, in
// parallel; the first rejection in webhook order wins.
func (p *Plugin) Validate(ctx context.Context, a *apiserver.Attributes) error {
	if p.mutating || a.Resource == nil || exempt(a) {
		return nil
	}
	hs, err := p.hooks()
	if err != nil || len(hs) == 0 {
		return err
	}
	var run []hook
	for _, h := range hs {
		ok, err := p.matches(h, a)
		if err != nil {
			return err
		}
		if ok {
			run = append(run, h)
		}
	}
	errs := make([]error, len(run))
	var wg sync.WaitGroup
	for i, h := range run {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = p.run(ctx, h, a)
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// callError is a failure to get a usable answer from a webhook; the
// failure policy decides what it means.
type callError struct {
	name   string
	reason error
}

func (e *callError) Error() string {
	return fmt.Sprintf("failed calling webhook %q: %v", e.name, e.reason)
}

// run calls one webhook and applies its answer.
func (p *Plugin) run(ctx context.Context, h hook, a *apiserver.Attributes) error {
	if a.DryRun && h.sideEffects != arv1.SideEffectClassNone && h.sideEffects != arv1.SideEffectClassNoneOnDryRun {
		return apierrors.NewBadRequest(fmt.Sprintf("admission webhook %q does not support dry run", h.name))
	}
	err := p.call(ctx, h, a)
	var ce *callError
	if errors.As(err, &ce) {
		if h.failurePolicy == arv1.Ignore {
			p.log.Warn("webhook failed; ignored by its failurePolicy", "webhook", h.name, "err", err)
			return nil
		}
		return apierrors.NewInternalError(err)
	}
	return err
}

func (p *Plugin) call(ctx context.Context, h hook, a *apiserver.Attributes) error {
	if !contains(h.reviewVersions, "v1") {
		return &callError{h.name, fmt.Errorf("webhook does not accept v1 AdmissionReview (accepts %v)", h.reviewVersions)}
	}
	req, err := review(a)
	if err != nil {
		return &callError{h.name, err}
	}
	body, err := json.Marshal(req)
	if err != nil {
		return &callError{h.name, err}
	}
	target, serverName, err := p.endpoint(h, a)
	if err != nil {
		return &callError{h.name, err}
	}
	client, err := p.client(h.clientConfig.CABundle, serverName)
	if err != nil {
		return &callError{h.name, err}
	}
	cctx, cancel := context.WithTimeout(ctx, h.timeout)
	defer cancel()
	q := target.Query()
	q.Set("timeout", fmt.Sprintf("%ds", int(h.timeout/time.Second)))
	target.RawQuery = q.Encode()
	hreq, err := http.NewRequestWithContext(cctx, http.MethodPost, target.String(), bytes.NewReader(body))
	if err != nil {
		return &callError{h.name, err}
	}
	hreq.Header.Set("Content-Type", "application/json")
	hreq.Header.Set("Accept", "application/json")
	if serverName != "" {
		hreq.Host = serverName + ":" + target.Port()
	}
	resp, err := client.Do(hreq)
	if err != nil {
		return &callError{h.name, fmt.Errorf("failed to call webhook: %w", err)}
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 3<<20))
	if err != nil {
		return &callError{h.name, fmt.Errorf("failed to call webhook: %w", err)}
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return &callError{h.name, fmt.Errorf("failed to call webhook: the server responded with the status code %d", resp.StatusCode)}
	}
	var out admissionv1.AdmissionReview
	if err := json.Unmarshal(data, &out); err != nil {
		return &callError{h.name, fmt.Errorf("received invalid webhook response: %w", err)}
	}
	if out.APIVersion != "admission.k8s.io/v1" || out.Kind != "AdmissionReview" {
		return &callError{h.name, fmt.Errorf("expected webhook response of admission.k8s.io/v1, Kind=AdmissionReview, got %s, Kind=%s", out.APIVersion, out.Kind)}
	}
	if out.Response == nil {
		return &callError{h.name, errors.New("webhook response was absent")}
	}
	if out.Response.UID != req.Request.UID {
		return &callError{h.name, fmt.Errorf("expected response.uid=%q, got %q", req.Request.UID, out.Response.UID)}
	}
	for _, w := range out.Response.Warnings {
		apiserver.AddWarning(ctx, w)
	}
	if !out.Response.Allowed {
		return denied(h.name, out.Response.Result)
	}
	if len(out.Response.Patch) == 0 {
		return nil
	}
	if !p.mutating {
		return &callError{h.name, errors.New("validating webhooks may not return patches")}
	}
	if out.Response.PatchType == nil || *out.Response.PatchType != admissionv1.PatchTypeJSONPatch {
		return &callError{h.name, fmt.Errorf("unsupported patch type %v", out.Response.PatchType)}
	}
	if a.Object == nil {
		return nil
	}
	if err := applyPatch(a, out.Response.Patch); err != nil {
		return &callError{h.name, err}
	}
	return nil
}

// denied builds upstream's rejection: the webhook's status, at least 400.
func denied(name string, result *metav1.Status) error {
	st := metav1.Status{Status: metav1.StatusFailure}
	if result != nil {
		st = *result.DeepCopy()
	}
	if st.Code < http.StatusBadRequest {
		st.Code = http.StatusBadRequest
	}
	if st.Status == "" || st.Status == metav1.StatusSuccess {
		st.Status = metav1.StatusFailure
	}
	prefix := fmt.Sprintf("admission webhook %q denied the request", name)
	switch {
	case st.Message != "":
		st.Message = prefix + ": " + st.Message
	case st.Reason != "":
		st.Message = prefix + ": " + string(st.Reason)
	default:
		st.Message = prefix + " without explanation"
	}
	return &apierrors.StatusError{ErrStatus: st}
}

// applyPatch applies a JSONPatch to a.Object in place.
func applyPatch(a *apiserver.Attributes, patch []byte) error {
	cur, err := encode(a, a.Object)
	if err != nil {
		return err
	}
	ops, err := jsonpatch.DecodePatch(patch)
	if err != nil {
		return fmt.Errorf("invalid JSONPatch: %w", err)
	}
	next, err := ops.Apply(cur)
	if err != nil {
		return fmt.Errorf("JSONPatch failed: %w", err)
	}
	if u, ok := a.Object.(*unstructured.Unstructured); ok {
		m := map[string]interface{}{}
		if err := json.Unmarshal(next, &m); err != nil {
			return fmt.Errorf("patched object: %w", err)
		}
		u.Object = m
		return nil
	}
	fresh := reflect.New(reflect.TypeOf(a.Object).Elem()).Interface()
	if err := json.Unmarshal(next, fresh); err != nil {
		return fmt.Errorf("patched object: %w", err)
	}
	reflect.ValueOf(a.Object).Elem().Set(reflect.ValueOf(fresh).Elem())
	a.Object.GetObjectKind().SetGroupVersionKind(a.Resource.GVK())
	return nil
}

func encode(a *apiserver.Attributes, obj runtime.Object) ([]byte, error) {
	if obj == nil {
		return nil, nil
	}
	obj.GetObjectKind().SetGroupVersionKind(a.Resource.GVK())
	return json.Marshal(obj)
}

// review builds the AdmissionReview request.
func review(a *apiserver.Attributes) (*admissionv1.AdmissionReview, error) {
	obj, err := encode(a, a.Object)
	if err != nil {
		return nil, err
	}
	old, err := encode(a, a.OldObject)
	if err != nil {
		return nil, err
	}
	gvk := a.Resource.GVK()
	gvr := a.Resource.GVR()
	kind := metav1.GroupVersionKind{Group: gvk.Group, Version: gvk.Version, Kind: gvk.Kind}
	res := metav1.GroupVersionResource{Group: gvr.Group, Version: gvr.Version, Resource: gvr.Resource}
	dry := a.DryRun
	req := &admissionv1.AdmissionRequest{
		UID:                types.UID(uuid.NewUUID()),
		Kind:               kind,
		Resource:           res,
		SubResource:        a.Subresource,
		RequestKind:        &kind,
		RequestResource:    &res,
		RequestSubResource: a.Subresource,
		Name:               a.Name,
		Namespace:          a.Namespace,
		Operation:          admissionv1.Operation(a.Operation),
		Object:             runtime.RawExtension{Raw: obj},
		OldObject:          runtime.RawExtension{Raw: old},
		DryRun:             &dry,
	}
	if a.User != nil {
		req.UserInfo = authnv1.UserInfo{Username: a.User.Name, UID: a.User.UID, Groups: a.User.Groups}
		if len(a.User.Extra) > 0 {
			req.UserInfo.Extra = map[string]authnv1.ExtraValue{}
			for k, v := range a.User.Extra {
				req.UserInfo.Extra[k] = v
			}
		}
	}
	opts := a.Options
	if opts == nil {
		switch a.Operation {
		case apiserver.OpCreate:
			opts = &metav1.CreateOptions{TypeMeta: metav1.TypeMeta{APIVersion: "meta.k8s.io/v1", Kind: "CreateOptions"}}
		case apiserver.OpUpdate:
			opts = &metav1.UpdateOptions{TypeMeta: metav1.TypeMeta{APIVersion: "meta.k8s.io/v1", Kind: "UpdateOptions"}}
		}
	} else if d, ok := opts.(*metav1.DeleteOptions); ok {
		c := d.DeepCopy()
		c.APIVersion, c.Kind = "meta.k8s.io/v1", "DeleteOptions"
		opts = c
	}
	if opts != nil {
		raw, err := json.Marshal(opts)
		if err != nil {
			return nil, err
		}
		req.Options = runtime.RawExtension{Raw: raw}
	}
	return &admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Request:  req,
	}, nil
}

// matches applies rules, scope and the two selectors.
func (p *Plugin) matches(h hook, a *apiserver.Attributes) (bool, error) {
	ruleOK := false
	for _, r := range h.rules {
		if ruleMatches(r, a) {
			ruleOK = true
			break
		}
	}
	if !ruleOK {
		return false, nil
	}
	if h.objectSelector != nil {
		sel, err := metav1.LabelSelectorAsSelector(h.objectSelector)
		if err != nil {
			return false, apierrors.NewInternalError(fmt.Errorf("webhook %q: invalid objectSelector: %w", h.name, err))
		}
		if !sel.Empty() && !sel.Matches(labels.Set(labelsOf(a.Object))) && !sel.Matches(labels.Set(labelsOf(a.OldObject))) {
			return false, nil
		}
	}
	if h.namespaceSelector != nil {
		sel, err := metav1.LabelSelectorAsSelector(h.namespaceSelector)
		if err != nil {
			return false, apierrors.NewInternalError(fmt.Errorf("webhook %q: invalid namespaceSelector: %w", h.name, err))
		}
		if !sel.Empty() {
			var nsLabels map[string]string
			switch {
			case a.Resource.Group == "" && a.Resource.Plural == "namespaces":
				nsLabels = labelsOf(a.Object)
				if a.Object == nil {
					nsLabels = labelsOf(a.OldObject)
				}
			case !a.Resource.Namespaced:
				return true, nil
			default:
				ns, err := objects.Get[corev1.Namespace](p.r, "", "namespaces", "", a.Namespace)
				if err != nil && !errors.Is(err, objects.ErrNotFound) {
					return false, err
				}
				if ns != nil {
					nsLabels = ns.Labels
				}
			}
			if !sel.Matches(labels.Set(nsLabels)) {
				return false, nil
			}
		}
	}
	return true, nil
}

func labelsOf(obj runtime.Object) map[string]string {
	if obj == nil || reflect.ValueOf(obj).IsNil() {
		return nil
	}
	acc, err := meta.Accessor(obj)
	if err != nil {
		return nil
	}
	return acc.GetLabels()
}

func ruleMatches(r arv1.RuleWithOperations, a *apiserver.Attributes) bool {
	opOK := false
	for _, op := range r.Operations {
		if op == arv1.OperationAll || string(op) == string(a.Operation) {
			opOK = true
		}
	}
	if !opOK || !containsOrAll(r.APIGroups, a.Resource.Group) || !containsOrAll(r.APIVersions, a.Resource.Version) {
		return false
	}
	if r.Scope != nil {
		namespaced := a.Resource.Namespaced
		switch *r.Scope {
		case arv1.ClusterScope:
			if namespaced {
				return false
			}
		case arv1.NamespacedScope:
			if !namespaced {
				return false
			}
		}
	}
	for _, res := range r.Resources {
		name, sub, hasSub := cut(res)
		if name != "*" && name != a.Resource.Plural {
			continue
		}
		if !hasSub {
			if a.Subresource == "" {
				return true
			}
			continue
		}
		if sub == "*" || sub == a.Subresource {
			return true
		}
	}
	return false
}

func cut(s string) (string, string, bool) {
	for i := 0; i < len(s); i++ {
		if s[i] == '/' {
			return s[:i], s[i+1:], true
		}
	}
	return s, "", false
}

func containsOrAll(list []string, v string) bool {
	for _, x := range list {
		if x == "*" || x == v {
			return true
		}
	}
	return false
}

func contains(list []string, v string) bool {
	for _, x := range list {
		if x == v {
			return true
		}
	}
	return false
}

// endpoint resolves where to send the review and the TLS server name.
func (p *Plugin) endpoint(h hook, a *apiserver.Attributes) (*url.URL, string, error) {
	cc := h.clientConfig
	if cc.URL != nil {
		u, err := url.Parse(*cc.URL)
		if err != nil {
			return nil, "", fmt.Errorf("invalid webhook url: %w", err)
		}
		return u, "", nil
	}
	if cc.Service == nil {
		return nil, "", errors.New("webhook has neither url nor service")
	}
	ref := cc.Service
	port := int32(443)
	if ref.Port != nil {
		port = *ref.Port
	}
	path := ""
	if ref.Path != nil {
		path = *ref.Path
	}
	svc, err := objects.Get[corev1.Service](p.r, "", "services", ref.Namespace, ref.Name)
	if err != nil {
		return nil, "", fmt.Errorf("service %s/%s: %w", ref.Namespace, ref.Name, err)
	}
	serverName := ref.Name + "." + ref.Namespace + ".svc"
	var sp *corev1.ServicePort
	for i := range svc.Spec.Ports {
		if svc.Spec.Ports[i].Port == port {
			sp = &svc.Spec.Ports[i]
		}
	}
	if sp == nil {
		return nil, "", fmt.Errorf("service %s/%s has no port %d", ref.Namespace, ref.Name, port)
	}
	host := ""
	if ep, err := objects.Get[corev1.Endpoints](p.r, "", "endpoints", ref.Namespace, ref.Name); err == nil {
		for _, sub := range ep.Subsets {
			for _, epp := range sub.Ports {
				if epp.Name == sp.Name && len(sub.Addresses) > 0 {
					host = net.JoinHostPort(sub.Addresses[0].IP, strconv.Itoa(int(epp.Port)))
					break
				}
			}
			if host != "" {
				break
			}
		}
	}
	if host == "" {
		if svc.Spec.ClusterIP == "" || svc.Spec.ClusterIP == corev1.ClusterIPNone {
			return nil, "", fmt.Errorf("service %s/%s has no ready endpoints", ref.Namespace, ref.Name)
		}
		host = net.JoinHostPort(svc.Spec.ClusterIP, strconv.Itoa(int(port)))
	}
	return &url.URL{Scheme: "https", Host: host, Path: path}, serverName, nil
}

// client returns an HTTPS client trusting caBundle (the system roots when
// it is empty) that verifies serverName (the URL's host when empty),
// shared by every webhook with the same bundle and name.
func (p *Plugin) client(caBundle []byte, serverName string) (*http.Client, error) {
	key := sha256.Sum256(append(append([]byte(serverName), 0), caBundle...))
	p.mu.Lock()
	defer p.mu.Unlock()
	if c, ok := p.clients[key]; ok {
		return c, nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: serverName}
	if len(caBundle) > 0 {
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(caBundle) {
			return nil, errors.New("caBundle holds no PEM certificates")
		}
		cfg.RootCAs = pool
	}
	c := &http.Client{Transport: &http.Transport{
		TLSClientConfig:     cfg,
		Proxy:               nil,
		MaxIdleConnsPerHost: 16,
		IdleConnTimeout:     90 * time.Second,
		ForceAttemptHTTP2:   true,
	}}
	p.clients[key] = c
	return c, nil
}
