package apiserver

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strconv"
	"time"

	"github.com/skiffhq/skiff/controlplane/apiserver/registry"
	"github.com/skiffhq/skiff/controlplane/storage"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// handleWatch streams watch events as newline-delimited JSON, or as
// length-delimited protobuf frames when the client negotiated protobuf.
func (s *Server) handleWatch(w http.ResponseWriter, r *http.Request, res *registry.Resource, ns, name string) {
	q := r.URL.Query()
	sel, err := parseSelectors(r, res)
	if err != nil {
		writeStatus(w, statusFor(err))
		return
	}
	if name != "" {
		// Watch of one object: the legacy /watch/.../name path.
		fs, _ := parseFieldSelectorFor(name)
		sel.field = fs
	}
	rv := q.Get("resourceVersion")
	sendInitial := q.Get("sendInitialEvents")
	bookmarks := q.Get("allowWatchBookmarks") == "true"
	opts := storage.WatchOptions{Within: scopePrefix(res, ns), Bookmarks: bookmarks}
	if !sel.empty() {
		opts.Filter = func(o *storage.Object) bool { return sel.matches(o.Attrs) }
	}
	switch {
	case sendInitial == "true":
		if q.Get("resourceVersionMatch") != "NotOlderThan" {
			writeStatus(w, statusFor(apierrors.NewBadRequest("sendInitialEvents requires resourceVersionMatch=NotOlderThan")))
			return
		}
		if !bookmarks {
			writeStatus(w, statusFor(apierrors.NewBadRequest("sendInitialEvents requires allowWatchBookmarks=true")))
			return
		}
		if err := s.waitForRV(r, rv); err != nil {
			writeStatus(w, statusFor(err))
			return
		}
		opts.Initial, opts.InitialEnd = true, true
	case rv == "" || rv == "0":
		if rv == "" {
			if _, err := s.cache.WaitFresh(r.Context()); err != nil {
				writeStatus(w, statusFor(err))
				return
			}
		}
		opts.Initial = true
	default:
		n, err := strconv.ParseInt(rv, 10, 64)
		if err != nil || n < 0 {
			writeStatus(w, statusFor(badRequest("invalid resourceVersion %q", rv)))
			return
		}
		if err := s.cache.WaitRev(r.Context(), n); err != nil {
			writeStatus(w, statusFor(apierrors.NewTimeoutError(fmt.Sprintf("Too large resource version: %d, current: %d", n, s.cache.Rev()), 1)))
			return
		}
		opts.FromRev = n
	}
	timeout := 30*time.Minute + time.Duration(rand.Int64N(int64(30*time.Minute)))
	if ts := q.Get("timeoutSeconds"); ts != "" {
		n, err := strconv.ParseInt(ts, 10, 64)
		if err != nil || n < 0 {
			writeStatus(w, statusFor(badRequest("invalid timeoutSeconds %q", ts)))
			return
		}
		if n > 0 {
			timeout = time.Duration(n) * time.Second
		}
	}
	out := outputOf(r)
	table := out.rep == asTable
	partial := out.rep == asPartialMeta
	proto := out.proto && !table
	flusher, _ := w.(http.Flusher)
	if proto {
		w.Header().Set("Content-Type", protobufMediaType+";stream=watch")
	} else {
		w.Header().Set("Content-Type", "application/json")
	}
	w.Header().Set("Transfer-Encoding", "chunked")

	watcher, err := s.cache.Watch(res.StorageKeyPrefix, opts)
	if err != nil {
		if errors.Is(err, storage.ErrExpired) {
			// Like kube-apiserver's watch cache: a 200 whose only event is
			// an ERROR carrying 410 Gone.
			w.WriteHeader(http.StatusOK)
			st := apierrors.NewResourceExpired(fmt.Sprintf("too old resource version: %s (%d)", rv, s.cache.Rev())).ErrStatus
			st.Kind, st.APIVersion = "Status", "v1"
			if proto {
				_, _ = w.Write(protoStatusFrame(&st))
				return
			}
			b, _ := json.Marshal(map[string]any{"type": "ERROR", "object": st})
			_, _ = w.Write(append(b, '\n'))
			return
		}
		writeStatus(w, statusFor(err))
		return
	}
	defer watcher.Stop()
	w.WriteHeader(http.StatusOK)
	if flusher != nil {
		flusher.Flush()
	}
	s.metrics.watchers.Inc()
	defer s.metrics.watchers.Dec()

	send := func(e *storage.Event) error {
		var data []byte
		if table {
			b, err := s.tableEvent(r, res, e)
			if err != nil {
				return err
			}
			if b == nil {
				return nil
			}
			data = b
		} else if partial && proto {
			b, err := partialMetaProtoEvent(res, e)
			if err != nil {
				return err
			}
			data = b
		} else if partial {
			b, err := partialMetaEvent(res, e)
			if err != nil {
				return err
			}
			data = b
		} else if proto {
			if res.Hooks.FromStorage != nil || e.Type == storage.Bookmark {
				b, err := protoEvent(res, e)
				if err != nil {
					return err
				}
				data = b
			} else {
				var perr error
				data = e.AltEncoded(func(e *storage.Event) []byte {
					b, err := protoEvent(res, e)
					perr = err
					return b
				})
				if data == nil {
					if perr == nil {
						perr = errors.New("cannot encode watch event as protobuf")
					}
					return perr
				}
			}
		} else {
			if res.Hooks.FromStorage != nil || e.Type == storage.Bookmark {
				// Versions sharing a bucket render events differently, and
				// one bookmark event goes to the watchers of every
				// resource: do not share their encoding.
				data = encodeEvent(res, e)
			} else {
				data = e.Encoded(func(e *storage.Event) []byte { return encodeEvent(res, e) })
			}
		}
		_, err := w.Write(data)
		return err
	}
	pending := watcher.Pending()
	for i, e := range pending {
		if err := send(e); err != nil {
			return
		}
		if flusher != nil && (i%64 == 63 || i == len(pending)-1) {
			flusher.Flush()
		}
	}
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	ctx := r.Context()
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
			return
		case e, ok := <-watcher.Events():
			if !ok {
				return
			}
			if err := send(e); err != nil {
				return
			}
			// Drain what is already queued before flushing once.
			for more := true; more; {
				select {
				case e, ok := <-watcher.Events():
					if !ok {
						if flusher != nil {
							flusher.Flush()
						}
						return
					}
					if err := send(e); err != nil {
						return
					}
				default:
					more = false
				}
			}
			if flusher != nil {
				flusher.Flush()
			}
		}
	}
}

