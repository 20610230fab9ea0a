package apiserver_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/skiffhq/skiff/internal/testserver"
	"github.com/skiffhq/skiff/server"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv1 "k8s.io/api/autoscaling/v1"
	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apiextclient "k8s.io/apiextensions-apiserver/pkg/client/clientset/clientset"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer/protobuf"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/ptr"
)

const (
	protoCT     = "application/vnd.kubernetes.protobuf"
	protoAccept = "application/vnd.kubernetes.protobuf,application/json"
)

// protoConfig is the server's admin config speaking protobuf, as
// kube-controller-manager and kube-scheduler do.
func protoConfig(s *testserver.Server) *rest.Config {
	c := rest.CopyConfig(s.Config)
	c.ContentType = protoCT
	c.AcceptContentTypes = protoAccept
	return c
}

func protoClient(t *testing.T, s *testserver.Server) kubernetes.Interface {
	t.Helper()
	cs, err := kubernetes.NewForConfig(protoConfig(s))
	if err != nil {
		t.Fatal(err)
	}
	return cs
}

// rawReq sends one request with the given Accept header and returns the
// response's status, content type and body.
func rawReq(t *testing.T, c *http.Client, method, url, accept, ct string, body []byte) (int, string, []byte) {
	t.Helper()
	req, err := http.NewRequestWithContext(context.Background(), method, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	if ct != "" {
		req.Header.Set("Content-Type", ct)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header.Get("Content-Type"), data
}

var protoCodec = protobuf.NewSerializer(scheme.Scheme, scheme.Scheme)

// TestProtobufCRUD drives a built-in kind through a protobuf client-go
// clientset and checks, on the wire, that requests and answers are
// protobuf (errors included) and decode as client-go expects.
func TestProtobufCRUD(t *testing.T) {
	s := testserver.Start(t)
	ctx := context.Background()
	cs := protoClient(t, s)
	cms := cs.CoreV1().ConfigMaps("default")

	cm, err := cms.Create(ctx, &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: "pb", Labels: map[string]string{"app": "pb"}},
		Data:       map[string]string{"k": "v"},
		BinaryData: map[string][]byte{"b": {0, 1, 2}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	if cm.UID == "" || cm.ResourceVersion == "" || cm.Data["k"] != "v" || !bytes.Equal(cm.BinaryData["b"], []byte{0, 1, 2}) {
		t.Fatalf("created object: %+v", cm)
	}
	got, err := cms.Get(ctx, "pb", metav1.GetOptions{})
	if err != nil || got.ResourceVersion != cm.ResourceVersion || got.Labels["app"] != "pb" {
		t.Fatalf("get: %v %+v", err, got)
	}
	// The cached read (resourceVersion=0) serves the same object.
	got0, err := cms.Get(ctx, "pb", metav1.GetOptions{ResourceVersion: "0"})
	if err != nil || got0.UID != cm.UID {
		t.Fatalf("get rv=0: %v %+v", err, got0)
	}
	got.Data["k"] = "v2"
	upd, err := cms.Update(ctx, got, metav1.UpdateOptions{})
	if err != nil || upd.Data["k"] != "v2" || upd.ResourceVersion == got.ResourceVersion {
		t.Fatalf("update: %v %+v", err, upd)
	}
	// A stale resourceVersion is a Conflict StatusError.
	if _, err := cms.Update(ctx, got, metav1.UpdateOptions{}); !apierrors.IsConflict(err) {
		t.Fatalf("stale update: want Conflict, got %v", err)
	}
	if _, err := cms.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "pb"}}, metav1.CreateOptions{}); !apierrors.IsAlreadyExists(err) {
		t.Fatalf("duplicate create: want AlreadyExists, got %v", err)
	}
	if _, err := cms.Get(ctx, "nope", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Fatalf("get missing: want NotFound, got %v", err)
	}
	var se *apierrors.StatusError
	if _, err := cms.Get(ctx, "nope", metav1.GetOptions{}); !errors.As(err, &se) || se.ErrStatus.Details == nil || se.ErrStatus.Details.Name != "nope" {
		t.Fatalf("NotFound carries no details: %#v", err)
	}
	patched, err := cms.Patch(ctx, "pb", types.MergePatchType, []byte(`{"data":{"p":"q"}}`), metav1.PatchOptions{})
	if err != nil || patched.Data["p"] != "q" || patched.Data["k"] != "v2" {
		t.Fatalf("patch: %v %+v", err, patched)
	}

	// On the wire: protobuf envelopes for the object and for the error.
	c, host := rawClient(t, s)
	code, ct, body := rawReq(t, c, "GET", host+"/api/v1/namespaces/default/configmaps/pb", protoAccept, "", nil)
	if code != 200 || ct != protoCT || !bytes.HasPrefix(body, []byte("k8s\x00")) {
		t.Fatalf("GET: %d %q %q", code, ct, body)
	}
	obj, _, err := protoCodec.Decode(body, nil, nil)
	if err != nil || obj.(*corev1.ConfigMap).Data["p"] != "q" {
		t.Fatalf("decode GET body: %v %#v", err, obj)
	}
	code, ct, body = rawReq(t, c, "GET", host+"/api/v1/namespaces/default/configmaps/nope", protoAccept, "", nil)
	if code != 404 || ct != protoCT {
		t.Fatalf("missing GET: %d %q %q", code, ct, body)
	}
	obj, _, err = protoCodec.Decode(body, nil, nil)
	if st, ok := obj.(*metav1.Status); err != nil || !ok || st.Reason != metav1.StatusReasonNotFound || st.Code != 404 {
		t.Fatalf("decode error body: %v %#v", err, obj)
	}
	// Without protobuf in Accept the answer stays JSON.
	code, ct, body = rawReq(t, c, "GET", host+"/api/v1/namespaces/default/configmaps/pb", "application/json", "", nil)
	if code != 200 || ct != "application/json" || !json.Valid(body) {
		t.Fatalf("JSON GET: %d %q %q", code, ct, body)
	}

	if err := cms.Delete(ctx, "pb", metav1.DeleteOptions{}); err != nil {
		t.Fatalf("delete: %v", err)
	}
	if _, err := cms.Get(ctx, "pb", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Fatalf("after delete: %v", err)
	}
}

