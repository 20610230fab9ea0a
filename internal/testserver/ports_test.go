package testserver

import "testing"

// TestFreePortOnNeverRepeats asks for many ports without binding them, as
// a test setting up a server's listeners does: none may come back twice.
// (Without the record of handed-out ports, 1,000 draws from 10,000 ports
// repeat one with near certainty.)
func TestFreePortOnNeverRepeats(t *testing.T) {
	seen := map[int]bool{}
	for range 1000 {
		p, err := FreePortOn("127.0.0.1")
		if err != nil {
			t.Fatal(err)
		}
		if seen[p] {
			t.Fatalf("port %d handed out twice", p)
		}
		seen[p] = true
	}
}
