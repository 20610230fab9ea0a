package cpuprofile

import (
	"os"
	"path/filepath"
	"runtime/pprof"
	"testing"
)

func TestStart(t *testing.T) {
	stop, err := Start("")
	if err != nil {
		t.Fatal(err)
	}
	stop()

	path := filepath.Join(t.TempDir(), "cpu.pprof")
	if stop, err = Start(path); err != nil {
		t.Fatal(err)
	}
	if err := pprof.StartCPUProfile(os.Stderr); err == nil {
		pprof.StopCPUProfile()
		t.Fatal("a second profile could start: Start did not start one")
	}
	stop()
	if st, err := os.Stat(path); err != nil || st.Size() == 0 {
		t.Fatalf("profile file %v, %v: want a written profile", st, err)
	}
	if _, err := Start(filepath.Join(t.TempDir(), "missing", "cpu.pprof")); err == nil {
		t.Fatal("Start into a missing folder succeeded")
	}
}