// TestProtobufListPaging lists in pages, from etcd and from the watch
// cache, through a protobuf client.
func TestProtobufListPaging(t *testing.T) {
	s := testserver.Start(t)
	ctx := context.Background()
	cs := protoClient(t, s)
	const n = 7
	for i := 0; i < n; i++ {
		if _, err := cs.CoreV1().ConfigMaps("default").Create(ctx, &corev1.ConfigMap{
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("cm-%d", i), Labels: map[string]string{"set": "paging"}},
			Data:       map[string]string{"i": fmt.Sprint(i)},
		}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	seen := map[string]bool{}
	opts := metav1.ListOptions{LabelSelector: "set=paging", Limit: 3}
	pages := 0
	for {
		l, err := cs.CoreV1().ConfigMaps("default").List(ctx, opts)
		if err != nil {
			t.Fatalf("list page %d: %v", pages, err)
		}
		pages++
		if l.ResourceVersion == "" {
			t.Fatal("list without resourceVersion")
		}
		for _, it := range l.Items {
			if it.Data["i"] == "" || it.ResourceVersion == "" {
				t.Fatalf("item %+v", it)
			}
			seen[it.Name] = true
		}
		if l.Continue == "" {
			break
		}
		opts.Continue = l.Continue
	}
	if len(seen) != n || pages != 3 {
		t.Fatalf("saw %d objects in %d pages", len(seen), pages)
	}
	// From the watch cache, with RemainingItemCount on an unfiltered page.
	l, err := cs.CoreV1().ConfigMaps("default").List(ctx, metav1.ListOptions{ResourceVersion: "0", LabelSelector: "set=paging"})
	if err != nil || len(l.Items) != n {
		t.Fatalf("cached list: %v %d", err, len(l.Items))
	}
	l, err = cs.CoreV1().ConfigMaps("default").List(ctx, metav1.ListOptions{Limit: 2})
	if err != nil || len(l.Items) != 2 || l.RemainingItemCount == nil || *l.RemainingItemCount < n-2 {
		t.Fatalf("limited list: %v %+v", err, l.ListMeta)
	}
}

// TestProtobufWatch watches through a protobuf client: events carry
// typed objects, bookmarks are objects of the watched kind, and a
// too-old resourceVersion is an ERROR event with 410 Gone.
func TestProtobufWatch(t *testing.T) {
	s := testserver.Start(t, func(c *server.Config) {
		c.WatchBookmarkInterval = 200 * time.Millisecond
		c.WatchCacheSize = 16
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cs := protoClient(t, s)
	cms := cs.CoreV1().ConfigMaps("default")
	w, err := cms.Watch(ctx, metav1.ListOptions{AllowWatchBookmarks: true, ResourceVersion: "0"})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	if _, err := cms.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "w1"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := cms.Delete(ctx, "w1", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	var added, deleted, bookmarks int
	for added == 0 || deleted == 0 || bookmarks == 0 {
		select {
		case e, ok := <-w.ResultChan():
			if !ok {
				t.Fatal("watch closed")
			}
			switch e.Type {
			case watch.Error:
				t.Fatalf("error event: %v", e.Object)
			case watch.Bookmark:
				b, ok := e.Object.(*corev1.ConfigMap)
				if !ok || b.ResourceVersion == "" {
					t.Fatalf("bookmark %T %+v", e.Object, e.Object)
				}
				bookmarks++
			case watch.Added, watch.Deleted:
				o, ok := e.Object.(*corev1.ConfigMap)
				if !ok {
					t.Fatalf("%s event of %T", e.Type, e.Object)
				}
				if o.Name != "w1" {
					continue
				}
				if e.Type == watch.Added {
					added++
				} else {
					deleted++
				}
			}
		case <-ctx.Done():
			t.Fatalf("added=%d deleted=%d bookmarks=%d before the deadline", added, deleted, bookmarks)
		}
	}

	// Push the first revision out of the (small) history: watching from
	// it is a 410 ERROR event, decoded as a Status.
	first, err := cms.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "old"}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 40; i++ {
		first.Data = map[string]string{"i": fmt.Sprint(i)}
		if first, err = cms.Update(ctx, first, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	w2, err := cms.Watch(ctx, metav1.ListOptions{ResourceVersion: "2"})
	if err != nil {
		t.Fatal(err)
	}
	defer w2.Stop()
	select {
	case e := <-w2.ResultChan():
		st, ok := e.Object.(*metav1.Status)
		if e.Type != watch.Error || !ok || st.Code != http.StatusGone {
			t.Fatalf("want a 410 ERROR event, got %s %#v", e.Type, e.Object)
		}
	case <-ctx.Done():
		t.Fatal("no event for a too-old watch")
	}
}

// TestProtobufSubresources: status and scale through a protobuf client.
func TestProtobufSubresources(t *testing.T) {
	// Without the deployment controller: its status writes would race the
	// test's status and scale updates (409s).
	s := testserver.Start(t, func(c *server.Config) { c.Controllers = []string{"*", "-deployment"} })
	ctx := context.Background()
	cs := protoClient(t, s)
	deps := cs.AppsV1().Deployments("default")
	d, err := deps.Create(ctx, &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "web"},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To[int32](1),
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "web"}},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "nginx"}}},
			},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	d.Status.ObservedGeneration = d.Generation
	d.Status.Replicas = 1
	d.Spec.Replicas = ptr.To[int32](9) // ignored by the status subresource
	st, err := deps.UpdateStatus(ctx, d, metav1.UpdateOptions{})
	if err != nil || st.Status.Replicas != 1 || *st.Spec.Replicas != 1 {
		t.Fatalf("update status: %v %+v", err, st)
	}
	// Another writer of the deployment (any controller still running) can
	// make the scale's resourceVersion stale: retry as a client would.
	var sc2 *autoscalingv1.Scale
	err = retry.RetryOnConflict(retry.DefaultRetry, func() error {
		sc, err := deps.GetScale(ctx, "web", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if sc.Spec.Replicas != 1 || sc.Status.Replicas != 1 {
			t.Fatalf("get scale: %+v", sc)
		}
		sc.Spec.Replicas = 3
		sc2, err = deps.UpdateScale(ctx, "web", &autoscalingv1.Scale{ObjectMeta: sc.ObjectMeta, Spec: sc.Spec}, metav1.UpdateOptions{})
		return err
	})
	if err != nil || sc2.Spec.Replicas != 3 {
		t.Fatalf("update scale: %v %+v", err, sc2)
	}
	got, err := deps.Get(ctx, "web", metav1.GetOptions{})
	if err != nil || *got.Spec.Replicas != 3 {
		t.Fatalf("after scale: %v %+v", err, got)
	}
}

