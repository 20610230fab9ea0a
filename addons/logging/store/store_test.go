package store

import (
	"context"
	"fmt"
	"testing"
	"time"
)

func openT(t *testing.T, dir string, mod ...func(*Options)) *Store {
	t.Helper()
	o := Options{Dir: dir, NoSync: true}
	for _, m := range mod {
		m(&o)
	}
	s, err := Open(o)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func doc(i int, ts time.Time, msg string) []byte {
	return fmt.Appendf(nil, `{"@timestamp":%q,"message":%q,"kubernetes":{"namespace_name":"ns%d","pod_name":"pod-%d","labels":{"app":"web","app.kubernetes.io/name":"web-%d"}},"stream":"stdout","n":%d}`,
		ts.UTC().Format(time.RFC3339Nano), msg, i%3, i%7, i%2, i)
}

func docs(t *testing.T, s *Store) int64 {
	t.Helper()
	var n int64
	for _, in := range s.Indices() {
		n += in.Docs
	}
	return n
}

func TestBulkDuplicatesAndRestart(t *testing.T) {
	dir := t.TempDir()
	s := openT(t, dir)
	ctx := context.Background()
	base := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	var ops []Op
	for i := range 100 {
		ops = append(ops, Op{Index: "logs-kubernetes-a", ID: fmt.Sprint("id-", i), Create: true, Source: doc(i, base.Add(time.Duration(i)*time.Second), fmt.Sprintf("line %d hello", i))})
	}
	mustCreate(t, s, ops)
	// The same ids again: all 409, nothing stored.
	res, _ := s.Bulk(ctx, ops[:10])
	for i, r := range res {
		if r.Status != 409 {
			t.Fatalf("dup item %d: status %d", i, r.Status)
		}
	}
	if n := docs(t, s); n != 100 {
		t.Fatalf("docs = %d, want 100", n)
	}
	// Half in blocks, half in the head (WAL only) at "crash" time.
	if err := s.Flush(); err != nil {
		t.Fatal(err)
	}
	var more []Op
	for i := 100; i < 150; i++ {
		more = append(more, Op{Index: "logs-kubernetes-b", ID: fmt.Sprint("id-", i), Create: true, Source: doc(i, base.Add(time.Duration(i)*time.Second), "after flush")})
	}
	if _, err := s.Bulk(ctx, more); err != nil {
		t.Fatal(err)
	}
	// Simulate a crash: no Close; the WAL buffer was synced by Bulk.
	s.closed.Store(true)
	close(s.stop)
	<-s.done

	s2 := openT(t, dir)
	defer s2.Close()
	if n := docs(t, s2); n != 150 {
		t.Fatalf("after restart docs = %d, want 150", n)
	}
	res, _ = s2.Bulk(ctx, append(ops[:5:5], more[:5]...))
	for i, r := range res {
		if r.Status != 409 {
			t.Fatalf("after restart dup item %d: status %d", i, r.Status)
		}
	}
}

func TestBadDocuments(t *testing.T) {
	s := openT(t, t.TempDir())
	defer s.Close()
	big := make([]byte, 1<<20)
	for i := range big {
		big[i] = 'x'
	}
	ops := []Op{
		{Index: "x", Source: []byte(`{"message":"ok 1"}`)},
		{Index: "x", Source: []byte(`not json`)},
		{Index: "x", Source: []byte("{\"message\":\"bad utf8 \xff\xfe\"}")},
		{Index: "x", Source: []byte(`{"message":"` + string(big) + `"}`)},
		{Index: "x", Source: []byte(`{"a":{"b":`)},
		{Index: "BAD", Source: []byte(`{}`)},
		{Index: "x", Source: []byte(`[1,2]`)},
		{Index: "x", Source: []byte(`{"message":"ok 2","arr":[1,{"a":2}],"n":null}`)},
	}
	res, err := s.Bulk(context.Background(), ops)
	if err != nil {
		t.Fatal(err)
	}
	want := []int{201, 400, 201, 201, 400, 400, 400, 201}
	for i, r := range res {
		if r.Status != want[i] {
			t.Errorf("op %d: status %d (%v), want %d", i, r.Status, r.Err, want[i])
		}
	}
	if n := docs(t, s); n != 4 {
		t.Fatalf("docs = %d, want 4", n)
	}
}

// mustCreate bulk-creates ops in s and fails the test unless every item is
// created (201).
func mustCreate(t *testing.T, s *Store, ops []Op) {
	t.Helper()
	res, err := s.Bulk(context.Background(), ops)
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range res {
		if r.Status != 201 {
			t.Fatalf("bulk item %d: status %d %v", i, r.Status, r.Err)
		}
	}
}
