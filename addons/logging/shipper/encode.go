package shipper

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"maps"
	"slices"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/skiffhq/skiff/internal/jsonscan"
)

// Meta is the Kubernetes metadata of one container's records, with Fluent
// Bit's kubernetes filter names.
type Meta struct {
	NamespaceName  string            `json:"namespace_name"`
	PodName        string            `json:"pod_name"`
	PodID          string            `json:"pod_id"`
	ContainerName  string            `json:"container_name"`
	ContainerImage string            `json:"container_image,omitempty"`
	Host           string            `json:"host"`
	Labels         map[string]string `json:"labels,omitempty"`
	Annotations    map[string]string `json:"annotations,omitempty"`
	// enc is the JSON of the fields above and index the index of their
	// namespace (see encoded).
	enc    []byte
	index  string
	action []byte
}

// reserved are the document's own top-level keys, which fields lifted from
// a JSON body never replace.
var reserved = map[string]bool{"@timestamp": true, "message": true, "stream": true, "kubernetes": true, "log": true}

// logLine is one reassembled log line.
type logLine struct {
	time time.Time
	// ts, if set, is the text time was parsed from (it points into the
	// line being read, as msg may): encode copies it when it is what
	// formatting time would give (canonicalTime).
	ts     []byte
	stream string
	msg    []byte
	// offset is where the line's first CRI record starts in its file: with
	// the file's identity it names the document (docID).
	offset int64
}

// encode renders the document of a record. With lift, a body that is a
// JSON object has its keys merged into the document's top level (Fluent
// Bit's Merge_Log without Merge_Log_Key), except reserved keys; message
// always keeps the line as written. Invalid UTF-8 is replaced by U+FFFD.
// The lifted fields come last, in key order: rawEnd is where they start, so that the
// document without them (encode with lift false) is buf[:rawEnd] + "}".
func encode(buf *bytes.Buffer, rec *logLine, meta *Meta, lift bool) (lifted bool, rawEnd int) {
	buf.Reset()
	buf.Grow(len(rec.msg) + len(meta.enc) + 96)
	var tb [40]byte
	buf.WriteString(`{"@timestamp":"`)
	if canonicalTime(rec.ts) {
		buf.Write(rec.ts)
	} else {
		buf.Write(rec.time.UTC().AppendFormat(tb[:0], time.RFC3339Nano))
	}
	buf.WriteString(`","stream":`)
	writeString(buf, rec.stream)
	buf.WriteString(`,"message":`)
	writeBytes(buf, rec.msg)
	buf.WriteString(`,"kubernetes":`)
	if meta.enc != nil {
		buf.Write(meta.enc)
	} else {
		m, _ := json.Marshal(meta)
		buf.Write(m)
	}
	rawEnd = buf.Len()
	if lift {
		if fields := jsonObject(rec.msg); fields != nil {
			// In key order: the same line renders the same document.
			for _, k := range slices.Sorted(maps.Keys(fields)) {
				v := fields[k]
				if reserved[k] {
					continue
				}
				buf.WriteByte(',')
				writeString(buf, k)
				buf.WriteByte(':')
				if bytes.ContainsAny(v, "\n\r") {
					// A joined multi-line record's value: a raw newline
					// would end the _bulk line.
					_ = json.Compact(buf, v)
				} else {
					buf.Write(v)
				}
				lifted = true
			}
		}
	}
	buf.WriteByte('}')
	return lifted, rawEnd
}

