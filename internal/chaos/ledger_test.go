package chaos

import (
	"strings"
	"testing"
)

func TestLedgerResolve(t *testing.T) {
	l := NewLedger()
	present := func(seq int64) State { return State{Present: true, Seq: seq, RV: "1"} }

	// Acknowledged and found: fine.
	l.Ack("a", present(1))
	if !l.Resolve("a", present(1)) {
		t.Fatal("acknowledged state found is a violation")
	}
	// An unknown update that did not happen, then one that did.
	l.Unknown("a", Op{Kind: "update", Want: present(2)})
	if !l.Resolve("a", present(1)) {
		t.Fatal("unapplied unknown write is a violation")
	}
	if s, pending := l.Acked("a"); pending || s.Seq != 1 {
		t.Fatalf("after unapplied write: %v pending=%v", s, pending)
	}
	l.Unknown("a", Op{Kind: "update", Want: present(3)})
	if !l.Resolve("a", present(3)) {
		t.Fatal("applied unknown write is a violation")
	}
	if s, _ := l.Acked("a"); s.Seq != 3 {
		t.Fatalf("applied write not taken as acknowledged: %v", s)
	}
	// An unknown delete that happened.
	l.Unknown("a", Op{Kind: "delete"})
	if !l.Resolve("a", State{}) {
		t.Fatal("applied delete is a violation")
	}
	// Lost: acknowledged seq 4, the server holds nothing.
	l.Ack("b", present(4))
	if l.Resolve("b", State{}) {
		t.Fatal("a lost acknowledged write is not a violation")
	}
	// Phantom: the server holds a value nobody wrote.
	l.Ack("c", present(5))
	l.Unknown("c", Op{Kind: "update", Want: present(6)})
	if l.Resolve("c", present(7)) {
		t.Fatal("a state nobody wrote is not a violation")
	}
	acked, unknown, applied, v := l.Counts()
	if acked != 3 || unknown != 4 || applied != 2 || len(v) != 2 {
		t.Fatalf("counts: acked %d unknown %d applied %d violations %v", acked, unknown, applied, v)
	}
	if !strings.Contains(v[0], "b: server holds absent, the ledger says seq 4") || !strings.Contains(v[1], "seq 5 or seq 6") {
		t.Fatalf("violations: %q", v)
	}
}
