package apiserver

import (
	"encoding/json"
	"strconv"

	"github.com/skiffhq/skiff/controlplane/apiserver/registry"
	"github.com/skiffhq/skiff/controlplane/storage"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// partialMetaEvent renders a watch event whose object is a
// meta.k8s.io/v1 PartialObjectMetadata, as metadata informers ask for
// (Accept: application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1).
func partialMetaEvent(res *registry.Resource, e *storage.Event) ([]byte, error) {
	var obj any
	if e.Type == storage.Bookmark {
		pm := metav1.PartialObjectMetadata{TypeMeta: metav1.TypeMeta{Kind: "PartialObjectMetadata", APIVersion: "meta.k8s.io/v1"}}
		pm.ResourceVersion = strconv.FormatInt(e.Rev, 10)
		if e.InitialEventsEnd {
			pm.Annotations = map[string]string{metav1.InitialEventsAnnotationKey: "true"}
		}
		obj = pm
	} else {
		pm, err := partialMeta(res, e.Object.Value, e.Rev)
		if err != nil {
			return nil, err
		}
		obj = pm
	}
	b, err := json.Marshal(map[string]any{"type": string(e.Type), "object": obj})
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// partialMetaProtoEvent is partialMetaEvent as a protobuf watch frame.
func partialMetaProtoEvent(res *registry.Resource, e *storage.Event) ([]byte, error) {
	pm := &metav1.PartialObjectMetadata{TypeMeta: metav1.TypeMeta{Kind: "PartialObjectMetadata", APIVersion: "meta.k8s.io/v1"}}
	if e.Type == storage.Bookmark {
		pm.ResourceVersion = strconv.FormatInt(e.Rev, 10)
		if e.InitialEventsEnd {
			pm.Annotations = map[string]string{metav1.InitialEventsAnnotationKey: "true"}
		}
	} else {
		p, err := partialMeta(res, e.Object.Value, e.Rev)
		if err != nil {
			return nil, err
		}
		pm = p
	}
	b, err := encodeProto(pm)
	if err != nil {
		return nil, err
	}
	return protoFrame(string(e.Type), b), nil
}
