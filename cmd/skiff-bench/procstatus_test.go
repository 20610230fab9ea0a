package main

import (
	"os"
	"testing"
)

// TestProcStatusKB: the readers of /proc/<pid>/status give this process's
// own figures, in the units their callers expect.
func TestProcStatusKB(t *testing.T) {
	pid := os.Getpid()
	kb, err := procStatusKB(pid, "VmRSS", "RssAnon", "NoSuchField")
	if err != nil {
		t.Fatal(err)
	}
	if kb[0] <= 0 || kb[1] <= 0 || kb[1] > kb[0] || kb[2] != 0 {
		t.Fatalf("VmRSS, RssAnon, NoSuchField = %v kB, want 0 < RssAnon <= VmRSS and 0", kb)
	}
	rss, peak, err := procRSS(pid)
	if err != nil || rss <= 0 || peak < rss || rss%1024 != 0 {
		t.Fatalf("procRSS = %d, %d, %v: want bytes, peak >= rss > 0", rss, peak, err)
	}
	anon, file, err := procRSSParts(pid)
	if err != nil || anon <= 0 || file < 0 || anon > rss+rss/2 {
		t.Fatalf("procRSSParts = %d, %d, %v (rss %d)", anon, file, err, rss)
	}
	if _, err := procStatusKB(1<<30, "VmRSS"); err == nil {
		t.Fatal("no error for a process that does not exist")
	}
}
