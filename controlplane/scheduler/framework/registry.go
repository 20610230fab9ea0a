package framework

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sort"
	"sync"
)

// Factory builds a plugin from its args (nil when the configuration gives
// none) and the scheduler's Handle.
type Factory func(args json.RawMessage, h Handle) (Plugin, error)

// Registry maps plugin names to factories.
type Registry map[string]Factory

var (
	globalMu sync.RWMutex
	global   = Registry{}
)

// Register makes a plugin available to every scheduler in the process
// under name. Plugin packages call it from init; registering a name twice
// panics, as two plugins with one name are a programming error.
func Register(name string, f Factory) {
	globalMu.Lock()
	defer globalMu.Unlock()
	if _, dup := global[name]; dup {
		panic(fmt.Sprintf("scheduler plugin %q registered twice", name))
	}
	global[name] = f
}

// Registered returns a copy of the process-wide registry.
func Registered() Registry {
	globalMu.RLock()
	defer globalMu.RUnlock()
	out := make(Registry, len(global))
	for k, v := range global {
		out[k] = v
	}
	return out
}

// Merge adds o's factories to r, failing on duplicates.
func (r Registry) Merge(o Registry) error {
	for k, v := range o {
		if _, dup := r[k]; dup {
			return fmt.Errorf("scheduler plugin %q registered twice", k)
		}
		r[k] = v
	}
	return nil
}

// Names lists the registered plugins, sorted.
func (r Registry) Names() []string {
	out := make([]string, 0, len(r))
	for k := range r {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// DecodeArgs decodes a plugin's args strictly into out; nil or empty args
// leave out unchanged (its defaults).
func DecodeArgs(args json.RawMessage, out any) error {
	if len(bytes.TrimSpace(args)) == 0 || string(bytes.TrimSpace(args)) == "null" {
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(args))
	dec.DisallowUnknownFields()
	if err := dec.Decode(out); err != nil {
		return fmt.Errorf("decode plugin args: %w", err)
	}
	return nil
}
