// Package chaos is Skiff's fault-injection harness: a steady API load that
// records every write the server acknowledged, faults (SIGKILL of the
// server process) at random moments, and the checks that no acknowledged
// write was lost and nothing was written that nobody asked for.
//
// The ledger is exact because every key has one writer. A write whose
// answer never came (the server died under it) has an unknown outcome;
// the writer resolves it by reading the key back once the server answers
// again, before it writes that key again. An acknowledged state may then
// only be replaced by the unknown write that followed it, never vanish.
package chaos

import (
	"fmt"
	"sort"
	"sync"
)

// State is what a key holds: absent, or present with a sequence number
// (the value the load wrote) at a resourceVersion.
type State struct {
	Present bool
	Seq     int64
	RV      string
}

func (s State) String() string {
	if !s.Present {
		return "absent"
	}
	return fmt.Sprintf("seq %d", s.Seq)
}

// Op is one write of a key: the state it asks for.
type Op struct {
	Kind string // create, update, delete
	Want State
}

// entry is one key's ledger line.
type entry struct {
	acked   State
	pending *Op // a write with an unknown outcome
}

// Ledger records, per key, the last state the server acknowledged and the
// write (if any) whose outcome is unknown. It is safe for concurrent use;
// each key must have a single writer.
type Ledger struct {
	mu         sync.Mutex
	keys       map[string]*entry
	acked      int64
	unknown    int64
	applied    int64 // unknown writes found applied
	violations []string
}

// NewLedger returns an empty ledger.
func NewLedger() *Ledger { return &Ledger{keys: map[string]*entry{}} }

func (l *Ledger) entry(key string) *entry {
	e := l.keys[key]
	if e == nil {
		e = &entry{}
		l.keys[key] = e
	}
	return e
}

// Acked returns the key's last acknowledged state and whether a write of
// unknown outcome is pending.
func (l *Ledger) Acked(key string) (State, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	e := l.entry(key)
	return e.acked, e.pending != nil
}

// Ack records that the server acknowledged op with the resulting state.
func (l *Ledger) Ack(key string, s State) {
	l.mu.Lock()
	defer l.mu.Unlock()
	e := l.entry(key)
	e.acked, e.pending = s, nil
	l.acked++
}

// Unknown records that op's outcome is unknown (no answer).
func (l *Ledger) Unknown(key string, op Op) {
	l.mu.Lock()
	defer l.mu.Unlock()
	e := l.entry(key)
	e.pending = &op
	l.unknown++
}

// Violation records a broken promise.
func (l *Ledger) Violation(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.violations = append(l.violations, fmt.Sprintf(format, args...))
}

// Resolve compares what the server holds for key with the ledger: the
// acknowledged state, or the pending write's if it took effect (which then
// counts as acknowledged). Anything else is a violation: an acknowledged
// write lost, or a state nobody wrote. It returns false on a violation.
func (l *Ledger) Resolve(key string, got State) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	e := l.entry(key)
	if same(got, e.acked) {
		// The pending write, if any, did not take effect.
		e.acked.RV = got.RV
		e.pending = nil
		return true
	}
	if e.pending != nil && same(got, e.pending.Want) {
		e.acked, e.pending = got, nil
		l.applied++
		return true
	}
	want := e.acked.String()
	if e.pending != nil {
		want += " or " + e.pending.Want.String()
	}
	l.violations = append(l.violations, fmt.Sprintf("%s: server holds %s, the ledger says %s", key, got, want))
	e.acked, e.pending = got, nil // one report per divergence
	return false
}

func same(a, b State) bool { return a.Present == b.Present && (!a.Present || a.Seq == b.Seq) }

// Keys returns the ledger's keys, sorted.
func (l *Ledger) Keys() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]string, 0, len(l.keys))
	for k := range l.keys {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// Counts returns acknowledged writes, writes of unknown outcome, unknown
// writes later found applied, and the violations so far.
func (l *Ledger) Counts() (acked, unknown, applied int64, violations []string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.acked, l.unknown, l.applied, append([]string(nil), l.violations...)
}
