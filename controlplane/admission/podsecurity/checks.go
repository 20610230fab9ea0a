package podsecurity

import (
	"fmt"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
)

// result is one failed check: a short reason and its detail.
type result struct {
	reason string
	detail string
}

// container is a container of any kind with its securityContext.
type container struct {
	name string
	sc   *corev1.SecurityContext
	c    *corev1.Container
}

func containersOf(spec *corev1.PodSpec) []container {
	var out []container
	for i := range spec.InitContainers {
		c := &spec.InitContainers[i]
		out = append(out, container{c.Name, c.SecurityContext, c})
	}
	for i := range spec.Containers {
		c := &spec.Containers[i]
		out = append(out, container{c.Name, c.SecurityContext, c})
	}
	for i := range spec.EphemeralContainers {
		c := &spec.EphemeralContainers[i]
		cc := corev1.Container(c.EphemeralContainerCommon)
		out = append(out, container{c.Name, c.SecurityContext, &cc})
	}
	return out
}

// quoted joins names as upstream's details do: "a", "b".
func quoted(names []string) string {
	q := make([]string, len(names))
	for i, n := range names {
		q[i] = fmt.Sprintf("%q", n)
	}
	return strings.Join(q, ", ")
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// baseline runs the Baseline profile's checks.
func baseline(meta map[string]string, spec *corev1.PodSpec) []result {
	var out []result
	cs := containersOf(spec)

	// Host namespaces.
	var hostNS []string
	if spec.HostNetwork {
		hostNS = append(hostNS, "hostNetwork=true")
	}
	if spec.HostPID {
		hostNS = append(hostNS, "hostPID=true")
	}
	if spec.HostIPC {
		hostNS = append(hostNS, "hostIPC=true")
	}
	if len(hostNS) > 0 {
		out = append(out, result{"host namespaces", strings.Join(hostNS, ", ")})
	}

	// Privileged containers.
	var priv []string
	for _, c := range cs {
		if c.sc != nil && c.sc.Privileged != nil && *c.sc.Privileged {
			priv = append(priv, c.name)
		}
	}
	if len(priv) > 0 {
		out = append(out, result{"privileged", fmt.Sprintf("%s %s must not set securityContext.privileged=true", plural(len(priv), "container", "containers"), quoted(priv))})
	}

	// Capabilities beyond the default set.
	var capDetails []string
	var capNames []string
	badCaps := map[string]bool{}
	for _, c := range cs {
		if c.sc == nil || c.sc.Capabilities == nil {
			continue
		}
		found := false
		for _, cp := range c.sc.Capabilities.Add {
			if !baselineCaps[string(cp)] {
				badCaps[string(cp)] = true
				found = true
			}
		}
		if found {
			capNames = append(capNames, c.name)
		}
	}
	if len(capNames) > 0 {
		caps := sortedSet(badCaps)
		capDetails = append(capDetails, fmt.Sprintf("%s %s must not include %s in securityContext.capabilities.add", plural(len(capNames), "container", "containers"), quoted(capNames), quoted(caps)))
		out = append(out, result{"non-default capabilities", strings.Join(capDetails, "; ")})
	}

	// hostPath volumes.
	var hostPaths []string
	for _, v := range spec.Volumes {
		if v.HostPath != nil {
			hostPaths = append(hostPaths, v.Name)
		}
	}
	if len(hostPaths) > 0 {
		out = append(out, result{"hostPath volumes", fmt.Sprintf("%s %s", plural(len(hostPaths), "volume", "volumes"), quoted(hostPaths))})
	}

	// Host ports.
	var portNames []string
	var ports []string
	for _, c := range cs {
		found := false
		for _, p := range c.c.Ports {
			if p.HostPort != 0 {
				ports = append(ports, fmt.Sprint(p.HostPort))
				found = true
			}
		}
		if found {
			portNames = append(portNames, c.name)
		}
	}
	if len(portNames) > 0 {
		out = append(out, result{"hostPort", fmt.Sprintf("%s %s %s %s", plural(len(portNames), "container", "containers"), quoted(portNames), plural(len(ports), "uses hostPort", "uses hostPorts"), strings.Join(ports, ", "))})
	}

	// AppArmor.
	var aa []string
	for k, v := range meta {
		if strings.HasPrefix(k, "container.apparmor.security.beta.kubernetes.io/") && v != "runtime/default" && !strings.HasPrefix(v, "localhost/") && v != "" {
			aa = append(aa, fmt.Sprintf("%s=%q", k, v))
		}
	}
	if spec.SecurityContext != nil && spec.SecurityContext.AppArmorProfile != nil && spec.SecurityContext.AppArmorProfile.Type == corev1.AppArmorProfileTypeUnconfined {
		aa = append(aa, `pod must not set securityContext.appArmorProfile.type to "Unconfined"`)
	}
	for _, c := range cs {
		if c.sc != nil && c.sc.AppArmorProfile != nil && c.sc.AppArmorProfile.Type == corev1.AppArmorProfileTypeUnconfined {
			aa = append(aa, fmt.Sprintf(`container %q must not set securityContext.appArmorProfile.type to "Unconfined"`, c.name))
		}
	}
	if len(aa) > 0 {
		sort.Strings(aa)
		out = append(out, result{"forbidden AppArmor profile", strings.Join(aa, ", ")})
	}

	// SELinux.
	var se []string
	checkSE := func(who string, o *corev1.SELinuxOptions) {
		if o == nil {
			return
		}
		var bad []string
		if !seLinuxTypes[o.Type] {
			bad = append(bad, fmt.Sprintf("type %q", o.Type))
		}
		if o.User != "" {
			bad = append(bad, fmt.Sprintf("user %q", o.User))
		}
		if o.Role != "" {
			bad = append(bad, fmt.Sprintf("role %q", o.Role))
		}
		if len(bad) > 0 {
			se = append(se, fmt.Sprintf("%s set forbidden securityContext.seLinuxOptions: %s", who, strings.Join(bad, ", ")))
		}
	}
	if spec.SecurityContext != nil {
		checkSE("pod", spec.SecurityContext.SELinuxOptions)
	}
	for _, c := range cs {
		if c.sc != nil {
			checkSE(fmt.Sprintf("container %q", c.name), c.sc.SELinuxOptions)
		}
	}
	if len(se) > 0 {
		out = append(out, result{"seLinuxOptions", strings.Join(se, "; ")})
	}

	// /proc mount.
	var pm []string
	for _, c := range cs {
		if c.sc != nil && c.sc.ProcMount != nil && *c.sc.ProcMount != corev1.DefaultProcMount {
			pm = append(pm, c.name)
		}
	}
	if len(pm) > 0 {
		out = append(out, result{"procMount", fmt.Sprintf("%s %s must not set securityContext.procMount to %q", plural(len(pm), "container", "containers"), quoted(pm), corev1.UnmaskedProcMount)})
	}

	// Seccomp Unconfined.
	var sc []string
	if spec.SecurityContext != nil && spec.SecurityContext.SeccompProfile != nil && spec.SecurityContext.SeccompProfile.Type == corev1.SeccompProfileTypeUnconfined {
		sc = append(sc, `pod must not set securityContext.seccompProfile.type to "Unconfined"`)
	}
	var scNames []string
	for _, c := range cs {
		if c.sc != nil && c.sc.SeccompProfile != nil && c.sc.SeccompProfile.Type == corev1.SeccompProfileTypeUnconfined {
			scNames = append(scNames, c.name)
		}
	}
	if len(scNames) > 0 {
		sc = append(sc, fmt.Sprintf(`%s %s must not set securityContext.seccompProfile.type to "Unconfined"`, plural(len(scNames), "container", "containers"), quoted(scNames)))
	}
	if len(sc) > 0 {
		out = append(out, result{"seccompProfile", strings.Join(sc, "; ")})
	}

	// Sysctls.
	if spec.SecurityContext != nil {
		var bad []string
		for _, s := range spec.SecurityContext.Sysctls {
			if !safeSysctls[s.Name] {
				bad = append(bad, s.Name)
			}
		}
		if len(bad) > 0 {
			out = append(out, result{"forbidden sysctls", strings.Join(bad, ", ")})
		}
	}

	// Windows HostProcess.
	hp := spec.SecurityContext != nil && spec.SecurityContext.WindowsOptions != nil && spec.SecurityContext.WindowsOptions.HostProcess != nil && *spec.SecurityContext.WindowsOptions.HostProcess
	for _, c := range cs {
		if c.sc != nil && c.sc.WindowsOptions != nil && c.sc.WindowsOptions.HostProcess != nil && *c.sc.WindowsOptions.HostProcess {
			hp = true
		}
	}
	if hp {
		out = append(out, result{"hostProcess", "pod or containers must not set securityContext.windowsOptions.hostProcess=true"})
	}
	return out
}

// restricted runs the Restricted profile's checks on top of Baseline.
func restricted(meta map[string]string, spec *corev1.PodSpec) []result {
	// The restricted capability and seccomp checks replace baseline's.
	var out []result
	for _, r := range baseline(meta, spec) {
		if r.reason != "non-default capabilities" && r.reason != "seccompProfile" {
			out = append(out, r)
		}
	}
	cs := containersOf(spec)
	psc := spec.SecurityContext

	// Volume types.
	var vols []string
	types := map[string]bool{}
	for _, v := range spec.Volumes {
		if t := restrictedVolumeType(v.VolumeSource); t != "" {
			vols = append(vols, v.Name)
			types[t] = true
		}
	}
	if len(vols) > 0 {
		ts := sortedSet(types)
		out = append(out, result{"restricted volume types", fmt.Sprintf("%s %s %s %s", plural(len(vols), "volume", "volumes"), quoted(vols), plural(len(vols), "uses restricted volume type", "use restricted volume types"), quoted(ts))})
	}

	// allowPrivilegeEscalation=false.
	var ape []string
	for _, c := range cs {
		if c.sc == nil || c.sc.AllowPrivilegeEscalation == nil || *c.sc.AllowPrivilegeEscalation {
			ape = append(ape, c.name)
		}
	}
	if len(ape) > 0 {
		out = append(out, result{"allowPrivilegeEscalation != false", fmt.Sprintf("%s %s must set securityContext.allowPrivilegeEscalation=false", plural(len(ape), "container", "containers"), quoted(ape))})
	}

	// Capabilities: drop ALL, add at most NET_BIND_SERVICE.
	var noDrop, badAdd []string
	badCaps := map[string]bool{}
	for _, c := range cs {
		dropped := false
		if c.sc != nil && c.sc.Capabilities != nil {
			for _, d := range c.sc.Capabilities.Drop {
				if d == "ALL" {
					dropped = true
				}
			}
			found := false
			for _, a := range c.sc.Capabilities.Add {
				if a != "NET_BIND_SERVICE" {
					badCaps[string(a)] = true
					found = true
				}
			}
			if found {
				badAdd = append(badAdd, c.name)
			}
		}
		if !dropped {
			noDrop = append(noDrop, c.name)
		}
	}
	var capDetails []string
	if len(noDrop) > 0 {
		capDetails = append(capDetails, fmt.Sprintf(`%s %s must set securityContext.capabilities.drop=["ALL"]`, plural(len(noDrop), "container", "containers"), quoted(noDrop)))
	}
	if len(badAdd) > 0 {
		capDetails = append(capDetails, fmt.Sprintf("%s %s must not include %s in securityContext.capabilities.add", plural(len(badAdd), "container", "containers"), quoted(badAdd), quoted(sortedSet(badCaps))))
	}
	if len(capDetails) > 0 {
		out = append(out, result{"unrestricted capabilities", strings.Join(capDetails, "; ")})
	}

	// runAsNonRoot=true.
	podNonRoot := psc != nil && psc.RunAsNonRoot != nil && *psc.RunAsNonRoot
	var explicitFalse []string
	if psc != nil && psc.RunAsNonRoot != nil && !*psc.RunAsNonRoot {
		explicitFalse = append(explicitFalse, "pod")
	}
	var unset []string
	for _, c := range cs {
		if c.sc != nil && c.sc.RunAsNonRoot != nil {
			if !*c.sc.RunAsNonRoot {
				explicitFalse = append(explicitFalse, fmt.Sprintf("container %q", c.name))
			}
			continue
		}
		if !podNonRoot {
			unset = append(unset, c.name)
		}
	}
	var nr []string
	if len(explicitFalse) > 0 {
		nr = append(nr, fmt.Sprintf("%s must not set securityContext.runAsNonRoot=false", strings.Join(explicitFalse, " and ")))
	}
	if len(unset) > 0 {
		nr = append(nr, fmt.Sprintf("pod or %s %s must set securityContext.runAsNonRoot=true", plural(len(unset), "container", "containers"), quoted(unset)))
	}
	if len(nr) > 0 {
		out = append(out, result{"runAsNonRoot != true", strings.Join(nr, "; ")})
	}

	// runAsUser != 0.
	var root []string
	if psc != nil && psc.RunAsUser != nil && *psc.RunAsUser == 0 {
		root = append(root, "pod")
	}
	var rootCs []string
	for _, c := range cs {
		if c.sc != nil && c.sc.RunAsUser != nil && *c.sc.RunAsUser == 0 {
			rootCs = append(rootCs, c.name)
		}
	}
	if len(rootCs) > 0 {
		root = append(root, fmt.Sprintf("%s %s", plural(len(rootCs), "container", "containers"), quoted(rootCs)))
	}
	if len(root) > 0 {
		out = append(out, result{"runAsUser=0", fmt.Sprintf("%s must not set runAsUser=0", strings.Join(root, " and "))})
	}

	// Seccomp RuntimeDefault or Localhost.
	podSeccomp := psc != nil && psc.SeccompProfile != nil && okSeccomp(psc.SeccompProfile.Type)
	var noSeccomp []string
	for _, c := range cs {
		if c.sc != nil && c.sc.SeccompProfile != nil {
			if okSeccomp(c.sc.SeccompProfile.Type) {
				continue
			}
			noSeccomp = append(noSeccomp, c.name)
			continue
		}
		if !podSeccomp {
			noSeccomp = append(noSeccomp, c.name)
		}
	}
	if len(noSeccomp) > 0 {
		out = append(out, result{"seccompProfile", fmt.Sprintf(`pod or %s %s must set securityContext.seccompProfile.type to "RuntimeDefault" or "Localhost"`, plural(len(noSeccomp), "container", "containers"), quoted(noSeccomp))})
	}
	return out
}

// checkIDs orders results as upstream reports them: by check ID.
var checkIDs = map[string]string{
	"allowPrivilegeEscalation != false": "allowPrivilegeEscalation",
	"forbidden AppArmor profile":        "appArmorProfile",
	"non-default capabilities":          "capabilities_baseline",
	"unrestricted capabilities":         "capabilities_restricted",
	"host namespaces":                   "hostNamespaces",
	"hostPath volumes":                  "hostPathVolumes",
	"hostPort":                          "hostPorts",
	"privileged":                        "privileged",
	"procMount":                         "procMount",
	"restricted volume types":           "restrictedVolumes",
	"runAsNonRoot != true":              "runAsNonRoot",
	"runAsUser=0":                       "runAsUser",
	"seLinuxOptions":                    "seLinuxOptions",
	"seccompProfile":                    "seccompProfile",
	"forbidden sysctls":                 "sysctls",
	"hostProcess":                       "windowsHostProcess",
}

func sortResults(rs []result) {
	sort.SliceStable(rs, func(i, j int) bool { return checkIDs[rs[i].reason] < checkIDs[rs[j].reason] })
}

func okSeccomp(t corev1.SeccompProfileType) bool {
	return t == corev1.SeccompProfileTypeRuntimeDefault || t == corev1.SeccompProfileTypeLocalhost
}

func restrictedVolumeType(v corev1.VolumeSource) string {
	switch {
	case v.ConfigMap != nil, v.CSI != nil, v.DownwardAPI != nil, v.EmptyDir != nil, v.Ephemeral != nil,
		v.PersistentVolumeClaim != nil, v.Projected != nil, v.Secret != nil:
		return ""
	case v.HostPath != nil:
		return "hostPath"
	case v.GCEPersistentDisk != nil:
		return "gcePersistentDisk"
	case v.AWSElasticBlockStore != nil:
		return "awsElasticBlockStore"
	case v.GitRepo != nil:
		return "gitRepo"
	case v.NFS != nil:
		return "nfs"
	case v.ISCSI != nil:
		return "iscsi"
	case v.Glusterfs != nil:
		return "glusterfs"
	case v.RBD != nil:
		return "rbd"
	case v.FlexVolume != nil:
		return "flexVolume"
	case v.Cinder != nil:
		return "cinder"
	case v.CephFS != nil:
		return "cephfs"
	case v.Flocker != nil:
		return "flocker"
	case v.FC != nil:
		return "fc"
	case v.AzureFile != nil:
		return "azureFile"
	case v.VsphereVolume != nil:
		return "vsphereVolume"
	case v.Quobyte != nil:
		return "quobyte"
	case v.AzureDisk != nil:
		return "azureDisk"
	case v.PhotonPersistentDisk != nil:
		return "photonPersistentDisk"
	case v.PortworxVolume != nil:
		return "portworxVolume"
	case v.ScaleIO != nil:
		return "scaleIO"
	case v.StorageOS != nil:
		return "storageos"
	case v.Image != nil:
		return ""
	}
	return "unknown"
}

var baselineCaps = map[string]bool{
	"AUDIT_WRITE": true, "CHOWN": true, "DAC_OVERRIDE": true, "FOWNER": true, "FSETID": true, "KILL": true,
	"MKNOD": true, "NET_BIND_SERVICE": true, "SETFCAP": true, "SETGID": true, "SETPCAP": true, "SETUID": true, "SYS_CHROOT": true,
}

var seLinuxTypes = map[string]bool{"": true, "container_t": true, "container_init_t": true, "container_kvm_t": true, "container_engine_t": true}

var safeSysctls = map[string]bool{
	"kernel.shm_rmid_forced": true, "net.ipv4.ip_local_port_range": true, "net.ipv4.ip_unprivileged_port_start": true,
	"net.ipv4.tcp_syncookies": true, "net.ipv4.ping_group_range": true, "net.ipv4.ip_local_reserved_ports": true,
	"net.ipv4.tcp_keepalive_time": true, "net.ipv4.tcp_fin_timeout": true, "net.ipv4.tcp_keepalive_intvl": true,
	"net.ipv4.tcp_keepalive_probes": true, "net.ipv4.tcp_rmem": true, "net.ipv4.tcp_wmem": true,
}

func sortedSet(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
