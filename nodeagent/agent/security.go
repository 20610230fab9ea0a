package agent

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/skiffhq/skiff/nodeagent/runtime"
	corev1 "k8s.io/api/core/v1"
)

// securityContext → runtime, as the kubelet with containerd's CRI plugin:
// the container's securityContext overrides the pod's for user, group and
// runAsNonRoot; capabilities, privileged, readOnlyRootFilesystem and
// allowPrivilegeEscalation are the container's; supplementalGroups and
// fsGroup are the pod's and become extra groups of every process, and
// fsGroup also owns the pod's emptyDir, configMap, secret, projected and
// downwardAPI volumes.

// applySecurity completes cfg (whose user, group, privileged and
// read-only root containerConfig set) and enforces runAsNonRoot; its
// errors are CreateContainerConfigError.
func (a *Agent) applySecurity(ctx context.Context, pod *corev1.Pod, c *corev1.Container, img runtime.Image, cfg *runtime.ContainerConfig) error {
	sc, psc := c.SecurityContext, pod.Spec.SecurityContext
	if err := a.verifyRunAsNonRoot(ctx, pod, c, img); err != nil {
		return err
	}
	sec := &runtime.Security{}
	if sc != nil {
		if sc.Capabilities != nil {
			for _, cp := range sc.Capabilities.Add {
				sec.AddCaps = append(sec.AddCaps, string(cp))
			}
			for _, cp := range sc.Capabilities.Drop {
				sec.DropCaps = append(sec.DropCaps, string(cp))
			}
		}
		// no_new_privs only when asked for explicitly (upstream's
		// AddNoNewPrivileges); privileged containers never get it.
		sec.NoNewPrivileges = sc.AllowPrivilegeEscalation != nil && !*sc.AllowPrivilegeEscalation && !cfg.Privileged
	}
	if psc != nil {
		for _, g := range psc.SupplementalGroups {
			sec.SupplementalGroups = append(sec.SupplementalGroups, uint32(g))
		}
		if psc.FSGroup != nil {
			sec.SupplementalGroups = append(sec.SupplementalGroups, uint32(*psc.FSGroup))
		}
	}
	cfg.Security = sec
	return nil
}

// verifyRunAsNonRoot is upstream's check with its messages: with
// runAsNonRoot, the user must be known and not 0 (runAsUser, else the
// image's numeric USER; no USER means root).
func (a *Agent) verifyRunAsNonRoot(ctx context.Context, pod *corev1.Pod, c *corev1.Container, img runtime.Image) error {
	var nonRoot *bool
	var runAsUser *int64
	if psc := pod.Spec.SecurityContext; psc != nil {
		nonRoot, runAsUser = psc.RunAsNonRoot, psc.RunAsUser
	}
	if sc := c.SecurityContext; sc != nil {
		if sc.RunAsNonRoot != nil {
			nonRoot = sc.RunAsNonRoot
		}
		if sc.RunAsUser != nil {
			runAsUser = sc.RunAsUser
		}
	}
	if nonRoot == nil || !*nonRoot {
		return nil
	}
	if runAsUser != nil {
		if *runAsUser == 0 {
			return fmt.Errorf("container's runAsUser breaks non-root policy (pod: %q, container: %s)", podRef(pod), c.Name)
		}
		return nil
	}
	user, err := a.rt.ImageUser(ctx, img.Ref)
	if err != nil {
		return fmt.Errorf("inspect image user: %w", err)
	}
	name := strings.SplitN(user, ":", 2)[0]
	if name == "" {
		name = "0" // no USER: the image runs as root
	}
	uid, err := strconv.ParseInt(name, 10, 64)
	switch {
	case err != nil:
		return fmt.Errorf("container has runAsNonRoot and image has non-numeric user (%s), cannot verify user is non-root (pod: %q, container: %s)", name, podRef(pod), c.Name)
	case uid == 0:
		return fmt.Errorf("container has runAsNonRoot and image will run as root (pod: %q, container: %s)", podRef(pod), c.Name)
	}
	return nil
}

// Upstream's volume ownership masks (pkg/volume SetVolumeOwnership).
const (
	rwMask   = fs.FileMode(0o660)
	roMask   = fs.FileMode(0o440)
	execMask = fs.FileMode(0o110)
)

// applyFSGroup gives the pod's fsGroup the volumes that support ownership
// management: every file's group becomes fsGroup with group read (and
// write for emptyDir), folders get setgid so new files inherit the group.
// An emptyDir whose root is already right is left alone (it changes only
// through the containers, whose files inherit the group), and so is any
// volume with fsGroupChangePolicy OnRootMismatch.
func applyFSGroup(pod *corev1.Pod, mounts map[string]string) error {
	psc := pod.Spec.SecurityContext
	if psc == nil || psc.FSGroup == nil {
		return nil
	}
	gid := int(*psc.FSGroup)
	onRootMismatch := psc.FSGroupChangePolicy != nil && *psc.FSGroupChangePolicy == corev1.FSGroupChangeOnRootMismatch
	for _, v := range pod.Spec.Volumes {
		readOnly := true
		switch {
		case v.EmptyDir != nil:
			readOnly = false
		case v.ConfigMap != nil, v.Secret != nil, v.Projected != nil, v.DownwardAPI != nil:
		case v.PersistentVolumeClaim != nil && mounts[fsGroupKey(v.Name)] != "":
			readOnly = false
		default:
			continue
		}
		dir := mounts[v.Name]
		if dir == "" {
			continue
		}
		if (onRootMismatch || v.EmptyDir != nil) && rootOwned(dir, gid, readOnly) {
			continue
		}
		if err := setOwnership(dir, gid, readOnly); err != nil {
			return fmt.Errorf("MountVolume.SetUp failed for volume %q : set fsGroup %d: %w", v.Name, gid, err)
		}
	}
	return nil
}

func rootOwned(dir string, gid int, readOnly bool) bool {
	st, err := os.Stat(dir)
	if err != nil {
		return false
	}
	sys, ok := st.Sys().(*syscall.Stat_t)
	if !ok || int(sys.Gid) != gid {
		return false
	}
	mask := rwMask | execMask | fs.ModeSetgid
	if readOnly {
		mask = roMask | execMask | fs.ModeSetgid
	}
	return st.Mode()&mask == mask
}

func setOwnership(dir string, gid int, readOnly bool) error {
	return filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := os.Lchown(p, -1, gid); err != nil {
			return err
		}
		if d.Type()&fs.ModeSymlink != 0 {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		mask := rwMask
		if readOnly {
			mask = roMask
		}
		if info.IsDir() {
			mask |= fs.ModeSetgid | execMask
		}
		return os.Chmod(p, info.Mode()|mask)
	})
}
