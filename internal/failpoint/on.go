//go:build failpoints

package failpoint

import (
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Enabled reports whether this binary was built with failpoints.
const Enabled = true

type point struct {
	skip   int64 // hits passed over before the point may act
	prob   float64
	action string
	sleep  time.Duration
	filter string
	hits   *atomic.Int64
}

var (
	once   sync.Once
	points map[string]point
)

// parse reads a SKIFF_FAILPOINTS value.
func parse(spec string) (map[string]point, error) {
	out := map[string]point{}
	for _, term := range strings.Split(spec, ";") {
		term = strings.TrimSpace(term)
		if term == "" {
			continue
		}
		name, rest, ok := strings.Cut(term, "=")
		if !ok || name == "" {
			return nil, fmt.Errorf("failpoint term %q: want name=action", term)
		}
		p := point{prob: 1, hits: new(atomic.Int64)}
		rest, p.filter, _ = strings.Cut(rest, "@")
		if strings.HasPrefix(rest, "after(") {
			n, act, ok := strings.Cut(rest[len("after("):], ")")
			v, err := strconv.ParseInt(n, 10, 64)
			if !ok || err != nil || v < 0 {
				return nil, fmt.Errorf("failpoint %s: bad after(N) in %q", name, rest)
			}
			p.skip, rest = v, act
		}
		if pct, act, ok := strings.Cut(rest, "%"); ok {
			v, err := strconv.ParseFloat(pct, 64)
			if err != nil || v < 0 || v > 100 {
				return nil, fmt.Errorf("failpoint %s: bad probability %q", name, pct)
			}
			p.prob, rest = v/100, act
		}
		switch {
		case rest == "kill" || rest == "panic" || rest == "error":
			p.action = rest
		case strings.HasPrefix(rest, "sleep(") && strings.HasSuffix(rest, ")"):
			d, err := time.ParseDuration(rest[len("sleep(") : len(rest)-1])
			if err != nil {
				return nil, fmt.Errorf("failpoint %s: %w", name, err)
			}
			p.action, p.sleep = "sleep", d
		default:
			return nil, fmt.Errorf("failpoint %s: unknown action %q (kill, panic, error, sleep(D))", name, rest)
		}
		out[name] = p
	}
	return out, nil
}

func load() {
	var err error
	if points, err = parse(os.Getenv(Env)); err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", Env, err)
		os.Exit(2)
	}
}

// Inject acts as SKIFF_FAILPOINTS says for the point name reached with
// arg (a storage key, a file path).
func Inject(name, arg string) error {
	once.Do(load)
	p, ok := points[name]
	if !ok || (p.filter != "" && !strings.Contains(arg, p.filter)) || p.hits.Add(1) <= p.skip || (p.prob < 1 && rand.Float64() >= p.prob) {
		return nil
	}
	fmt.Fprintf(os.Stderr, "failpoint: %s %s %s\n", name, p.action, arg)
	switch p.action {
	case "kill":
		_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
		select {} // the signal is on its way
	case "panic":
		panic("failpoint " + name)
	case "error":
		return fmt.Errorf("%s at %s: %w", name, arg, ErrInjected)
	case "sleep":
		time.Sleep(p.sleep)
	}
	return nil
}
