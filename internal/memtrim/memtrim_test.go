package memtrim

import "testing"

// TestRelease: the test binary's own mappings are found and paging them out
// lowers its file-backed resident memory.
func TestRelease(t *testing.T) {
	regions, err := executableRegions()
	if err != nil {
		t.Fatal(err)
	}
	if len(regions) < 2 {
		t.Fatalf("executable mappings = %v, want text and read-only data at least", regions)
	}
	before, err := ResidentFileKiB()
	if err != nil {
		t.Fatal(err)
	}
	n, err := Release()
	if err != nil {
		t.Fatal(err)
	}
	if n <= 0 {
		t.Fatalf("Release advised %d bytes", n)
	}
	after, err := ResidentFileKiB()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("RssFile %d KiB -> %d KiB", before, after)
	if after >= before {
		t.Fatalf("RssFile did not drop: %d KiB -> %d KiB", before, after)
	}
}
