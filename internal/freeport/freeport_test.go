package freeport

import (
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// TestOnNeverRepeats asks for many ports without binding them, as a test
// setting up a server's listeners does: none may come back twice.
// (Without the record of handed-out ports, 500 draws from 10,000 ports
// repeat one with near certainty.)
func TestOnNeverRepeats(t *testing.T) {
	seen := map[int]bool{}
	lo, hi := pickRange()
	for range 500 {
		p, err := On()
		if err != nil {
			t.Fatal(err)
		}
		if seen[p] {
			t.Fatalf("port %d handed out twice", p)
		}
		if p < lo || p >= hi {
			t.Fatalf("port %d outside [%d, %d)", p, lo, hi)
		}
		seen[p] = true
	}
}

// TestReserveAcrossProcesses: a port another process claimed is refused
// until the claim is older than Hold.
func TestReserveAcrossProcesses(t *testing.T) {
	p, err := On()
	if err != nil {
		t.Fatal(err)
	}
	// The claim file On made is what another process would see.
	if reserve(p) {
		t.Fatalf("port %d reserved twice", p)
	}
	name := filepath.Join(os.TempDir(), "skiff-freeport", strconv.Itoa(p))
	old := time.Now().Add(-Hold - time.Minute)
	if err := os.Chtimes(name, old, old); err != nil {
		t.Fatal(err)
	}
	if !reserve(p) {
		t.Fatalf("stale claim on port %d not taken over", p)
	}
	if reserve(p) {
		t.Fatalf("port %d reserved again right after the takeover", p)
	}
}
