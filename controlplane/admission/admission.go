// Package admission assembles the API server's admission chain from
// upstream-named plugins, in upstream's fixed order, honouring
// --enable-admission-plugins and --disable-admission-plugins. Each plugin
// lives in its own sub-package.
package admission

import (
	"context"
	"fmt"
	"log/slog"
	"sort"
	"strings"

	"github.com/skiffhq/skiff/controlplane/admission/defaultingressclass"
	"github.com/skiffhq/skiff/controlplane/admission/defaultstorageclass"
	"github.com/skiffhq/skiff/controlplane/admission/defaulttolerationseconds"
	"github.com/skiffhq/skiff/controlplane/admission/internal/objects"
	"github.com/skiffhq/skiff/controlplane/admission/limitranger"
	"github.com/skiffhq/skiff/controlplane/admission/persistentvolumeclaimresize"
	"github.com/skiffhq/skiff/controlplane/admission/podsecurity"
	"github.com/skiffhq/skiff/controlplane/admission/priority"
	"github.com/skiffhq/skiff/controlplane/admission/resourcequota"
	"github.com/skiffhq/skiff/controlplane/admission/serviceaccount"
	"github.com/skiffhq/skiff/controlplane/admission/storageobjectinuseprotection"
	"github.com/skiffhq/skiff/controlplane/admission/webhook"
	"github.com/skiffhq/skiff/controlplane/apiserver"
	"github.com/skiffhq/skiff/controlplane/apiserver/registry"
	"github.com/skiffhq/skiff/controlplane/storage"
)

// Plugin names, as upstream spells them.
const (
	NamespaceLifecycle           = "NamespaceLifecycle"
	LimitRanger                  = "LimitRanger"
	ServiceAccount               = "ServiceAccount"
	PodSecurity                  = "PodSecurity"
	Priority                     = "Priority"
	DefaultTolerationSeconds     = "DefaultTolerationSeconds"
	DefaultStorageClass          = "DefaultStorageClass"
	StorageObjectInUseProtection = "StorageObjectInUseProtection"
	PersistentVolumeClaimResize  = "PersistentVolumeClaimResize"
	DefaultIngressClass          = "DefaultIngressClass"
	MutatingAdmissionWebhook     = "MutatingAdmissionWebhook"
	ValidatingAdmissionWebhook   = "ValidatingAdmissionWebhook"
	ResourceQuota                = "ResourceQuota"
)

// Order is upstream's fixed plugin order (the subset Skiff implements);
// the flags choose which run, never in which order.
var Order = []string{
	NamespaceLifecycle,
	LimitRanger,
	ServiceAccount,
	PodSecurity,
	Priority,
	DefaultTolerationSeconds,
	DefaultStorageClass,
	StorageObjectInUseProtection,
	PersistentVolumeClaimResize,
	DefaultIngressClass,
	MutatingAdmissionWebhook,
	ValidatingAdmissionWebhook,
	ResourceQuota,
}

// defaultOff lists plugins upstream does not enable by default (none of
// the implemented ones today).
var defaultOff = map[string]bool{}

// Config wires the chain.
type Config struct {
	Store    *storage.Store
	Cache    *storage.Cache
	Registry *registry.Registry
	Logger   *slog.Logger
	// Enable and Disable are the --enable-admission-plugins and
	// --disable-admission-plugins lists.
	Enable  []string
	Disable []string
	// Internal plugins always run, right after NamespaceLifecycle.
	Internal []apiserver.AdmissionPlugin
	// PodSecurity is the PodSecurity plugin's configuration (defaults,
	// exemptions); nil = upstream defaults with kube-system exempt.
	PodSecurity *podsecurity.Config
	// QuotaResync is how often the quota controller recomputes all usage
	// (0 = 5 minutes); deletions trigger a recount at once.
	QuotaResync int
}

// Chain is the configured admission chain.
type Chain struct {
	plugins []apiserver.AdmissionPlugin
	enabled map[string]bool
	quota   *resourcequota.Controller
	prio    *priority.Plugin
	log     *slog.Logger
}