// TestProtobufNegotiation covers what has no protobuf form: custom
// resources fall back to JSON (406 when nothing else is accepted), Tables
// stay JSON, PartialObjectMetadataList may be protobuf, and protobuf
// bodies are checked like JSON ones.
func TestProtobufNegotiation(t *testing.T) {
	s := testserver.Start(t)
	ctx := context.Background()
	ext, err := apiextclient.NewForConfig(protoConfig(s))
	if err != nil {
		t.Fatal(err)
	}
	crd := &apiextensionsv1.CustomResourceDefinition{
		ObjectMeta: metav1.ObjectMeta{Name: "gadgets.pb.example.com"},
		Spec: apiextensionsv1.CustomResourceDefinitionSpec{
			Group: "pb.example.com",
			Names: apiextensionsv1.CustomResourceDefinitionNames{Plural: "gadgets", Singular: "gadget", Kind: "Gadget"},
			Scope: apiextensionsv1.NamespaceScoped,
			Versions: []apiextensionsv1.CustomResourceDefinitionVersion{{
				Name: "v1", Served: true, Storage: true,
				Schema: &apiextensionsv1.CustomResourceValidation{OpenAPIV3Schema: &apiextensionsv1.JSONSchemaProps{
					Type: "object", XPreserveUnknownFields: ptr.To(true),
				}},
			}},
		},
	}
	// The CRD itself is a built-in kind: created through protobuf.
	if _, err := ext.ApiextensionsV1().CustomResourceDefinitions().Create(ctx, crd, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create crd: %v", err)
	}
	gvr := schema.GroupVersionResource{Group: "pb.example.com", Version: "v1", Resource: "gadgets"}
	obj := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "pb.example.com/v1", "kind": "Gadget",
		"metadata": map[string]any{"name": "g1"}, "spec": map[string]any{"x": "y"},
	}}
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err = s.Dynamic.Resource(gvr).Namespace("default").Create(ctx, obj, metav1.CreateOptions{})
		if err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("create custom resource: %v", err)
	}
	c, host := rawClient(t, s)
	crURL := host + "/apis/pb.example.com/v1/namespaces/default/gadgets/g1"
	code, ct, body := rawReq(t, c, "GET", crURL, protoAccept, "", nil)
	if code != 200 || ct != "application/json" || !strings.Contains(string(body), `"x":"y"`) {
		t.Fatalf("custom resource with protobuf,json Accept: %d %q %s", code, ct, body)
	}
	code, _, body = rawReq(t, c, "GET", crURL, protoCT, "", nil)
	if code != http.StatusNotAcceptable {
		t.Fatalf("custom resource with protobuf-only Accept: %d %s", code, body)
	}
	code, ct, _ = rawReq(t, c, "GET", host+"/apis/pb.example.com/v1/namespaces/default/gadgets", protoAccept, "", nil)
	if code != 200 || ct != "application/json" {
		t.Fatalf("custom resource list: %d %q", code, ct)
	}
	// A protobuf body for a custom resource is an unsupported media type.
	code, _, body = rawReq(t, c, "POST", host+"/apis/pb.example.com/v1/namespaces/default/gadgets", protoAccept, protoCT, []byte("k8s\x00"))
	if code != http.StatusUnsupportedMediaType {
		t.Fatalf("protobuf body for a custom resource: %d %s", code, body)
	}

	// Tables are JSON even when protobuf is asked first.
	tableAccept := "application/vnd.kubernetes.protobuf;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1;g=meta.k8s.io,application/json"
	code, ct, body = rawReq(t, c, "GET", host+"/api/v1/namespaces", tableAccept, "", nil)
	if code != 200 || ct != "application/json" || !strings.Contains(string(body), `"kind":"Table"`) {
		t.Fatalf("table: %d %q %.200s", code, ct, body)
	}
	// PartialObjectMetadataList may be protobuf, for built-in and custom
	// resources alike.
	pmAccept := "application/vnd.kubernetes.protobuf;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1"
	for _, u := range []string{host + "/api/v1/namespaces", host + "/apis/pb.example.com/v1/gadgets"} {
		code, ct, body = rawReq(t, c, "GET", u, pmAccept, "", nil)
		if code != 200 || ct != protoCT {
			t.Fatalf("partial metadata list %s: %d %q %.200s", u, code, ct, body)
		}
		var pml metav1.PartialObjectMetadataList
		if _, _, err := protoCodec.Decode(body, nil, &pml); err != nil || len(pml.Items) == 0 || pml.Items[0].Name == "" {
			t.Fatalf("decode partial metadata list %s: %v %+v", u, err, pml)
		}
	}

	// Protobuf bodies: kind and apiVersion must match the endpoint.
	secret, err := runtime.Encode(protoCodec, &corev1.Secret{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Secret"},
		ObjectMeta: metav1.ObjectMeta{Name: "s"},
	})
	if err != nil {
		t.Fatal(err)
	}
	cms := host + "/api/v1/namespaces/default/configmaps"
	for _, tc := range []struct {
		name string
		body []byte
		code int
	}{
		{"wrong kind", secret, 400},
		{"no envelope", []byte("\x0a\x03abc"), 400},
		{"envelope only", []byte("k8s\x00"), 400},
		{"truncated", secret[:len(secret)-3], 400},
	} {
		code, ct, body := rawReq(t, c, "POST", cms, protoAccept, protoCT, tc.body)
		if code != tc.code || ct != protoCT {
			t.Errorf("%s: %d %q %q", tc.name, code, ct, body)
			continue
		}
		var st metav1.Status
		if _, _, err := protoCodec.Decode(body, nil, &st); err != nil || st.Code != int32(tc.code) {
			t.Errorf("%s: status %v %+v", tc.name, err, st)
		}
	}
}
