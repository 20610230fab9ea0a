package scheduler

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"time"

	"github.com/skiffhq/skiff/controlplane/scheduler/framework"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"
)

// Configuration API version and kind accepted from --config files.
const (
	ConfigAPIVersion = "kubescheduler.config.k8s.io/v1"
	ConfigKind       = "KubeSchedulerConfiguration"
	// DefaultSchedulerName is the profile pods get when they name none.
	DefaultSchedulerName = "default-scheduler"
)

// Configuration is the --config file: the shape of upstream's
// KubeSchedulerConfiguration (kubescheduler.config.k8s.io/v1) for the
// fields Skiff's scheduler implements. Unknown fields are rejected.
type Configuration struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	// Parallelism bounds the goroutines that filter and score nodes (16).
	Parallelism *int32 `json:"parallelism,omitempty"`
	// PercentageOfNodesToScore: stop looking for feasible nodes after this
	// share of the cluster; 0 = adaptive (50% minus 1% per 125 nodes, at
	// least 5%, at least 100 nodes), as upstream.
	PercentageOfNodesToScore *int32 `json:"percentageOfNodesToScore,omitempty"`
	// PodInitialBackoffSeconds and PodMaxBackoffSeconds bound the retry
	// backoff of unschedulable pods (1s and 10s).
	PodInitialBackoffSeconds *int64 `json:"podInitialBackoffSeconds,omitempty"`
	PodMaxBackoffSeconds     *int64 `json:"podMaxBackoffSeconds,omitempty"`
	// LeaderElection configures the Lease used when several schedulers run.
	LeaderElection *LeaderElection `json:"leaderElection,omitempty"`
	// ClientConnection configures the API client.
	ClientConnection *ClientConnection `json:"clientConnection,omitempty"`
	// Profiles: one per schedulerName.
	Profiles []Profile `json:"profiles,omitempty"`
	// Extenders are not supported; a non-empty list is an error.
	Extenders []json.RawMessage `json:"extenders,omitempty"`
	// DelayCacheUntilActive is accepted for compatibility (ignored).
	DelayCacheUntilActive bool `json:"delayCacheUntilActive,omitempty"`
}

// LeaderElection is upstream's LeaderElectionConfiguration.
type LeaderElection struct {
	LeaderElect       *bool           `json:"leaderElect,omitempty"`
	LeaseDuration     metav1.Duration `json:"leaseDuration,omitempty"`
	RenewDeadline     metav1.Duration `json:"renewDeadline,omitempty"`
	RetryPeriod       metav1.Duration `json:"retryPeriod,omitempty"`
	ResourceLock      string          `json:"resourceLock,omitempty"`
	ResourceName      string          `json:"resourceName,omitempty"`
	ResourceNamespace string          `json:"resourceNamespace,omitempty"`
}

// ClientConnection is upstream's ClientConnectionConfiguration.
type ClientConnection struct {
	Kubeconfig         string  `json:"kubeconfig,omitempty"`
	AcceptContentTypes string  `json:"acceptContentTypes,omitempty"`
	ContentType        string  `json:"contentType,omitempty"`
	QPS                float32 `json:"qps,omitempty"`
	Burst              int32   `json:"burst,omitempty"`
}

// Profile configures the scheduler of one schedulerName.
type Profile struct {
	SchedulerName            string         `json:"schedulerName,omitempty"`
	PercentageOfNodesToScore *int32         `json:"percentageOfNodesToScore,omitempty"`
	Plugins                  *Plugins       `json:"plugins,omitempty"`
	PluginConfig             []PluginConfig `json:"pluginConfig,omitempty"`
}

// Plugins enables and disables plugins per extension point. MultiPoint
// enables a plugin at every point it implements.
type Plugins struct {
	PreEnqueue PluginSet `json:"preEnqueue,omitempty"`
	QueueSort  PluginSet `json:"queueSort,omitempty"`
	PreFilter  PluginSet `json:"preFilter,omitempty"`
	Filter     PluginSet `json:"filter,omitempty"`
	PostFilter PluginSet `json:"postFilter,omitempty"`
	PreScore   PluginSet `json:"preScore,omitempty"`
	Score      PluginSet `json:"score,omitempty"`
	Reserve    PluginSet `json:"reserve,omitempty"`
	Permit     PluginSet `json:"permit,omitempty"`
	PreBind    PluginSet `json:"preBind,omitempty"`
	Bind       PluginSet `json:"bind,omitempty"`
	PostBind   PluginSet `json:"postBind,omitempty"`
	MultiPoint PluginSet `json:"multiPoint,omitempty"`
}