// Enabled resolves the flags into the set of plugins that run.
func Enabled(enable, disable []string) (map[string]bool, error) {
	known := map[string]bool{}
	for _, n := range Order {
		known[n] = true
	}
	on := map[string]bool{}
	for _, n := range Order {
		on[n] = !defaultOff[n]
	}
	for _, n := range clean(enable) {
		if !known[n] {
			return nil, fmt.Errorf("enable-admission-plugins plugin %q is unknown (known: %s)", n, strings.Join(sortedNames(), ", "))
		}
		on[n] = true
	}
	for _, n := range clean(disable) {
		if !known[n] {
			return nil, fmt.Errorf("disable-admission-plugins plugin %q is unknown (known: %s)", n, strings.Join(sortedNames(), ", "))
		}
		if containsName(clean(enable), n) {
			return nil, fmt.Errorf("%s in enable-admission-plugins and disable-admission-plugins overlapped", n)
		}
		on[n] = false
	}
	return on, nil
}

// New builds the chain.
func New(cfg Config) (*Chain, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	on, err := Enabled(cfg.Enable, cfg.Disable)
	if err != nil {
		return nil, err
	}
	r := &objects.Reader{Store: cfg.Store, Cache: cfg.Cache, Registry: cfg.Registry}
	c := &Chain{enabled: on, log: cfg.Logger.With("component", "admission")}
	var mutating, validating *webhook.Plugin
	for _, name := range Order {
		if !on[name] {
			continue
		}
		switch name {
		case NamespaceLifecycle:
			c.plugins = append(c.plugins, apiserver.NewNamespaceLifecycle(cfg.Store, cfg.Cache))
		case LimitRanger:
			c.plugins = append(c.plugins, limitranger.New(r))
		case ServiceAccount:
			c.plugins = append(c.plugins, serviceaccount.New(r))
		case PodSecurity:
			psc := podsecurity.DefaultConfig()
			if cfg.PodSecurity != nil {
				psc = *cfg.PodSecurity
			}
			p, err := podsecurity.New(r, psc)
			if err != nil {
				return nil, err
			}
			c.plugins = append(c.plugins, p)
		case Priority:
			c.prio = priority.New(r)
			c.plugins = append(c.plugins, c.prio)
		case DefaultTolerationSeconds:
			c.plugins = append(c.plugins, defaulttolerationseconds.New())
		case DefaultStorageClass:
			c.plugins = append(c.plugins, defaultstorageclass.New(r))
		case StorageObjectInUseProtection:
			c.plugins = append(c.plugins, storageobjectinuseprotection.New())
		case PersistentVolumeClaimResize:
			c.plugins = append(c.plugins, persistentvolumeclaimresize.New(r))
		case DefaultIngressClass:
			c.plugins = append(c.plugins, defaultingressclass.New(r))
		case MutatingAdmissionWebhook:
			mutating = webhook.NewMutating(r, cfg.Logger)
			c.plugins = append(c.plugins, mutating)
		case ValidatingAdmissionWebhook:
			validating = webhook.NewValidating(r, cfg.Logger)
			c.plugins = append(c.plugins, validating)
		case ResourceQuota:
			q := resourcequota.New(r)
			c.quota = resourcequota.NewController(r, cfg.Logger, cfg.QuotaResync)
			c.plugins = append(c.plugins, q)
		}
	}
	at := 0
	if on[NamespaceLifecycle] {
		at = 1
	}
	c.plugins = append(c.plugins[:at], append(append([]apiserver.AdmissionPlugin(nil), cfg.Internal...), c.plugins[at:]...)...)
	return c, nil
}

// Plugins returns the plugins in the order they run.
func (c *Chain) Plugins() []apiserver.AdmissionPlugin { return c.plugins }

// Names returns the names of the enabled upstream plugins, in order.
func (c *Chain) Names() []string {
	var out []string
	for _, n := range Order {
		if c.enabled[n] {
			out = append(out, n)
		}
	}
	return out
}

// Start creates the objects the plugins rely on (the built-in priority
// classes) and runs their background loops (quota usage) until ctx ends.
// ensure creates an object through the API unless it exists.
func (c *Chain) Start(ctx context.Context, ensure priority.Ensurer) error {
	if c.prio != nil {
		if err := priority.EnsureSystemClasses(ctx, ensure); err != nil {
			return fmt.Errorf("system priority classes: %w", err)
		}
	}
	if c.quota != nil {
		go c.quota.Run(ctx)
	}
	return nil
}

func clean(names []string) []string {
	var out []string
	for _, n := range names {
		for _, p := range strings.Split(n, ",") {
			if p = strings.TrimSpace(p); p != "" {
				out = append(out, p)
			}
		}
	}
	return out
}

func containsName(list []string, n string) bool {
	for _, x := range list {
		if x == n {
			return true
		}
	}
	return false
}

func sortedNames() []string {
	out := append([]string(nil), Order...)
	sort.Strings(out)
	return out
}