// canonicalTime reports whether ts has the shape time.RFC3339Nano gives a
// UTC time: 2006-01-02T15:04:05Z, or with a fraction of 1 to 9 digits not
// ending in 0 before the Z. A text of that shape that time.Parse read is
// exactly what formatting its time renders (FuzzCanonicalTime), so the
// CRI timestamp the node agent wrote is copied, not formatted again.
func canonicalTime(ts []byte) bool {
	n := len(ts)
	if n < 20 || n == 21 || n > 30 || ts[n-1] != 'Z' {
		return false
	}
	for i, c := range ts[:19] {
		switch i {
		case 4, 7:
			if c != '-' {
				return false
			}
		case 10:
			if c != 'T' {
				return false
			}
		case 13, 16:
			if c != ':' {
				return false
			}
		default:
			if c < '0' || c > '9' {
				return false
			}
		}
	}
	if n == 20 {
		return true
	}
	if ts[19] != '.' || ts[n-2] == '0' {
		return false
	}
	for _, c := range ts[20 : n-1] {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// rawBody is the document body without the lifted fields (what encode
// with lift false renders), from a body encode rendered with them.
func rawBody(body []byte, rawEnd int) []byte {
	return append(body[:rawEnd:rawEnd], '}')
}

// jsonObject returns the fields of a body that is one JSON object.
func jsonObject(msg []byte) map[string]json.RawMessage {
	b := bytes.TrimSpace(msg)
	if len(b) < 2 || b[0] != '{' || b[len(b)-1] != '}' || !json.Valid(b) {
		return nil
	}
	var m map[string]json.RawMessage
	if json.Unmarshal(b, &m) != nil {
		return nil
	}
	return m
}

// writeString writes s as a JSON string; invalid UTF-8 becomes U+FFFD.
func writeString(buf *bytes.Buffer, s string) {
	if jsonscan.PlainHTMLString(s) == len(s) { // printable ASCII that encoding/json writes as is
		buf.WriteByte('"')
		buf.WriteString(s)
		buf.WriteByte('"')
		return
	}
	if !utf8.ValidString(s) {
		s = string(bytes.ToValidUTF8([]byte(s), []byte("\uFFFD")))
	}
	b, _ := json.Marshal(s)
	buf.Write(b)
}

// writeBytes writes b as a JSON string as writeString does, without
// going through encoding/json for the common printable ASCII text.
func writeBytes(buf *bytes.Buffer, b []byte) {
	if jsonscan.PlainHTML(b) < len(b) {
		writeString(buf, string(b))
		return
	}
	buf.WriteByte('"')
	buf.Write(b)
	buf.WriteByte('"')
}

// encoded renders m's JSON and its documents' action line once, before m
// is shared (encode and newDoc reuse them).
func (m *Meta) encoded() *Meta {
	m.index = IndexPrefix + m.NamespaceName
	m.action = actionPrefix(m.index)
	m.enc = nil
	b, err := json.Marshal(m)
	if err == nil {
		m.enc = b
	}
	return m
}

// actionLine returns the index of m's documents and their action line up
// to the ID (rendered here when m was not encoded).
func (m *Meta) actionLine() (index string, action []byte) {
	if m.action != nil {
		return m.index, m.action
	}
	index = IndexPrefix + m.NamespaceName
	return index, actionPrefix(index)
}

// actionPrefix is the _bulk action line of a document of index, up to its
// _id's value: {"create":{"_index":"<index>","_id":" (the ID, `"}}` and a
// newline follow).
func actionPrefix(index string) []byte {
	var b bytes.Buffer
	b.WriteString(`{"create":{"_index":`)
	writeString(&b, index)
	b.WriteString(`,"_id":"`)
	return b.Bytes()
}

// docID is the document ID of the line starting at offset in the file
// with identity id and fingerprint fp (a reused inode is another file): the same line always gets the same ID, so a re-ship
// after a crash is a 409 the sink answers for a document it has.
func docID(id fileID, fp string, offset int64) string {
	return docIDFrom(docIDPrefix(id, fp), offset)
}

// docIDPrefix is what docID hashes before the offset (a tailer keeps it).
func docIDPrefix(id fileID, fp string) []byte {
	return []byte(id.String() + "\x00" + fp + "\x00")
}

// docIDFrom is docID from its prefix.
func docIDFrom(prefix []byte, offset int64) string {
	var id [32]byte
	appendDocID(id[:0], prefix, offset)
	return string(id[:])
}

// appendDocID appends docIDFrom(prefix, offset) (32 hex digits) to dst.
func appendDocID(dst, prefix []byte, offset int64) []byte {
	var b [128]byte
	h := sha256.Sum256(strconv.AppendInt(append(b[:0], prefix...), offset, 10))
	return hex.AppendEncode(dst, h[:16])
}
