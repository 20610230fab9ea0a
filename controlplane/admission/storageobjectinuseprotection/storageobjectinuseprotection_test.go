package storageobjectinuseprotection

import (
	"context"
	"testing"

	"github.com/skiffhq/skiff/controlplane/apiserver"
	"github.com/skiffhq/skiff/controlplane/apiserver/registry"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

func TestAdmit(t *testing.T) {
	pvcs := &registry.Resource{Plural: "persistentvolumeclaims"}
	pvs := &registry.Resource{Plural: "persistentvolumes"}
	tests := []struct {
		name string
		op   apiserver.Operation
		res  *registry.Resource
		obj  runtime.Object
		want []string
	}{
		{"claim", apiserver.OpCreate, pvcs, &corev1.PersistentVolumeClaim{}, []string{PVCProtectionFinalizer}},
		{"volume", apiserver.OpCreate, pvs, &corev1.PersistentVolume{}, []string{PVProtectionFinalizer}},
		{"already there", apiserver.OpCreate, pvcs, &corev1.PersistentVolumeClaim{ObjectMeta: metav1.ObjectMeta{Finalizers: []string{"x", PVCProtectionFinalizer}}}, []string{"x", PVCProtectionFinalizer}},
		{"update left alone", apiserver.OpUpdate, pvcs, &corev1.PersistentVolumeClaim{}, nil},
		{"other kinds", apiserver.OpCreate, &registry.Resource{Plural: "pods"}, &corev1.Pod{}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := New().Admit(context.Background(), &apiserver.Attributes{Operation: tc.op, Resource: tc.res, Object: tc.obj}); err != nil {
				t.Fatal(err)
			}
			got := tc.obj.(metav1.Object).GetFinalizers()
			if len(got) != len(tc.want) {
				t.Fatalf("finalizers %v, want %v", got, tc.want)
			}
			for i := range got {
				if got[i] != tc.want[i] {
					t.Fatalf("finalizers %v, want %v", got, tc.want)
				}
			}
		})
	}
}
