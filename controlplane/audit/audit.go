package audit

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/skiffhq/skiff/controlplane/apiserver"
	authnv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/yaml"
)

// HeaderAuditID carries the audit ID on responses (and may set it on
// requests), as upstream.
const HeaderAuditID = "Audit-Id"

// maxBodyLog caps a request or response body copied into an event.
const maxBodyLog = 3 << 20

// Event is upstream's audit.k8s.io/v1 Event.
type Event struct {
	Kind                     string            `json:"kind"`
	APIVersion               string            `json:"apiVersion"`
	Level                    Level             `json:"level"`
	AuditID                  types.UID         `json:"auditID"`
	Stage                    Stage             `json:"stage"`
	RequestURI               string            `json:"requestURI"`
	Verb                     string            `json:"verb"`
	User                     authnv1.UserInfo  `json:"user"`
	ImpersonatedUser         *authnv1.UserInfo `json:"impersonatedUser,omitempty"`
	SourceIPs                []string          `json:"sourceIPs,omitempty"`
	UserAgent                string            `json:"userAgent,omitempty"`
	ObjectRef                *ObjectReference  `json:"objectRef,omitempty"`
	ResponseStatus           *metav1.Status    `json:"responseStatus,omitempty"`
	RequestObject            json.RawMessage   `json:"requestObject,omitempty"`
	ResponseObject           json.RawMessage   `json:"responseObject,omitempty"`
	RequestReceivedTimestamp metav1.MicroTime  `json:"requestReceivedTimestamp"`
	StageTimestamp           metav1.MicroTime  `json:"stageTimestamp"`
	Annotations              map[string]string `json:"annotations,omitempty"`
}

// ObjectReference is upstream's audit ObjectReference.
type ObjectReference struct {
	Resource        string `json:"resource,omitempty"`
	Namespace       string `json:"namespace,omitempty"`
	Name            string `json:"name,omitempty"`
	UID             string `json:"uid,omitempty"`
	APIGroup        string `json:"apiGroup,omitempty"`
	APIVersion      string `json:"apiVersion,omitempty"`
	ResourceVersion string `json:"resourceVersion,omitempty"`
	Subresource     string `json:"subresource,omitempty"`
}

// Annotation keys of the authorization decision, as upstream.
const (
	AnnotationDecision = "authorization.k8s.io/decision"
	AnnotationReason   = "authorization.k8s.io/reason"
)

// Logger writes events as JSON lines.
type Logger struct {
	policy *Policy
	log    *slog.Logger

	mu  sync.Mutex
	out *bufio.Writer
	f   io.Closer
}

// Open starts an audit log at path ("-" = stdout) with policy (nil = the
// default policy).
func Open(path string, policy *Policy, log *slog.Logger) (*Logger, error) {
	if policy == nil {
		policy = DefaultPolicy()
	}
	if log == nil {
		log = slog.Default()
	}
	l := &Logger{policy: policy, log: log.With("component", "audit")}
	if path == "-" {
		l.out = bufio.NewWriter(os.Stdout)
		return l, nil
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open audit log: %w", err)
	}
	l.out, l.f = bufio.NewWriter(f), f
	return l, nil
}

// Close flushes and closes the log.
func (l *Logger) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	err := l.out.Flush()
	if l.f != nil {
		if cerr := l.f.Close(); err == nil {
			err = cerr
		}
	}
	return err
}

