package runtime

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/containerd/containerd/v2/core/containers"
	"github.com/containerd/containerd/v2/pkg/oci"
	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// Security is the part of a container's securityContext that the runtime
// turns into its OCI spec beyond user, group, privileged and read-only
// root (ContainerConfig's own fields), the way containerd's CRI plugin
// does for the kubelet.
type Security struct {
	// AddCaps and DropCaps are capability names as Kubernetes spells them
	// (CHOWN, NET_ADMIN, or ALL); the "CAP_" prefix is optional. They
	// change containerd's default set; ALL in DropCaps starts from none.
	// They are ignored for privileged containers (which get every one).
	AddCaps, DropCaps []string
	// NoNewPrivileges sets no_new_privs (allowPrivilegeEscalation: false);
	// without it the process may gain privileges (setuid binaries work).
	NoNewPrivileges bool
	// SupplementalGroups are added to the process's groups (the pod's
	// supplementalGroups and fsGroup).
	SupplementalGroups []uint32
}

// securityOpts are the spec options for sec, applied after the user.
func securityOpts(sec *Security, privileged bool) []oci.SpecOpts {
	if sec == nil {
		return nil
	}
	var opts []oci.SpecOpts
	if !privileged {
		// ALL first, so that single names still apply on top of it
		// (add ALL + drop CHOWN is every capability but CHOWN).
		if containsCap(sec.AddCaps, "ALL") {
			opts = append(opts, oci.WithAllKnownCapabilities)
		}
		if containsCap(sec.DropCaps, "ALL") {
			opts = append(opts, oci.WithCapabilities(nil))
		}
		if add := capNames(sec.AddCaps); len(add) > 0 {
			opts = append(opts, oci.WithAddedCapabilities(add))
		}
		if drop := capNames(sec.DropCaps); len(drop) > 0 {
			opts = append(opts, oci.WithDroppedCapabilities(drop))
		}
	}
	// containerd's default spec sets no_new_privs; Kubernetes containers
	// have it only when allowPrivilegeEscalation is false.
	if sec.NoNewPrivileges {
		opts = append(opts, oci.WithNoNewPrivileges)
	} else {
		opts = append(opts, oci.WithNewPrivileges)
	}
	if len(sec.SupplementalGroups) > 0 {
		opts = append(opts, withSupplementalGroups(sec.SupplementalGroups))
	}
	return opts
}

func containsCap(caps []string, name string) bool {
	for _, c := range caps {
		if strings.EqualFold(strings.TrimPrefix(strings.ToUpper(c), "CAP_"), name) {
			return true
		}
	}
	return false
}

// capNames turns Kubernetes names into OCI ones (CAP_CHOWN), without ALL.
func capNames(caps []string) []string {
	var out []string
	for _, c := range caps {
		n := strings.ToUpper(c)
		if strings.TrimPrefix(n, "CAP_") == "ALL" {
			continue
		}
		if !strings.HasPrefix(n, "CAP_") {
			n = "CAP_" + n
		}
		out = append(out, n)
	}
	return out
}

func withSupplementalGroups(gids []uint32) oci.SpecOpts {
	return func(_ context.Context, _ oci.Client, _ *containers.Container, s *oci.Spec) error {
		if s.Process == nil {
			s.Process = &specs.Process{}
		}
		u := &s.Process.User
		if !slices.Contains(u.AdditionalGids, u.GID) {
			u.AdditionalGids = append([]uint32{u.GID}, u.AdditionalGids...)
		}
		for _, g := range gids {
			if !slices.Contains(u.AdditionalGids, g) {
				u.AdditionalGids = append(u.AdditionalGids, g)
			}
		}
		return nil
	}
}

// ImageUser is the USER of an image's config ("" when unset): "1000",
// "1000:1000", "nobody" or "nobody:nogroup".
func (r *Runtime) ImageUser(ctx context.Context, ref string) (string, error) {
	ctx = r.ctx(ctx)
	img, err := r.client.GetImage(ctx, ref)
	if errdefs.IsNotFound(err) {
		return "", fmt.Errorf("%s: %w", ref, ErrImageNotFound)
	}
	if err != nil {
		return "", fmt.Errorf("get image %s: %w", ref, err)
	}
	spec, err := img.Spec(ctx)
	if err != nil {
		return "", fmt.Errorf("image config of %s: %w", ref, err)
	}
	return spec.Config.User, nil
}

// withGID sets the primary group and keeps the image's user.
func withGID(gid uint32) oci.SpecOpts {
	return func(_ context.Context, _ oci.Client, _ *containers.Container, s *oci.Spec) error {
		if s.Process == nil {
			s.Process = &specs.Process{}
		}
		s.Process.User.GID = gid
		return nil
	}
}
