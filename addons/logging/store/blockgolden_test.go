package store

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"testing"
	"time"
)

// goldenHead fills a head with documents of several shapes: repeated
// Kubernetes metadata in runs (as the shipper sends them), unique
// messages, non-ASCII text, escapes, long values, raw values, fields
// present in some documents only, documents without a timestamp.
func goldenHead(t testing.TB) *head {
	t.Helper()
	h := newHead(7, nil)
	var fl flattener
	base := time.Date(2026, 12, 2, 7, 0, 0, 0, time.UTC)
	now := func() time.Time { return base }
	for i := range 5000 {
		var src []byte
		switch {
		case i%97 == 0:
			src = fmt.Appendf(nil, `{"message":"no timestamp \u00e9t\u00e9 %d","extra":[1,2,{"a":null}],"level":"WARN"}`, i)
		case i%31 == 0:
			src = fmt.Appendf(nil, `{"@timestamp":%q,"message":"Ünïcödé \"quoted\" tab\there %d ошибка 错误","kubernetes":{"namespace_name":"ns%d"},"n":%d.5}`,
				base.Add(time.Duration(i)*time.Millisecond).Format(time.RFC3339Nano), i, i%3, i)
		default:
			msg := fmt.Sprintf("GET /api/v1/items/%d took=%dms user=u%d connection reset by peer %x", i%1000, i%17, i%50, i*7919)
			if i%13 == 0 {
				msg += " " + fmt.Sprint(time.Duration(i)*time.Microsecond) + " a-much-longer-value-that-is-more-than-sixty-four-bytes-long-so-it-is-not-value-keyed"
			}
			src = doc(i/50, base.Add(time.Duration(i)*time.Millisecond), msg)
		}
		if err := fl.flatten(src); err != nil {
			t.Fatalf("flatten %s: %v", src, err)
		}
		h.add(fmt.Sprint("id-", i), fl.fields, now)
	}
	return h
}

// TestBlockBytesUnchanged pins the bytes writeBlock produces for a fixed
// head: speed work on the writer must not change the block format or its
// contents (the digest was taken with the writer before that work).
func TestBlockBytesUnchanged(t *testing.T) {
	sum, size := blockDigest(t, goldenHead(t), nil)
	const want = "e3bd22198977f44b6f7bf49aac814424c8a098e71ab62823733172eb74b902e7"
	if got := hex.EncodeToString(sum[:]); got != want {
		t.Fatalf("block bytes changed: sha256 %s, want %s (%d bytes)", got, want, size)
	}
}

// blockDigest writes h as a block (with sb, or afresh when nil) and
// returns the file's sha256 and size.
func blockDigest(t *testing.T, h *head, sb *sealBuffers) ([32]byte, int) {
	t.Helper()
	blk, err := writeBlock(t.TempDir(), h, false, sb)
	if err != nil {
		t.Fatal(err)
	}
	defer blk.release()
	b, err := os.ReadFile(blk.path)
	if err != nil {
		t.Fatal(err)
	}
	return sha256.Sum256(b), len(b)
}

// BenchmarkWriteBlock measures sealing a head into a block (columns, token
// indexes, bloom filters, zstd), per document.
func BenchmarkWriteBlock(b *testing.B) {
	h := goldenHead(b)
	dir := b.TempDir()
	b.ReportAllocs()
	for b.Loop() {
		blk, err := writeBlock(dir, h, false, nil)
		if err != nil {
			b.Fatal(err)
		}
		blk.release()
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*h.docs.len()), "ns/doc")
}

// TestSealBuffersReused checks that blocks written with memory kept from
// earlier seals (sealBuffers) have the bytes of blocks written afresh:
// heads of different shapes and sizes, one after another, through the
// same buffers.
func TestSealBuffersReused(t *testing.T) {
	base := time.Date(2026, 12, 2, 7, 0, 0, 0, time.UTC)
	shipper := func(n int) *head {
		h := newHead(9, nil)
		var fl flattener
		for i := range n {
			if err := fl.flatten(shipperDoc(i/250%4, i, base.Add(time.Duration(i)*time.Millisecond))); err != nil {
				t.Fatal(err)
			}
			h.add(fmt.Sprintf("%032x", i*7919), fl.fields, func() time.Time { return base })
		}
		return h
	}
	heads := []*head{goldenHead(t), shipper(3000), shipper(100), goldenHead(t), shipper(3000)}
	var sb sealBuffers
	for i, h := range heads {
		got, _ := blockDigest(t, h, &sb)
		if want, _ := blockDigest(t, h, nil); got != want {
			t.Fatalf("head %d: block written with reused buffers differs", i)
		}
	}
	if len(sb.cols) == 0 || sb.cols[0].size() == 0 {
		t.Fatal("no buffers kept")
	}
}
