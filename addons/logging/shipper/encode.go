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
func encode(buf *bytes.Buffer, rec *logLine, meta *Meta, lift bool) (lifted bool) {
	buf.Reset()
	buf.WriteString(`{"@timestamp":"`)
	buf.Write(rec.time.UTC().AppendFormat(nil, time.RFC3339Nano))
	buf.WriteString(`","stream":`)
	writeString(buf, rec.stream)
	buf.WriteString(`,"message":`)
	writeString(buf, string(rec.msg))
	buf.WriteString(`,"kubernetes":`)
	m, _ := json.Marshal(meta)
	buf.Write(m)
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
	return lifted
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
	if !utf8.ValidString(s) {
		s = string(bytes.ToValidUTF8([]byte(s), []byte("\uFFFD")))
	}
	b, _ := json.Marshal(s)
	buf.Write(b)
}

// docID is the document ID of the line starting at offset in the file
// with identity id and fingerprint fp (a reused inode is another file): the same line always gets the same ID, so a re-ship
// after a crash is a 409 the sink answers for a document it has.
func docID(id fileID, fp string, offset int64) string {
	h := sha256.New()
	h.Write([]byte(id.String()))
	h.Write([]byte{0})
	h.Write([]byte(fp))
	h.Write([]byte{0})
	h.Write(strconv.AppendInt(nil, offset, 10))
	return hex.EncodeToString(h.Sum(nil)[:16])
}
