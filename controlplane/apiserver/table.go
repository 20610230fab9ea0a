package apiserver

import (
	"encoding/json"
	"net/http"
	"strconv"
	"time"

	"github.com/skiffhq/skiff/controlplane/apiserver/registry"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/duration"
)

type negotiated int

const (
	asJSON negotiated = iota
	asTable
	asPartialMeta
	asPartialMetaList
)

// negotiate returns the representation negotiated for r: the object
// itself, or the Table and PartialObjectMetadata forms kubectl and
// metadata informers ask for (see negotiateOutput).
func negotiate(r *http.Request) negotiated {
	return outputOf(r).rep
}

var defaultColumns = []metav1.TableColumnDefinition{
	{Name: "Name", Type: "string", Format: "name", Description: "Name must be unique within a namespace."},
	{Name: "Created At", Type: "date", Description: "CreationTimestamp is a timestamp representing the server time when this object was created."},
}

// toTable renders items as a meta.k8s.io/v1 Table.
func (s *Server) toTable(res *registry.Resource, items []storedItem, r *http.Request, cont string, remaining *int64) (*metav1.Table, error) {
	include := r.URL.Query().Get("includeObject")
	if include == "" {
		include = "Metadata"
	}
	t := &metav1.Table{TypeMeta: metav1.TypeMeta{Kind: "Table", APIVersion: "meta.k8s.io/v1"}}
	t.Continue = cont
	t.RemainingItemCount = remaining
	conv := res.Hooks.Table
	if conv != nil {
		t.ColumnDefinitions = conv.Columns
	} else {
		t.ColumnDefinitions = defaultColumns
	}
	t.Rows = make([]metav1.TableRow, 0, len(items))
	for _, it := range items {
		obj, _ := it.obj.(runtime.Object)
		if obj == nil {
			o, err := fromStorage(res, it.value, it.rev)
			if err != nil {
				return nil, err
			}
			obj = o
		}
		acc, err := meta.Accessor(obj)
		if err != nil {
			return nil, err
		}
		row := metav1.TableRow{}
		if conv != nil {
			row.Cells = conv.Row(obj)
		} else {
			row.Cells = []interface{}{acc.GetName(), acc.GetCreationTimestamp().UTC().Format(time.RFC3339)}
		}
		switch include {
		case "Object":
			data, err := encode(res, obj)
			if err != nil {
				return nil, err
			}
			row.Object = runtime.RawExtension{Raw: data}
		case "Metadata":
			pm := metav1.PartialObjectMetadata{
				TypeMeta:   metav1.TypeMeta{Kind: "PartialObjectMetadata", APIVersion: "meta.k8s.io/v1"},
				ObjectMeta: objectMetaOf(acc),
			}
			data, _ := json.Marshal(pm)
			row.Object = runtime.RawExtension{Raw: data}
		}
		t.Rows = append(t.Rows, row)
	}
	return t, nil
}

func objectMetaOf(acc metav1.Object) metav1.ObjectMeta {
	return metav1.ObjectMeta{
		Name: acc.GetName(), GenerateName: acc.GetGenerateName(), Namespace: acc.GetNamespace(),
		UID: acc.GetUID(), ResourceVersion: acc.GetResourceVersion(), Generation: acc.GetGeneration(),
		CreationTimestamp: acc.GetCreationTimestamp(), DeletionTimestamp: acc.GetDeletionTimestamp(),
		DeletionGracePeriodSeconds: acc.GetDeletionGracePeriodSeconds(), Labels: acc.GetLabels(),
		Annotations: acc.GetAnnotations(), OwnerReferences: acc.GetOwnerReferences(),
		Finalizers: acc.GetFinalizers(), ManagedFields: acc.GetManagedFields(),
	}
}

type metaOnly struct {
	Metadata metav1.ObjectMeta `json:"metadata"`
}

func partialMeta(res *registry.Resource, value []byte, rev int64) (*metav1.PartialObjectMetadata, error) {
	var m metaOnly
	if err := json.Unmarshal(value, &m); err != nil {
		return nil, err
	}
	m.Metadata.ResourceVersion = strconv.FormatInt(rev, 10)
	return &metav1.PartialObjectMetadata{
		TypeMeta:   metav1.TypeMeta{Kind: "PartialObjectMetadata", APIVersion: "meta.k8s.io/v1"},
		ObjectMeta: m.Metadata,
	}, nil
}

func partialMetaList(res *registry.Resource, lr *listResult) (*metav1.PartialObjectMetadataList, error) {
	out := &metav1.PartialObjectMetadataList{
		TypeMeta: metav1.TypeMeta{Kind: "PartialObjectMetadataList", APIVersion: "meta.k8s.io/v1"},
		ListMeta: metav1.ListMeta{ResourceVersion: strconv.FormatInt(lr.rev, 10), Continue: lr.cont, RemainingItemCount: lr.remaining},
		Items:    make([]metav1.PartialObjectMetadata, 0, len(lr.items)),
	}
	for _, it := range lr.items {
		pm, err := partialMeta(res, it.value, it.rev)
		if err != nil {
			return nil, err
		}
		out.Items = append(out.Items, *pm)
	}
	return out, nil
}

// Age renders the time since t as kubectl does ("5m", "3d").
func Age(t metav1.Time) string {
	if t.IsZero() {
		return "<unknown>"
	}
	return duration.HumanDuration(time.Since(t.Time))
}
