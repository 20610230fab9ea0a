package framework

import (
	"errors"
	"strings"
	"sync"

	"k8s.io/apimachinery/pkg/util/sets"
)

// Code is the outcome of a plugin call.
type Code int

// Codes, as upstream's.
const (
	// Success: the plugin ran and the pod may proceed.
	Success Code = iota
	// Error: an internal error; the pod is retried with backoff.
	Error
	// Unschedulable: the pod does not fit, but preemption may help.
	Unschedulable
	// UnschedulableAndUnresolvable: the pod does not fit and preemption
	// cannot change that on this node.
	UnschedulableAndUnresolvable
	// Wait: a Permit plugin holds the pod.
	Wait
	// Skip: the plugin has nothing to do for this pod.
	Skip
	// Pending: the pod waits for something outside the scheduler.
	Pending
)

var codeNames = []string{"Success", "Error", "Unschedulable", "UnschedulableAndUnresolvable", "Wait", "Skip", "Pending"}

func (c Code) String() string {
	if int(c) < len(codeNames) {
		return codeNames[c]
	}
	return "Unknown"
}

// Status is a plugin's answer. A nil *Status is Success.
type Status struct {
	code    Code
	reasons []string
	err     error
	plugin  string
}

// NewStatus returns a status with code and reasons.
func NewStatus(code Code, reasons ...string) *Status {
	s := &Status{code: code, reasons: reasons}
	if code == Error {
		s.err = errors.New(strings.Join(reasons, ", "))
	}
	return s
}

// AsStatus wraps an error as an Error status (nil stays Success).
func AsStatus(err error) *Status {
	if err == nil {
		return nil
	}
	return &Status{code: Error, reasons: []string{err.Error()}, err: err}
}

// Code returns the status code.
func (s *Status) Code() Code {
	if s == nil {
		return Success
	}
	return s.code
}

// Reasons returns the human-readable reasons.
func (s *Status) Reasons() []string {
	if s == nil {
		return nil
	}
	if s.err != nil && len(s.reasons) == 0 {
		return []string{s.err.Error()}
	}
	return s.reasons
}

// Message joins the reasons.
func (s *Status) Message() string { return strings.Join(s.Reasons(), ", ") }

// Plugin names the plugin that produced the status.
func (s *Status) Plugin() string {
	if s == nil {
		return ""
	}
	return s.plugin
}

// WithPlugin records the plugin that produced the status.
func (s *Status) WithPlugin(name string) *Status {
	if s != nil {
		s.plugin = name
	}
	return s
}

// AsError returns the status as an error (nil for success-like codes).
func (s *Status) AsError() error {
	if s.IsSuccess() || s.code == Skip || s.code == Wait {
		return nil
	}
	if s.err != nil {
		return s.err
	}
	return errors.New(s.Message())
}

// IsSuccess reports Success.
func (s *Status) IsSuccess() bool { return s.Code() == Success }

// IsSkip reports Skip.
func (s *Status) IsSkip() bool { return s.Code() == Skip }

// IsWait reports Wait.
func (s *Status) IsWait() bool { return s.Code() == Wait }

// IsRejected reports Unschedulable, UnschedulableAndUnresolvable or Pending.
func (s *Status) IsRejected() bool {
	c := s.Code()
	return c == Unschedulable || c == UnschedulableAndUnresolvable || c == Pending
}

func (s *Status) String() string {
	if s == nil {
		return "Success"
	}
	return s.code.String() + ": " + s.Message()
}

// NodeToStatus records why each node was rejected in a cycle. Nodes absent
// from the map (and not filtered) share AbsentStatus.
type NodeToStatus struct {
	mu     sync.Mutex
	m      map[string]*Status
	absent *Status
}

// NewNodeToStatus returns an empty map whose absent nodes have status absent.
func NewNodeToStatus(absent *Status) *NodeToStatus {
	return &NodeToStatus{m: map[string]*Status{}, absent: absent}
}

// Set records node's status.
func (n *NodeToStatus) Set(node string, s *Status) {
	n.mu.Lock()
	n.m[node] = s
	n.mu.Unlock()
}

// Get returns node's status (the absent status if none was recorded).
func (n *NodeToStatus) Get(node string) *Status {
	n.mu.Lock()
	defer n.mu.Unlock()
	if s, ok := n.m[node]; ok {
		return s
	}
	return n.absent
}

// Len counts recorded statuses.
func (n *NodeToStatus) Len() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return len(n.m)
}

// ForEach calls fn for each recorded status.
func (n *NodeToStatus) ForEach(fn func(node string, s *Status)) {
	n.mu.Lock()
	defer n.mu.Unlock()
	for k, v := range n.m {
		fn(k, v)
	}
}

// StateData is what plugins store in the CycleState.
type StateData interface {
	Clone() StateData
}

// ErrNotFound is returned by CycleState.Read for a missing key.
var ErrNotFound = errors.New("not found")

// CycleState is the per-pod, per-cycle scratch space plugins share.
type CycleState struct {
	m sync.Map
	// SkipFilterPlugins and SkipScorePlugins name plugins that returned
	// Skip in PreFilter or PreScore.
	SkipFilterPlugins sets.Set[string]
	SkipScorePlugins  sets.Set[string]
}

// NewCycleState returns an empty state.
func NewCycleState() *CycleState { return &CycleState{} }

// Read returns the data stored under key.
func (c *CycleState) Read(key string) (StateData, error) {
	if v, ok := c.m.Load(key); ok {
		return v.(StateData), nil
	}
	return nil, ErrNotFound
}

// Write stores data under key.
func (c *CycleState) Write(key string, data StateData) { c.m.Store(key, data) }

// Delete removes key.
func (c *CycleState) Delete(key string) { c.m.Delete(key) }

// Clone deep-copies the state (each StateData clones itself).
func (c *CycleState) Clone() *CycleState {
	if c == nil {
		return nil
	}
	out := &CycleState{SkipFilterPlugins: c.SkipFilterPlugins, SkipScorePlugins: c.SkipScorePlugins}
	c.m.Range(func(k, v any) bool {
		out.m.Store(k, v.(StateData).Clone())
		return true
	})
	return out
}