// PluginSet lists enabled and disabled plugins; "*" disables all defaults.
type PluginSet struct {
	Enabled  []PluginRef `json:"enabled,omitempty"`
	Disabled []PluginRef `json:"disabled,omitempty"`
}

// PluginRef names a plugin; Weight applies to Score.
type PluginRef struct {
	Name   string `json:"name"`
	Weight *int32 `json:"weight,omitempty"`
}

// PluginConfig holds one plugin's args.
type PluginConfig struct {
	Name string          `json:"name"`
	Args json.RawMessage `json:"args,omitempty"`
}

// DefaultMultiPoint is the default profile's plugin list and score weights
// (upstream's v1 defaults; of the storage plugins only VolumeBinding).
func DefaultMultiPoint() []PluginRef {
	w := func(n int32) *int32 { return &n }
	return []PluginRef{
		{Name: "PrioritySort"},
		{Name: "NodeUnschedulable"},
		{Name: "NodeName"},
		{Name: "TaintToleration", Weight: w(3)},
		{Name: "NodeAffinity", Weight: w(2)},
		{Name: "NodePorts"},
		{Name: "NodeResourcesFit", Weight: w(1)},
		{Name: "VolumeBinding"},
		{Name: "PodTopologySpread", Weight: w(2)},
		{Name: "InterPodAffinity", Weight: w(2)},
		{Name: "DefaultPreemption"},
		{Name: "NodeResourcesBalancedAllocation", Weight: w(1)},
		{Name: "ImageLocality", Weight: w(1)},
		{Name: "DefaultBinder"},
	}
}

// LoadConfig reads a --config file (YAML or JSON).
func LoadConfig(path string) (*Configuration, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read scheduler config: %w", err)
	}
	return ParseConfig(data)
}

// ParseConfig decodes and defaults a configuration.
func ParseConfig(data []byte) (*Configuration, error) {
	js, err := yaml.YAMLToJSON(data)
	if err != nil {
		return nil, fmt.Errorf("scheduler config: %w", err)
	}
	var c Configuration
	dec := json.NewDecoder(bytes.NewReader(js))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		return nil, fmt.Errorf("scheduler config: %w", err)
	}
	if c.APIVersion != ConfigAPIVersion {
		return nil, fmt.Errorf("scheduler config: apiVersion %q is not supported (want %s)", c.APIVersion, ConfigAPIVersion)
	}
	if c.Kind != ConfigKind {
		return nil, fmt.Errorf("scheduler config: kind %q is not supported (want %s)", c.Kind, ConfigKind)
	}
	if err := c.Complete(); err != nil {
		return nil, err
	}
	return &c, nil
}

// Complete defaults the configuration and validates it.
func (c *Configuration) Complete() error {
	if c.APIVersion == "" {
		c.APIVersion, c.Kind = ConfigAPIVersion, ConfigKind
	}
	if len(c.Extenders) > 0 {
		return fmt.Errorf("scheduler config: extenders are not supported")
	}
	if len(c.Profiles) == 0 {
		c.Profiles = []Profile{{SchedulerName: DefaultSchedulerName}}
	}
	seen := map[string]bool{}
	for i := range c.Profiles {
		p := &c.Profiles[i]
		if p.SchedulerName == "" {
			p.SchedulerName = DefaultSchedulerName
		}
		if seen[p.SchedulerName] {
			return fmt.Errorf("scheduler config: profiles[%d].schedulerName: Duplicate value: %q", i, p.SchedulerName)
		}
		seen[p.SchedulerName] = true
		if v := p.PercentageOfNodesToScore; v != nil && (*v < 0 || *v > 100) {
			return fmt.Errorf("scheduler config: profiles[%d].percentageOfNodesToScore: Invalid value: %d: not in valid range [0-100]", i, *v)
		}
		names := map[string]bool{}
		for j, pc := range p.PluginConfig {
			if names[pc.Name] {
				return fmt.Errorf("scheduler config: profiles[%d].pluginConfig[%d]: Duplicate value: %q", i, j, pc.Name)
			}
			names[pc.Name] = true
		}
	}
	if v := c.PercentageOfNodesToScore; v != nil && (*v < 0 || *v > 100) {
		return fmt.Errorf("scheduler config: percentageOfNodesToScore: Invalid value: %d: not in valid range [0-100]", *v)
	}
	if c.Parallelism != nil && *c.Parallelism <= 0 {
		return fmt.Errorf("scheduler config: parallelism: Invalid value: %d: should be an integer greater than 0", *c.Parallelism)
	}
	ib, mb := c.backoff()
	if ib <= 0 || mb < ib {
		return fmt.Errorf("scheduler config: podInitialBackoffSeconds must be > 0 and podMaxBackoffSeconds >= it")
	}
	return nil
}

