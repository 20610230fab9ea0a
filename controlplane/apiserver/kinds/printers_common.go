package kinds

// Server-side table printing (what `kubectl get` shows). Each printers_*.go
// file registers one registry.TableConvertor per GroupKind in printers,
// with the column definitions and cell values kube-apiserver's printers
// produce. The server always renders the wide cells too (kube-apiserver
// prints with Wide set); kubectl hides Priority 1 columns unless -o wide.

import (
	"fmt"
	"strings"
	"time"

	"github.com/skiffhq/skiff/controlplane/apiserver/registry"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/duration"
)

// Descriptions shared by most kinds' columns.
var (
	tblNameDesc = metav1.ObjectMeta{}.SwaggerDoc()["name"]
	tblAgeDesc  = metav1.ObjectMeta{}.SwaggerDoc()["creationTimestamp"]
)

// Shared column descriptions of pod-template based workloads.
const (
	tblContainersDesc = "Names of each container in the template."
	tblImagesDesc     = "Images referenced by each container in the template."
)

// tblNow is the clock used for ages; tests pin it.
var tblNow = time.Now

func tblName() metav1.TableColumnDefinition {
	return metav1.TableColumnDefinition{Name: "Name", Type: "string", Format: "name", Description: tblNameDesc}
}

func tblAge() metav1.TableColumnDefinition {
	return metav1.TableColumnDefinition{Name: "Age", Type: "string", Description: tblAgeDesc}
}

func tblCol(name, typ, desc string) metav1.TableColumnDefinition {
	return metav1.TableColumnDefinition{Name: name, Type: typ, Description: desc}
}

// tblWide is a column kubectl shows only with -o wide.
func tblWide(name, typ, desc string) metav1.TableColumnDefinition {
	return metav1.TableColumnDefinition{Name: name, Type: typ, Description: desc, Priority: 1}
}

// tblSince renders the time elapsed since t the way kubectl does ("5m",
// "3d"), or "<unknown>" for a zero time.
func tblSince(t metav1.Time) string {
	if t.IsZero() {
		return "<unknown>"
	}
	return duration.HumanDuration(tblNow().Sub(t.Time))
}

func tblSinceMicro(t metav1.MicroTime) string {
	if t.IsZero() {
		return "<unknown>"
	}
	return duration.HumanDuration(tblNow().Sub(t.Time))
}

// tblContainers lays out container names and images on one line each.
func tblContainers(cs []corev1.Container) (names, images string) {
	n := make([]string, len(cs))
	im := make([]string, len(cs))
	for i, c := range cs {
		n[i], im[i] = c.Name, c.Image
	}
	return strings.Join(n, ","), strings.Join(im, ",")
}

// tblListMore joins up to max items and summarises the rest.
func tblListMore(list []string, count, max int, empty string) string {
	if count > max {
		return fmt.Sprintf("%s + %d more...", strings.Join(list[:max], ","), count-max)
	}
	if len(list) == 0 {
		return empty
	}
	return strings.Join(list, ",")
}

func tblBoolPtr(b *bool) string {
	if b == nil {
		return "<unset>"
	}
	if *b {
		return "True"
	}
	return "False"
}

// tblRegister installs a printer for group/kind whose row function takes
// the kind's typed object.
func tblRegister[T runtime.Object](group, kind string, cols []metav1.TableColumnDefinition, row func(T) []interface{}) {
	printers[gk(group, kind)] = &registry.TableConvertor{
		Columns: cols,
		Row: func(obj runtime.Object) []interface{} {
			if o, ok := obj.(T); ok {
				return row(o)
			}
			return tblFallbackRow(obj, len(cols))
		},
	}
}

// tblFallbackRow keeps the row shape valid for an unexpected object type:
// the name, then empty cells.
func tblFallbackRow(obj runtime.Object, n int) []interface{} {
	cells := make([]interface{}, n)
	for i := range cells {
		cells[i] = ""
	}
	if acc, err := meta.Accessor(obj); err == nil && n > 0 {
		cells[0] = acc.GetName()
	}
	return cells
}

// tblDefaultColumns are kube-apiserver's columns for kinds without a
// printer of their own (roles, limit ranges, CRDs).
func tblDefaultColumns() []metav1.TableColumnDefinition {
	return []metav1.TableColumnDefinition{
		tblName(),
		{Name: "Created At", Type: "date", Description: tblAgeDesc},
	}
}

func tblDefaultRow(obj runtime.Object) []interface{} {
	acc, err := meta.Accessor(obj)
	if err != nil {
		return []interface{}{"", ""}
	}
	return []interface{}{acc.GetName(), acc.GetCreationTimestamp().UTC().Format(time.RFC3339)}
}