func (l *Logger) write(ev *Event) {
	ev.StageTimestamp = metav1.NewMicroTime(time.Now())
	b, err := json.Marshal(ev)
	if err != nil {
		l.log.Error("encode audit event", "auditID", ev.AuditID, "err", err)
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	_, _ = l.out.Write(b)
	_ = l.out.WriteByte('\n')
	if err := l.out.Flush(); err != nil {
		l.log.Error("write audit event", "auditID", ev.AuditID, "err", err)
	}
}

// Middleware audits each request; it runs after authentication (it reads
// the authenticated user) and before impersonation and authorization,
// which report back through an apiserver.AuditRecord.
func (l *Logger) Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		received := time.Now()
		id := r.Header.Get(HeaderAuditID)
		if id == "" {
			id = uuid.NewString()
		}
		w.Header().Set(HeaderAuditID, id)
		user, _ := apiserver.UserFrom(r.Context())
		info := apiserver.ParseRequestInfo(r)
		d := l.policy.evaluate(user, info)
		if d.level == LevelNone {
			next.ServeHTTP(w, r)
			return
		}
		if sensitive(info) && LevelMetadata.Less(d.level) {
			d.level = LevelMetadata
		}
		ev := &Event{
			Kind:                     "Event",
			APIVersion:               "audit.k8s.io/v1",
			Level:                    d.level,
			AuditID:                  types.UID(id),
			RequestURI:               r.URL.RequestURI(),
			Verb:                     info.Verb,
			User:                     userInfo(user),
			SourceIPs:                sourceIPs(r),
			UserAgent:                r.UserAgent(),
			ObjectRef:                objectRef(info),
			RequestReceivedTimestamp: metav1.NewMicroTime(received),
		}
		if d.level == LevelRequest || d.level == LevelRequestResponse {
			if r.Body != nil && r.Body != http.NoBody {
				body, err := io.ReadAll(io.LimitReader(r.Body, maxBodyLog+1))
				rest := r.Body
				r.Body = struct {
					io.Reader
					io.Closer
				}{io.MultiReader(bytes.NewReader(body), rest), rest}
				if err == nil && len(body) <= maxBodyLog {
					ev.RequestObject = toJSON(body, r.Header.Get("Content-Type"))
				}
			}
		}
		omit := func(s Stage) bool {
			for _, o := range d.omitStages {
				if o == s {
					return true
				}
			}
			return false
		}
		emit := func(s Stage) {
			if omit(s) {
				return
			}
			e := *ev
			e.Stage = s
			l.write(&e)
		}
		emit(StageRequestReceived)

		rec := &apiserver.AuditRecord{}
		rw := &recorder{ResponseWriter: w, capture: d.level == LevelRequestResponse && info.Verb != "watch"}
		if info.Verb == "watch" || info.Subresource == "exec" || info.Subresource == "attach" || info.Subresource == "portforward" || info.Subresource == "proxy" {
			rw.onStart = func(code int) {
				ev.ResponseStatus = &metav1.Status{Code: int32(code)}
				l.annotate(ev, rec)
				emit(StageResponseStarted)
			}
		}
		defer func() {
			if v := recover(); v != nil {
				ev.ResponseStatus = &metav1.Status{Code: http.StatusInternalServerError, Status: metav1.StatusFailure, Reason: metav1.StatusReasonInternalError,
					Message: fmt.Sprintf("APIServer panic'd: %v", v)}
				l.annotate(ev, rec)
				emit(StagePanic)
				panic(v)
			}
		}()
		next.ServeHTTP(rw, r.WithContext(apiserver.WithAuditRecord(r.Context(), rec)))

		code := rw.code
		if code == 0 {
			code = http.StatusOK
		}
		ev.ResponseStatus = responseStatus(code, rw.body.Bytes(), rw.Header().Get("Content-Type"))
		if rw.capture && !rw.overflow && rw.body.Len() > 0 && code < 300 {
			ev.ResponseObject = toJSON(rw.body.Bytes(), rw.Header().Get("Content-Type"))
		}
		l.annotate(ev, rec)
		emit(StageResponseComplete)
	})
}

// annotate fills the impersonated user, the authorization decision and
// the annotations admission added.
func (l *Logger) annotate(ev *Event, rec *apiserver.AuditRecord) {
	ev.Annotations = rec.Annotations()
	u, decided, allowed, reason := rec.Authorization()
	if !decided {
		return
	}
	if u != nil && (u.Name != ev.User.Username || !sameGroups(u.Groups, ev.User.Groups)) {
		iu := userInfo(u)
		ev.ImpersonatedUser = &iu
	}
	if ev.Annotations == nil {
		ev.Annotations = map[string]string{}
	}
	ev.Annotations[AnnotationDecision] = "forbid"
	if allowed {
		ev.Annotations[AnnotationDecision] = "allow"
	}
	ev.Annotations[AnnotationReason] = reason
}

