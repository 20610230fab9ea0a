package apiserver

import (
	"context"
	"net/http"
	"strings"
	"sync"
)

type warningsKey struct{}

// warningSink collects the Warning headers of one request.
type warningSink struct {
	mu   sync.Mutex
	h    http.Header
	seen map[string]bool
}

// withWarningHeaders lets the code below it (admission plugins, webhooks)
// add upstream-style "299" Warning headers with AddWarning.
func withWarningHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sink := &warningSink{h: w.Header(), seen: map[string]bool{}}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), warningsKey{}, sink)))
	})
}

// AddWarning adds a Warning header to the response of the request ctx
// belongs to; identical messages are sent once. Outside a request it does
// nothing. It must be called before the response is written.
func AddWarning(ctx context.Context, msg string) {
	sink, ok := ctx.Value(warningsKey{}).(*warningSink)
	if !ok || msg == "" {
		return
	}
	sink.mu.Lock()
	defer sink.mu.Unlock()
	if sink.seen[msg] {
		return
	}
	sink.seen[msg] = true
	sink.h.Add("Warning", `299 - "`+escapeWarning(msg)+`"`)
}

// escapeWarning quotes msg as upstream's warning headers do: backslash
// and double quote are escaped, control characters become spaces, and the
// text is cut at 4 KiB.
func escapeWarning(msg string) string {
	if len(msg) > 4096 {
		msg = msg[:4096]
	}
	var b strings.Builder
	for _, r := range msg {
		switch {
		case r == '"' || r == '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case r < 0x20 || r == 0x7f:
			b.WriteByte(' ')
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}
