package apiserver

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/skiffhq/skiff/controlplane/storage"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestStatusForStorageErrors: each storage failure answers with its own
// code and a message that says whether the write was stored.
func TestStatusForStorageErrors(t *testing.T) {
	for _, tc := range []struct {
		err    error
		code   int32
		reason metav1.StatusReason
		says   string
	}{
		{fmt.Errorf("create /k: %w: etcdserver: no leader", storage.ErrUnavailable), http.StatusServiceUnavailable, metav1.StatusReasonServiceUnavailable, "not stored"},
		{fmt.Errorf("create /k: %w: etcdserver: request timed out", storage.ErrUncertain), http.StatusGatewayTimeout, metav1.StatusReasonTimeout, "may or may not have been stored"},
		{fmt.Errorf("list: %w", context.DeadlineExceeded), http.StatusGatewayTimeout, metav1.StatusReasonTimeout, "did not complete"},
		{fmt.Errorf("get /k: %w", context.Canceled), http.StatusServiceUnavailable, metav1.StatusReasonServiceUnavailable, "cancelled before it completed"},
		{fmt.Errorf("create /k: %w", storage.ErrTooLarge), http.StatusRequestEntityTooLarge, metav1.StatusReasonRequestEntityTooLarge, "too large"},
		{fmt.Errorf("create /registry/k: %w: /var/lib/skiff has 1.0 MiB free", storage.ErrNoSpace), http.StatusInsufficientStorage, "InsufficientStorage", "was not stored: storage: no space left for writes: /var/lib/skiff has 1.0 MiB free"},
		{errors.New("disk on fire"), http.StatusInternalServerError, metav1.StatusReasonInternalError, "an error on the server"},
	} {
		st := statusFor(tc.err)
		if st.Code != tc.code || st.Reason != tc.reason || !strings.Contains(st.Message, tc.says) {
			t.Errorf("%v: %d %s %q; want %d %s saying %q", tc.err, st.Code, st.Reason, st.Message, tc.code, tc.reason, tc.says)
		}
		if strings.Contains(st.Message, "disk on fire") {
			t.Errorf("the internal error's details reached the client: %q", st.Message)
		}
	}
}