func (s *Server) waitForRV(r *http.Request, rv string) error {
	switch rv {
	case "":
		_, err := s.cache.WaitFresh(r.Context())
		return err
	case "0":
		return nil
	}
	n, err := strconv.ParseInt(rv, 10, 64)
	if err != nil || n < 0 {
		return badRequest("invalid resourceVersion %q", rv)
	}
	if err := s.cache.WaitRev(r.Context(), n); err != nil {
		return apierrors.NewTimeoutError(fmt.Sprintf("Too large resource version: %d, current: %d", n, s.cache.Rev()), 1)
	}
	return nil
}

// encodeEvent renders one watch event line.
func encodeEvent(res *registry.Resource, e *storage.Event) []byte {
	var buf bytes.Buffer
	buf.WriteString(`{"type":"`)
	buf.WriteString(string(e.Type))
	buf.WriteString(`","object":`)
	if e.Type == storage.Bookmark {
		buf.WriteString(`{"kind":`)
		writeJSONString(&buf, res.Kind)
		buf.WriteString(`,"apiVersion":`)
		writeJSONString(&buf, res.GroupVersion())
		buf.WriteString(`,"metadata":{"resourceVersion":"`)
		buf.WriteString(strconv.FormatInt(e.Rev, 10))
		buf.WriteString(`"`)
		if e.InitialEventsEnd {
			buf.WriteString(`,"annotations":{"k8s.io/initial-events-end":"true"}`)
		}
		buf.WriteString(`}}`)
	} else {
		buf.Write(served(res, e.Object.Value, e.Rev))
	}
	buf.WriteString("}\n")
	return buf.Bytes()
}

// tableEvent renders an event whose object is a one-row Table, as kubectl
// get -w asks for. Bookmarks are dropped.
func (s *Server) tableEvent(r *http.Request, res *registry.Resource, e *storage.Event) ([]byte, error) {
	if e.Type == storage.Bookmark {
		return nil, nil
	}
	t, err := s.toTable(res, []storedItem{{value: e.Object.Value, rev: e.Rev}}, r, "", nil)
	if err != nil {
		return nil, err
	}
	t.ResourceVersion = strconv.FormatInt(e.Rev, 10)
	b, err := json.Marshal(metav1.WatchEvent{Type: string(e.Type), Object: rawExt(t)})
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}
