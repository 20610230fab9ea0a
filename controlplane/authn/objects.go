package authn

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/skiffhq/skiff/controlplane/apiserver/registry"
	"github.com/skiffhq/skiff/controlplane/storage"
)

// StorageObjects reads live objects from the watch cache and, when the
// cache does not have one, from etcd (upstream's lister-then-live lookup,
// so a just-created object is found).
type StorageObjects struct {
	Registry *registry.Registry
	Cache    *storage.Cache
	Store    *storage.Store
}

var _ Objects = (*StorageObjects)(nil)

type liveMeta struct {
	Metadata struct {
		UID               string     `json:"uid"`
		DeletionTimestamp *time.Time `json:"deletionTimestamp"`
	} `json:"metadata"`
	Spec struct {
		ServiceAccountName string `json:"serviceAccountName"`
		NodeName           string `json:"nodeName"`
	} `json:"spec"`
}

// Get implements Objects.
func (o *StorageObjects) Get(ctx context.Context, resource, ns, name string) (*LiveObject, error) {
	res, ok := o.Registry.Get("", "v1", resource)
	if !ok {
		return nil, fmt.Errorf("resource %s is not served", resource)
	}
	key := res.StorageKeyPrefix + name
	if res.Namespaced {
		key = res.StorageKeyPrefix + ns + "/" + name
	}
	var value []byte
	if obj, _, ok := o.Cache.Get(key); ok {
		value = obj.Value
	} else {
		kv, err := o.Store.Get(ctx, key)
		if errors.Is(err, storage.ErrNotFound) {
			return nil, ErrNotFound
		}
		if err != nil {
			return nil, fmt.Errorf("get %s: %w", resource, err)
		}
		value = kv.Value
	}
	var m liveMeta
	if err := json.Unmarshal(value, &m); err != nil {
		return nil, fmt.Errorf("decode %s: %w", resource, err)
	}
	return &LiveObject{
		UID:                m.Metadata.UID,
		DeletionTimestamp:  m.Metadata.DeletionTimestamp,
		ServiceAccountName: m.Spec.ServiceAccountName,
		NodeName:           m.Spec.NodeName,
	}, nil
}
