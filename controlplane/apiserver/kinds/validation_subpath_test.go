package kinds

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// TestVolumeMountSubPathTraversal: subPath and subPathExpr may only
// descend into their volume, and are mutually exclusive, as upstream.
func TestVolumeMountSubPathTraversal(t *testing.T) {
	vols := map[string]corev1.VolumeSource{"v": {EmptyDir: &corev1.EmptyDirVolumeSource{}}}
	for _, tc := range []struct {
		sub, expr string
		want      string // "" = valid
	}{
		{sub: "a/b", want: ""},
		{sub: "a/b..c/..d", want: ""},
		{expr: "$(POD_NAME)/logs", want: ""},
		{sub: "../x", want: "subPath: Invalid value: \"../x\": must not contain '..'"},
		{sub: "a/../../x", want: "must not contain '..'"},
		{sub: "/etc", want: "subPath: Invalid value: \"/etc\": must be a relative path"},
		{expr: "$(POD_NAME)/../..", want: "subPathExpr: Invalid value: \"$(POD_NAME)/../..\": must not contain '..'"},
		{expr: "..", want: "subPathExpr: Invalid value: \"..\": must not contain '..'"},
		{expr: "/$(POD_NAME)", want: "subPathExpr: Invalid value: \"/$(POD_NAME)\": must be a relative path"},
		{sub: "a", expr: "b", want: "subPathExpr and subPath are mutually exclusive"},
	} {
		errs := validateVolumeMounts([]corev1.VolumeMount{{Name: "v", MountPath: "/data", SubPath: tc.sub, SubPathExpr: tc.expr}}, vols, field.NewPath("volumeMounts"))
		got := errs.ToAggregate()
		switch {
		case tc.want == "" && got != nil:
			t.Errorf("subPath %q subPathExpr %q: unexpected %v", tc.sub, tc.expr, got)
		case tc.want != "" && (got == nil || !strings.Contains(got.Error(), tc.want)):
			t.Errorf("subPath %q subPathExpr %q: got %v, want %q", tc.sub, tc.expr, got, tc.want)
		}
	}
}
