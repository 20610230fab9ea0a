//go:build failpoints

package failpoint

import (
	"errors"
	"testing"
	"time"
)

func TestParseFailpoints(t *testing.T) {
	got, err := parse("storage/after-commit=after(100)5%kill@/configmaps/chaos/; shipper/before-checkpoint=error ;x=sleep(20ms)")
	if err != nil {
		t.Fatal(err)
	}
	if p := got["storage/after-commit"]; p.skip != 100 || p.prob != 0.05 || p.action != "kill" || p.filter != "/configmaps/chaos/" {
		t.Errorf("storage/after-commit = %+v", p)
	}
	if p := got["shipper/before-checkpoint"]; p.prob != 1 || p.action != "error" || p.filter != "" {
		t.Errorf("shipper/before-checkpoint = %+v", p)
	}
	if p := got["x"]; p.action != "sleep" || p.sleep != 20*time.Millisecond {
		t.Errorf("x = %+v", p)
	}
	for _, bad := range []string{"noequals", "a=explode", "a=150%kill", "a=sleep(forever)", "=kill", "a=after(x)kill", "a=after(3kill"} {
		if _, err := parse(bad); err == nil {
			t.Errorf("parse(%q) accepted", bad)
		}
	}
}

func TestInjectFailpoints(t *testing.T) {
	var err error
	once.Do(func() {})
	if points, err = parse("a=error@keep;b=0%error;c=panic;d=sleep(30ms);e=after(2)error@k"); err != nil {
		t.Fatal(err)
	}
	// after(2): the first two hits with a matching argument pass; hits
	// filtered out do not count.
	for i, arg := range []string{"k1", "x", "k2", "k3", "k4"} {
		err := Inject("e", arg)
		if want := i >= 3; (err != nil) != want {
			t.Errorf("e hit %d (%s): %v", i, arg, err)
		}
	}
	if err := Inject("a", "/x/keep/y"); !errors.Is(err, ErrInjected) {
		t.Errorf("a on a matching argument: %v", err)
	}
	if err := Inject("a", "/x/other"); err != nil {
		t.Errorf("a filtered out: %v", err)
	}
	if err := Inject("b", ""); err != nil {
		t.Errorf("b at 0%%: %v", err)
	}
	if err := Inject("unset", ""); err != nil {
		t.Errorf("unset point: %v", err)
	}
	t0 := time.Now()
	if err := Inject("d", ""); err != nil || time.Since(t0) < 30*time.Millisecond {
		t.Errorf("d: %v after %v", err, time.Since(t0))
	}
	defer func() {
		if recover() == nil {
			t.Error("c did not panic")
		}
	}()
	_ = Inject("c", "")
}
