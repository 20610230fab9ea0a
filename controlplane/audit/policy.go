// Package audit writes the API server's audit log: upstream audit.k8s.io/v1
// Events as JSON lines, one per request stage, at the level an
// audit.k8s.io/v1 Policy picks. Secrets, service account tokens and token
// reviews are always logged at Metadata level at most, whatever the policy
// says, so that no credential ever reaches the log.
package audit

import (
	"fmt"
	"os"
	"slices"
	"strings"

	"github.com/skiffhq/skiff/controlplane/apiserver"
	"sigs.k8s.io/yaml"
)

// Level is how much of a request is logged.
type Level string

// Levels, from least to most.
const (
	LevelNone            Level = "None"
	LevelMetadata        Level = "Metadata"
	LevelRequest         Level = "Request"
	LevelRequestResponse Level = "RequestResponse"
)

func (l Level) rank() int {
	switch l {
	case LevelMetadata:
		return 1
	case LevelRequest:
		return 2
	case LevelRequestResponse:
		return 3
	}
	return 0
}

// Less reports whether l logs less than o.
func (l Level) Less(o Level) bool { return l.rank() < o.rank() }

// Stage is a point in a request's life an event is written at.
type Stage string

// Stages, as upstream.
const (
	StageRequestReceived  Stage = "RequestReceived"
	StageResponseStarted  Stage = "ResponseStarted"
	StageResponseComplete Stage = "ResponseComplete"
	StagePanic            Stage = "Panic"
)

// Policy is upstream's audit.k8s.io/v1 Policy.
type Policy struct {
	APIVersion        string  `json:"apiVersion"`
	Kind              string  `json:"kind"`
	Rules             []Rule  `json:"rules"`
	OmitStages        []Stage `json:"omitStages,omitempty"`
	OmitManagedFields bool    `json:"omitManagedFields,omitempty"`
}

// Rule maps requests to a level; the first matching rule decides.
type Rule struct {
	Level           Level            `json:"level"`
	Users           []string         `json:"users,omitempty"`
	UserGroups      []string         `json:"userGroups,omitempty"`
	Verbs           []string         `json:"verbs,omitempty"`
	Resources       []GroupResources `json:"resources,omitempty"`
	Namespaces      []string         `json:"namespaces,omitempty"`
	NonResourceURLs []string         `json:"nonResourceURLs,omitempty"`
	OmitStages      []Stage          `json:"omitStages,omitempty"`
	// OmitManagedFields overrides the policy's when set.
	OmitManagedFields *bool `json:"omitManagedFields,omitempty"`
}

// GroupResources selects resources of one API group.
type GroupResources struct {
	Group         string   `json:"group,omitempty"`
	Resources     []string `json:"resources,omitempty"`
	ResourceNames []string `json:"resourceNames,omitempty"`
}

// DefaultPolicy logs every request at Metadata level.
func DefaultPolicy() *Policy {
	return &Policy{APIVersion: "audit.k8s.io/v1", Kind: "Policy", Rules: []Rule{{Level: LevelMetadata}}}
}

// LoadPolicy reads and validates a Policy file (YAML or JSON).
func LoadPolicy(path string) (*Policy, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read audit policy: %w", err)
	}
	return ParsePolicy(b)
}

// ParsePolicy parses and validates a Policy.
func ParsePolicy(b []byte) (*Policy, error) {
	var p Policy
	if err := yaml.UnmarshalStrict(b, &p); err != nil {
		return nil, fmt.Errorf("parse audit policy: %w", err)
	}
	if p.Kind != "Policy" || (p.APIVersion != "audit.k8s.io/v1" && p.APIVersion != "audit.k8s.io/v1beta1") {
		return nil, fmt.Errorf("audit policy: apiVersion/kind must be audit.k8s.io/v1 Policy, got %s %s", p.APIVersion, p.Kind)
	}
	if len(p.Rules) == 0 {
		return nil, fmt.Errorf("audit policy: rules: Required value: at least one rule must be specified")
	}
	for _, s := range p.OmitStages {
		if !validStage(s) {
			return nil, fmt.Errorf("audit policy: omitStages: Unsupported value: %q", s)
		}
	}
	for i, r := range p.Rules {
		if r.Level != LevelNone && !r.rankOK() {
			return nil, fmt.Errorf("audit policy: rules[%d].level: Unsupported value: %q", i, r.Level)
		}
		if len(r.NonResourceURLs) > 0 && (len(r.Resources) > 0 || len(r.Namespaces) > 0) {
			return nil, fmt.Errorf("audit policy: rules[%d].nonResourceURLs: Invalid value: rules cannot apply to both regular resources and non-resource URLs", i)
		}
		for j, u := range r.NonResourceURLs {
			if strings.Contains(strings.TrimSuffix(u, "*"), "*") {
				return nil, fmt.Errorf("audit policy: rules[%d].nonResourceURLs[%d]: Invalid value: %q: non-resource URL rules may only use the '*' matcher as the final character", i, j, u)
			}
		}
		for _, s := range r.OmitStages {
			if !validStage(s) {
				return nil, fmt.Errorf("audit policy: rules[%d].omitStages: Unsupported value: %q", i, s)
			}
		}
	}
	return &p, nil
}

