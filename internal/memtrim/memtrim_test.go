package memtrim

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// written is data the process changed after start: Release must not give
// it back to the file's original bytes.
var written = [3 * 4096]byte{0: 1}

// TestMain lets the test binary run as a child that maps the same
// executable and waits (the mapping is then shared, as on a machine where
// a server and an agent run one binary).
func TestMain(m *testing.M) {
	if os.Getenv("MEMTRIM_HOLD") == "1" {
		if err := touchExecutable(); err != nil {
			fmt.Println(err)
			os.Exit(1)
		}
		fmt.Println("mapped")
		_, _ = bufio.NewReader(os.Stdin).ReadString('\n')
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// TestRelease: the test binary's own mappings are found and giving them
// back lowers its file-backed resident memory, also while another process
// maps the same executable, and written data keeps its value.
func TestRelease(t *testing.T) {
	regions, err := executableRegions()
	if err != nil {
		t.Fatal(err)
	}
	if len(regions) < 2 {
		t.Fatalf("executable mappings = %v, want text and read-only data at least", regions)
	}
	clean, writable := 0, 0
	for _, r := range regions {
		if r.clean() {
			clean++
		}
		if r.Writable {
			writable++
		}
	}
	if clean == 0 || writable == 0 {
		t.Fatalf("executable mappings = %+v, want read-only and writable ones", regions)
	}

	// A second process of this executable has every page of it mapped, so
	// every page this one has is shared.
	child := exec.Command(os.Args[0])
	child.Env = append(os.Environ(), "MEMTRIM_HOLD=1")
	stdin, err := child.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := child.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		_ = stdin.Close()
		_ = child.Wait()
	}()
	if line, _ := bufio.NewReader(stdout).ReadString('\n'); line != "mapped\n" {
		t.Fatalf("child: %q", line)
	}
	if err := touchExecutable(); err != nil {
		t.Fatal(err)
	}

	for i := range written {
		written[i] = byte(i%251) + 1
	}
	before, err := cleanResidentKiB()
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
	after, err := cleanResidentKiB()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("read-only mappings resident %d KiB -> %d KiB with a second process mapping the executable", before, after)
	// What stays is what the test touches again afterwards (fault-around
	// maps 64 KiB windows of a small binary): about 40% here; without
	// unmapping shared pages nothing goes.
	if after*3 > before*2 {
		t.Fatalf("read-only mappings resident %d KiB -> %d KiB: want under two thirds", before, after)
	}
	for i := range written {
		if want := byte(i%251) + 1; written[i] != want {
			t.Fatalf("written[%d] = %d after Release, want %d: written data was given back", i, written[i], want)
		}
	}
}

// cleanResidentKiB sums the resident pages of the executable's read-only
// mappings.
func cleanResidentKiB() (int64, error) {
	regions, err := executableRegions()
	if err != nil {
		return 0, err
	}
	var sum int64
	for _, r := range regions {
		if r.clean() {
			sum += r.RssKiB
		}
	}
	return sum, nil
}

// touchExecutable maps every page of the executable's mappings into this
// process (reads through /proc/self/mem fault them in).
func touchExecutable() error {
	regions, err := executableRegions()
	if err != nil {
		return err
	}
	mem, err := os.Open("/proc/self/mem")
	if err != nil {
		return err
	}
	defer mem.Close()
	for _, r := range regions {
		buf := make([]byte, r.End-r.Start)
		if _, err := mem.ReadAt(buf, int64(r.Start)); err != nil {
			return fmt.Errorf("read %#x: %w", r.Start, err)
		}
	}
	return nil
}

// TestRegionsParse: the smaps reader reads permissions and anonymous pages
// of the executable's mappings only.
func TestRegionsParse(t *testing.T) {
	regions, err := executableRegions()
	if err != nil {
		t.Fatal(err)
	}
	exe, _ := os.Readlink("/proc/self/exe")
	maps, err := os.ReadFile("/proc/self/maps")
	if err != nil {
		t.Fatal(err)
	}
	want := 0
	for _, line := range strings.Split(string(maps), "\n") {
		if strings.HasSuffix(line, " "+exe) {
			want++
		}
	}
	if len(regions) != want {
		t.Fatalf("%d regions, want the %d mappings of %s in /proc/self/maps", len(regions), want, exe)
	}
	for _, r := range regions {
		if r.Writable && r.AnonKiB == 0 {
			continue // the data segment before anything in it was written
		}
		if !r.Writable && r.AnonKiB != 0 {
			t.Errorf("read-only mapping %#x with %d KiB anonymous", r.Start, r.AnonKiB)
		}
	}
}
