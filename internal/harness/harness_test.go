package harness

import (
	"bytes"
	"context"
	"errors"
	"os"
	"strings"
	"testing"
	"time"
)

// *testing.T and *testing.B are harness.Ts.
var (
	_ T = (*testing.T)(nil)
	_ T = (*testing.B)(nil)
)

func TestRunPassesAndCleansUpInReverse(t *testing.T) {
	var log bytes.Buffer
	var order []int
	var dir string
	err := Run(&log, func(h T) {
		dir = h.TempDir()
		h.Cleanup(func() { order = append(order, 1) })
		h.Cleanup(func() {
			if _, err := os.Stat(dir); err != nil {
				t.Errorf("temporary folder removed before a later cleanup: %v", err)
			}
			order = append(order, 2)
		})
		h.Logf("hello %d", 7)
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(order) != 2 || order[0] != 2 || order[1] != 1 {
		t.Errorf("cleanups ran in order %v, want [2 1]", order)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("temporary folder %s not removed: %v", dir, err)
	}
	if log.String() != "hello 7\n" {
		t.Errorf("log %q", log.String())
	}
}

func TestRunFatalStopsAndReports(t *testing.T) {
	cleaned, after := false, false
	err := Run(&bytes.Buffer{}, func(h T) {
		h.Cleanup(func() { cleaned = true })
		h.Errorf("first %s", "problem")
		if !h.Failed() {
			t.Error("Failed is false after Errorf")
		}
		h.Fatalf("fatal %d", 2)
		after = true
	})
	if err == nil || !strings.Contains(err.Error(), "first problem") || !strings.Contains(err.Error(), "fatal 2") {
		t.Fatalf("err = %v, want both failures", err)
	}
	if after {
		t.Error("fn went on after Fatalf")
	}
	if !cleaned {
		t.Error("cleanup did not run after Fatalf")
	}
}

func TestRunSkip(t *testing.T) {
	err := Run(&bytes.Buffer{}, func(h T) {
		h.Skip("needs", "root")
		t.Error("fn went on after Skip")
	})
	if !errors.Is(err, ErrSkipped) || !strings.Contains(err.Error(), "needs root") {
		t.Fatalf("err = %v, want ErrSkipped with the reason", err)
	}
}

func TestRunFatalInCleanup(t *testing.T) {
	second := false
	err := Run(&bytes.Buffer{}, func(h T) {
		h.Cleanup(func() { second = true })
		h.Cleanup(func() { h.Fatal("cleanup broke") })
	})
	if err == nil || !strings.Contains(err.Error(), "cleanup broke") {
		t.Fatalf("err = %v", err)
	}
	if !second {
		t.Error("a Fatal in one cleanup kept the next from running")
	}
}

func TestRunOtherPanicsPropagate(t *testing.T) {
	defer func() {
		if v := recover(); v != "boom" {
			t.Errorf("recovered %v, want the panic to pass through", v)
		}
	}()
	_ = Run(&bytes.Buffer{}, func(h T) { panic("boom") })
}

func TestPoll(t *testing.T) {
	calls := 0
	err := Run(&bytes.Buffer{}, func(h T) {
		Poll(context.Background(), h, 10*time.Second, func(context.Context) string {
			calls++
			if calls < 3 {
				return "not yet"
			}
			return ""
		})
	})
	if err != nil || calls != 3 {
		t.Fatalf("Poll: err %v after %d calls, want nil after 3", err, calls)
	}
	err = Run(&bytes.Buffer{}, func(h T) {
		Poll(context.Background(), h, 700*time.Millisecond, func(context.Context) string { return "still waiting" })
		t.Error("Poll returned without its condition")
	})
	if err == nil || !strings.Contains(err.Error(), "still waiting") {
		t.Fatalf("Poll past its timeout: err %v, want the last answer", err)
	}
}