func (r Rule) rankOK() bool { return r.Level.rank() > 0 }

func validStage(s Stage) bool {
	switch s {
	case StageRequestReceived, StageResponseStarted, StageResponseComplete, StagePanic:
		return true
	}
	return false
}

// decision is the policy's answer for one request.
type decision struct {
	level      Level
	omitStages []Stage
}

// evaluate returns the level of the first matching rule (None if none).
func (p *Policy) evaluate(u *apiserver.UserInfo, info *apiserver.RequestInfo) decision {
	for _, r := range p.Rules {
		if r.matches(u, info) {
			return decision{level: r.Level, omitStages: append(slices.Clone(p.OmitStages), r.OmitStages...)}
		}
	}
	return decision{level: LevelNone}
}

func (r *Rule) matches(u *apiserver.UserInfo, info *apiserver.RequestInfo) bool {
	if len(r.Users) > 0 && (u == nil || !slices.Contains(r.Users, u.Name)) {
		return false
	}
	if len(r.UserGroups) > 0 {
		if u == nil || !slices.ContainsFunc(u.Groups, func(g string) bool { return slices.Contains(r.UserGroups, g) }) {
			return false
		}
	}
	if len(r.Verbs) > 0 && !slices.Contains(r.Verbs, info.Verb) {
		return false
	}
	if len(r.Namespaces) > 0 || len(r.Resources) > 0 {
		return r.matchesResource(info)
	}
	if len(r.NonResourceURLs) > 0 {
		return r.matchesNonResource(info)
	}
	return true
}

func (r *Rule) matchesNonResource(info *apiserver.RequestInfo) bool {
	if info.IsResourceRequest {
		return false
	}
	for _, spec := range r.NonResourceURLs {
		if spec == "*" || spec == info.Path || (strings.HasSuffix(spec, "*") && strings.HasPrefix(info.Path, strings.TrimSuffix(spec, "*"))) {
			return true
		}
	}
	return false
}

func (r *Rule) matchesResource(info *apiserver.RequestInfo) bool {
	if !info.IsResourceRequest {
		return false
	}
	if len(r.Namespaces) > 0 && !slices.Contains(r.Namespaces, info.Namespace) {
		return false
	}
	if len(r.Resources) == 0 {
		return true
	}
	combined := info.Resource
	if info.Subresource != "" {
		combined += "/" + info.Subresource
	}
	for _, gr := range r.Resources {
		if gr.Group != info.APIGroup {
			continue
		}
		if len(gr.Resources) == 0 {
			return true
		}
		if len(gr.ResourceNames) > 0 && !slices.Contains(gr.ResourceNames, info.Name) {
			continue
		}
		for _, res := range gr.Resources {
			switch {
			case res == combined, res == "*":
				return true
			case info.Subresource != "" && strings.HasPrefix(res, "*/") && res[2:] == info.Subresource:
				return true
			case strings.HasSuffix(res, "/*") && strings.TrimSuffix(res, "/*") == info.Resource:
				return true
			}
		}
	}
	return false
}

// sensitive reports requests whose bodies carry credentials: they are
// never logged above Metadata.
func sensitive(info *apiserver.RequestInfo) bool {
	if !info.IsResourceRequest {
		return false
	}
	switch {
	case info.APIGroup == "" && info.Resource == "secrets":
		return true
	case info.APIGroup == "" && info.Resource == "serviceaccounts" && info.Subresource == "token":
		return true
	case info.APIGroup == "authentication.k8s.io" && info.Resource == "tokenreviews":
		return true
	}
	return false
}