func (c *Configuration) backoff() (time.Duration, time.Duration) {
	ib, mb := time.Second, 10*time.Second
	if c.PodInitialBackoffSeconds != nil {
		ib = time.Duration(*c.PodInitialBackoffSeconds) * time.Second
	}
	if c.PodMaxBackoffSeconds != nil {
		mb = time.Duration(*c.PodMaxBackoffSeconds) * time.Second
	}
	return ib, mb
}

// LeaderElect reports whether leader election is on in the file.
func (c *Configuration) LeaderElect() bool {
	return c.LeaderElection != nil && c.LeaderElection.LeaderElect != nil && *c.LeaderElection.LeaderElect
}

// ProfileSpec merges the profile with the default plugins, as upstream:
// a plugin enabled by the user that is also a default keeps the default's
// position with the user's settings; disabled defaults are dropped ("*" drops
// all); the rest of the user's plugins follow.
func (p *Profile) ProfileSpec() framework.ProfileSpec {
	var user Plugins
	if p.Plugins != nil {
		user = *p.Plugins
	}
	spec := framework.ProfileSpec{
		SchedulerName: p.SchedulerName,
		MultiPoint:    toRefs(mergeSet(DefaultMultiPoint(), user.MultiPoint)),
		Points:        map[string][]framework.PluginRef{},
		Disabled:      map[string][]string{},
		Args:          map[string]json.RawMessage{},
	}
	for point, set := range map[string]PluginSet{
		framework.PointQueueSort: user.QueueSort, framework.PointPreFilter: user.PreFilter, framework.PointFilter: user.Filter,
		framework.PointPostFilter: user.PostFilter, framework.PointPreScore: user.PreScore, framework.PointScore: user.Score,
		framework.PointReserve: user.Reserve, framework.PointPermit: user.Permit, framework.PointPreBind: user.PreBind,
		framework.PointBind: user.Bind, framework.PointPostBind: user.PostBind,
	} {
		spec.Points[point] = toRefs(set.Enabled)
		for _, d := range set.Disabled {
			spec.Disabled[point] = append(spec.Disabled[point], d.Name)
		}
	}
	// A weight given at the score point overrides the multi-point weight.
	for _, ref := range user.Score.Enabled {
		for i := range spec.MultiPoint {
			if spec.MultiPoint[i].Name == ref.Name && ref.Weight != nil {
				spec.MultiPoint[i].Weight = *ref.Weight
			}
		}
	}
	for _, pc := range p.PluginConfig {
		spec.Args[pc.Name] = pc.Args
	}
	return spec
}

func mergeSet(defaults []PluginRef, user PluginSet) []PluginRef {
	disabled := map[string]bool{}
	for _, d := range user.Disabled {
		disabled[d.Name] = true
	}
	custom := map[string]int{}
	for i, e := range user.Enabled {
		custom[e.Name] = i
	}
	used := map[int]bool{}
	var out []PluginRef
	for _, d := range defaults {
		if disabled[d.Name] || disabled["*"] {
			continue
		}
		if i, ok := custom[d.Name]; ok {
			e := user.Enabled[i]
			if e.Weight == nil {
				e.Weight = d.Weight
			}
			out = append(out, e)
			used[i] = true
			continue
		}
		out = append(out, d)
	}
	for i, e := range user.Enabled {
		if !used[i] {
			out = append(out, e)
		}
	}
	return out
}

func toRefs(in []PluginRef) []framework.PluginRef {
	out := make([]framework.PluginRef, 0, len(in))
	for _, r := range in {
		w := int32(0)
		if r.Weight != nil {
			w = *r.Weight
		}
		out = append(out, framework.PluginRef{Name: r.Name, Weight: w})
	}
	return out
}
