package apiserver

import (
	"reflect"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
)

// structField returns the addressable field name of a typed object, or an
// invalid value.
func structField(obj runtime.Object, name string) reflect.Value {
	v := reflect.ValueOf(obj)
	if v.Kind() != reflect.Pointer || v.Elem().Kind() != reflect.Struct {
		return reflect.Value{}
	}
	return v.Elem().FieldByName(name)
}

// copyPart copies the top-level part ("status" or "spec") from src to dst.
func copyPart(dst, src runtime.Object, part string) {
	if du, ok := dst.(*unstructured.Unstructured); ok {
		su, _ := src.(*unstructured.Unstructured)
		var val interface{}
		found := false
		if su != nil {
			val, found = su.Object[part]
		}
		if found {
			du.Object[part] = runtime.DeepCopyJSONValue(val)
		} else {
			delete(du.Object, part)
		}
		return
	}
	fieldName := exportName(part)
	df := structField(dst, fieldName)
	sf := structField(src, fieldName)
	if df.IsValid() && sf.IsValid() && df.CanSet() {
		df.Set(sf)
	}
}

// clearPart zeroes the top-level part of obj.
func clearPart(obj runtime.Object, part string) {
	if u, ok := obj.(*unstructured.Unstructured); ok {
		delete(u.Object, part)
		return
	}
	f := structField(obj, exportName(part))
	if f.IsValid() && f.CanSet() {
		f.Set(reflect.Zero(f.Type()))
	}
}

// partEqual compares the top-level part of two objects.
func partEqual(a, b runtime.Object, part string) bool {
	if au, ok := a.(*unstructured.Unstructured); ok {
		bu, _ := b.(*unstructured.Unstructured)
		if bu == nil {
			return false
		}
		return reflect.DeepEqual(au.Object[part], bu.Object[part])
	}
	fa := structField(a, exportName(part))
	fb := structField(b, exportName(part))
	if !fa.IsValid() || !fb.IsValid() {
		return true
	}
	return reflect.DeepEqual(fa.Interface(), fb.Interface())
}

// nonMetaEqual compares everything but metadata and status (custom
// resources bump their generation on any such change).
func nonMetaEqual(a, b *unstructured.Unstructured) bool {
	for k, v := range a.Object {
		if k == "metadata" || k == "status" || k == "apiVersion" || k == "kind" {
			continue
		}
		if !reflect.DeepEqual(v, b.Object[k]) {
			return false
		}
	}
	for k := range b.Object {
		if k == "metadata" || k == "status" || k == "apiVersion" || k == "kind" {
			continue
		}
		if _, ok := a.Object[k]; !ok {
			return false
		}
	}
	return true
}

func hasPart(obj runtime.Object, part string) bool {
	if _, ok := obj.(*unstructured.Unstructured); ok {
		return true
	}
	return structField(obj, exportName(part)).IsValid()
}

func exportName(part string) string {
	if part == "" {
		return ""
	}
	return string(part[0]-'a'+'A') + part[1:]
}
