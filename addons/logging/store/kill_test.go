package store

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestKill9Durability runs a writer in a child process, kills it with
// SIGKILL mid-stream and checks that every acknowledged document is there
// after reopening the store (WAL fsync before answering).
func TestKill9Durability(t *testing.T) {
	if dir := os.Getenv("SKIFF_LOGSTORE_KILL_CHILD"); dir != "" {
		killChild(dir)
		return
	}
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestKill9Durability$", "-test.count=1")
	cmd.Env = append(os.Environ(), "SKIFF_LOGSTORE_KILL_CHILD="+dir)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	acked := 0
	sc := bufio.NewScanner(out)
	deadline := time.Now().Add(60 * time.Second)
	for sc.Scan() {
		if n, ok := strings.CutPrefix(sc.Text(), "acked "); ok {
			acked, _ = strconv.Atoi(n)
		}
		if acked >= 5000 || time.Now().After(deadline) {
			break
		}
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	// Lines the child printed before it died are acknowledged too.
	for sc.Scan() {
		if n, ok := strings.CutPrefix(sc.Text(), "acked "); ok {
			acked, _ = strconv.Atoi(n)
		}
	}
	_ = cmd.Wait()
	if acked < 500 {
		t.Fatalf("child acknowledged only %d documents", acked)
	}
	s, err := Open(Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ids := make([]string, acked)
	for i := range ids {
		ids[i] = fmt.Sprint("k", i)
	}
	n, err := s.Count(context.Background(), []string{"logs-kill"}, IDs{Values: ids})
	if err != nil {
		t.Fatal(err)
	}
	if n != int64(acked) {
		t.Fatalf("after kill -9: %d of %d acknowledged documents found", n, acked)
	}
	// No duplicates either: every acknowledged id refuses a second create.
	res, err := s.Bulk(context.Background(), []Op{{Index: "logs-kill", ID: "k0", Create: true, Source: []byte(`{}`)}})
	if err != nil || res[0].Status != 409 {
		t.Fatalf("re-create after restart: %v %+v", err, res)
	}
}

func killChild(dir string) {
	s, err := Open(Options{Dir: dir, HeadBytes: 256 << 10}) // small heads: blocks get written too
	if err != nil {
		fmt.Println("open:", err)
		os.Exit(1)
	}
	base := time.Now()
	for i := 0; ; i += 100 {
		ops := make([]Op, 100)
		for j := range ops {
			ops[j] = Op{Index: "logs-kill", ID: fmt.Sprint("k", i+j), Create: true, Source: doc(i+j, base, "line before the kill")}
		}
		if _, err := s.Bulk(context.Background(), ops); err != nil {
			fmt.Println("bulk:", err)
			os.Exit(1)
		}
		fmt.Printf("acked %d\n", i+100)
	}
}