func sameGroups(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func userInfo(u *apiserver.UserInfo) authnv1.UserInfo {
	if u == nil {
		return authnv1.UserInfo{Username: "system:anonymous", Groups: []string{"system:unauthenticated"}}
	}
	out := authnv1.UserInfo{Username: u.Name, UID: u.UID, Groups: u.Groups}
	if len(u.Extra) > 0 {
		out.Extra = map[string]authnv1.ExtraValue{}
		for k, v := range u.Extra {
			out.Extra[k] = v
		}
	}
	return out
}

func objectRef(info *apiserver.RequestInfo) *ObjectReference {
	if !info.IsResourceRequest {
		return nil
	}
	return &ObjectReference{
		Resource:    info.Resource,
		Namespace:   info.Namespace,
		Name:        info.Name,
		APIGroup:    info.APIGroup,
		APIVersion:  info.APIVersion,
		Subresource: info.Subresource,
	}
}

// sourceIPs lists X-Forwarded-For, X-Real-Ip and the peer, as upstream.
func sourceIPs(r *http.Request) []string {
	var ips []string
	add := func(s string) {
		s = strings.TrimSpace(s)
		if ip := net.ParseIP(s); ip != nil {
			for _, have := range ips {
				if have == ip.String() {
					return
				}
			}
			ips = append(ips, ip.String())
		}
	}
	for _, v := range strings.Split(r.Header.Get("X-Forwarded-For"), ",") {
		add(v)
	}
	add(r.Header.Get("X-Real-Ip"))
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	add(host)
	return ips
}

// responseStatus is the event's responseStatus: the code, plus status,
// reason and message of a failure (from the Status body when there is one).
func responseStatus(code int, body []byte, contentType string) *metav1.Status {
	st := &metav1.Status{Code: int32(code)}
	if code < 300 {
		return st
	}
	st.Status = metav1.StatusFailure
	var got metav1.Status
	if raw := toJSON(body, contentType); raw != nil && json.Unmarshal(raw, &got) == nil && got.Kind == "Status" {
		st.Message, st.Reason, st.Details = got.Message, got.Reason, got.Details
	}
	return st
}

// toJSON returns a body as JSON: JSON as is, YAML converted, Kubernetes
// protobuf decoded through the built-in scheme; nil when not possible.
func toJSON(body []byte, contentType string) json.RawMessage {
	mt, _, _ := mime.ParseMediaType(contentType)
	switch {
	case len(body) == 0:
		return nil
	case mt == "application/vnd.kubernetes.protobuf":
		obj, _, err := scheme.Codecs.UniversalDeserializer().Decode(body, nil, nil)
		if err != nil {
			return nil
		}
		b, err := json.Marshal(obj)
		if err != nil {
			return nil
		}
		return b
	case strings.Contains(mt, "yaml"):
		b, err := yaml.YAMLToJSON(body)
		if err != nil {
			return nil
		}
		return b
	default:
		if !json.Valid(body) {
			return nil
		}
		return append(json.RawMessage(nil), bytes.TrimSpace(body)...)
	}
}

// recorder captures the status code and, when asked, the response body.
type recorder struct {
	http.ResponseWriter
	code     int
	capture  bool
	overflow bool
	body     bytes.Buffer
	onStart  func(code int)
}

func (w *recorder) WriteHeader(code int) {
	if w.code == 0 {
		w.code = code
		if w.onStart != nil && code < 300 {
			w.onStart(code)
		}
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *recorder) Write(b []byte) (int, error) {
	if w.code == 0 {
		w.WriteHeader(http.StatusOK)
	}
	if w.capture && !w.overflow {
		if w.body.Len()+len(b) > maxBodyLog {
			w.overflow = true
			w.body.Reset()
		} else {
			w.body.Write(b)
		}
	} else if w.code >= 300 && w.body.Len()+len(b) <= maxBodyLog {
		// failures: keep the Status for responseStatus.
		w.body.Write(b)
	}
	return w.ResponseWriter.Write(b)
}

// Flush supports streaming (watch).
func (w *recorder) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Hijack supports connection upgrades (exec, attach, port-forward).
func (w *recorder) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	h, ok := w.ResponseWriter.(http.Hijacker)
	if !ok {
		return nil, nil, fmt.Errorf("audit: response writer cannot hijack")
	}
	if w.code == 0 {
		w.code = http.StatusSwitchingProtocols
	}
	return h.Hijack()
}

// Unwrap lets http.ResponseController reach the connection.
func (w *recorder) Unwrap() http.ResponseWriter { return w.ResponseWriter }
