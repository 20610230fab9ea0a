package shipper

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"strconv"
	"time"
	"unicode/utf8"
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
	enc   []byte
	index string
}

// reserved are the document's own top-level keys, which fields lifted from
// a JSON body never replace.
var reserved = map[string]bool{"@timestamp": true, "message": true, "stream": true, "kubernetes": true, "log": true}

// logLine is one reassembled log line.
type logLine struct {
	time   time.Time
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
// The lifted fields come last: rawEnd is where they start, so that the
// document without them (encode with lift false) is buf[:rawEnd] + "}".
func encode(buf *bytes.Buffer, rec *logLine, meta *Meta, lift bool) (lifted bool, rawEnd int) {
	buf.Reset()
	buf.Grow(len(rec.msg) + len(meta.enc) + 96)
	var tb [40]byte
	buf.WriteString(`{"@timestamp":"`)
	buf.Write(rec.time.UTC().AppendFormat(tb[:0], time.RFC3339Nano))
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
			for k, v := range fields {
				if reserved[k] {
					continue
				}
				buf.WriteByte(',')
				writeString(buf, k)
				buf.WriteByte(':')
				buf.Write(v)
				lifted = true
			}
		}
	}
	buf.WriteByte('}')
	return lifted, rawEnd
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
	if plainASCII(s) {
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
	if !plainASCII(b) {
		writeString(buf, string(b))
		return
	}
	buf.WriteByte('"')
	buf.Write(b)
	buf.WriteByte('"')
}

// plainASCII reports whether s is printable ASCII that encoding/json
// writes as is (no escapes, none of its HTML-escaped <, >, &).
func plainASCII[T string | []byte](s T) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x80 || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			return false
		}
	}
	return true
}

// encoded renders m's JSON once, before m is shared (encode reuses it).
func (m *Meta) encoded() *Meta {
	m.index = IndexPrefix + m.NamespaceName
	m.enc = nil
	b, err := json.Marshal(m)
	if err == nil {
		m.enc = b
	}
	return m
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
	var b [96]byte
	h := sha256.Sum256(strconv.AppendInt(append(b[:0], prefix...), offset, 10))
	return hex.EncodeToString(h[:16])
}
