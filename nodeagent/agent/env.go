package agent

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/skiffhq/skiff/nodeagent/runtime"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// containerConfig turns a pod's container into what the runtime creates.
func (a *Agent) containerConfig(ctx context.Context, pod *corev1.Pod, c *corev1.Container, isInit bool, restart int, img runtime.Image, mounts map[string]string, sb *sandbox) (runtime.ContainerConfig, error) {
	env, err := a.containerEnv(ctx, pod, c, sb)
	if err != nil {
		return runtime.ContainerConfig{}, err
	}
	vars := map[string]string{}
	list := make([]string, 0, len(env))
	for _, kv := range env {
		vars[kv[0]] = kv[1]
		list = append(list, kv[0]+"="+kv[1])
	}
	expand := func(in []string) []string {
		if in == nil {
			return nil
		}
		out := make([]string, len(in))
		for i, s := range in {
			out[i] = expandVars(s, vars)
		}
		return out
	}
	hostname, _ := podHostname(pod, a.opts.ClusterDomain)
	ms := []specs.Mount{
		{Destination: "/etc/hosts", Type: "bind", Source: mounts[mountHosts], Options: []string{"rbind", "rw"}},
		{Destination: "/etc/hostname", Type: "bind", Source: mounts[mountHostname], Options: []string{"rbind", "rw"}},
		{Destination: "/etc/resolv.conf", Type: "bind", Source: mounts[mountResolv], Options: []string{"rbind", "rw"}},
	}
	for _, vm := range c.VolumeMounts {
		src, ok := mounts[vm.Name]
		if !ok {
			return runtime.ContainerConfig{}, fmt.Errorf("volume %q of mount %s is not defined", vm.Name, vm.MountPath)
		}
		subPath := vm.SubPath
		if vm.SubPathExpr != "" {
			if subPath, err = expandSubPathExpr(vm.SubPathExpr, vars); err != nil {
				return runtime.ContainerConfig{}, err
			}
		}
		if subPath != "" {
			if src, err = subPathSource(src, subPath, pod); err != nil {
				return runtime.ContainerConfig{}, fmt.Errorf("subPath %q of volume %q: %w", subPath, vm.Name, err)
			}
		}
		opt := "rw"
		if vm.ReadOnly || mounts[roKey(vm.Name)] != "" {
			opt = "ro"
		}
		ms = append(ms, specs.Mount{Destination: vm.MountPath, Type: "bind", Source: src, Options: []string{"rbind", opt}})
	}
	cfg := runtime.ContainerConfig{
		ID:         containerID(pod.UID, c.Name, restart),
		Image:      img.Ref,
		Command:    expand(c.Command),
		Args:       expand(c.Args),
		Env:        list,
		WorkingDir: c.WorkingDir,
		Hostname:   hostname,
		NetNS:      sb.NetNS,
		Mounts:     ms,
		Stdin:      c.Stdin,
		StdinOnce:  c.StdinOnce,
		TTY:        c.TTY,
		Labels: map[string]string{
			runtime.LabelPodUID:       string(pod.UID),
			runtime.LabelPodName:      pod.Name,
			runtime.LabelPodNamespace: pod.Namespace,
			runtime.LabelContainer:    c.Name,
			runtime.LabelRestart:      strconv.Itoa(restart),
			runtime.LabelInit:         strconv.FormatBool(isInit),
			runtime.LabelLogPath:      a.logPath(pod, c.Name, restart),
		},
	}
	if lim, ok := c.Resources.Limits[corev1.ResourceMemory]; ok {
		cfg.MemoryLimit = lim.Value()
	}
	if a.opts.PodPidsLimit > 0 {
		cfg.PidsLimit = a.opts.PodPidsLimit
	}
	if lim, ok := c.Resources.Limits[corev1.ResourceCPU]; ok {
		cfg.CPUQuota = max(lim.MilliValue()*100, 1000) // of a 100 ms period
	}
	if req, ok := c.Resources.Requests[corev1.ResourceCPU]; ok {
		cfg.CPUShares = uint64(max(2, req.MilliValue()*1024/1000))
	}
	sc := c.SecurityContext
	psc := pod.Spec.SecurityContext
	if sc != nil && sc.RunAsUser != nil {
		cfg.UID = sc.RunAsUser
	} else if psc != nil {
		cfg.UID = psc.RunAsUser
	}
	if sc != nil && sc.RunAsGroup != nil {
		cfg.GID = sc.RunAsGroup
	} else if psc != nil {
		cfg.GID = psc.RunAsGroup
	}
	if sc != nil {
		cfg.Privileged = sc.Privileged != nil && *sc.Privileged
		cfg.ReadOnlyRootfs = sc.ReadOnlyRootFilesystem != nil && *sc.ReadOnlyRootFilesystem
	}
	return cfg, nil
}

// containerEnv is the ordered environment: service variables first, then
// envFrom, then env (later entries win, as upstream).
func (a *Agent) containerEnv(ctx context.Context, pod *corev1.Pod, c *corev1.Container, sb *sandbox) ([][2]string, error) {
	var out [][2]string
	idx := map[string]int{}
	set := func(k, v string) {
		if i, ok := idx[k]; ok {
			out[i][1] = v
			return
		}
		idx[k] = len(out)
		out = append(out, [2]string{k, v})
	}
	svcEnv, err := a.serviceEnv(ctx, pod)
	if err != nil {
		return nil, err
	}
	for _, kv := range svcEnv {
		set(kv[0], kv[1])
	}
	for _, ef := range c.EnvFrom {
		switch {
		case ef.ConfigMapRef != nil:
			cm, err := a.client.CoreV1().ConfigMaps(pod.Namespace).Get(ctx, ef.ConfigMapRef.Name, metav1.GetOptions{})
			if err != nil {
				if ef.ConfigMapRef.Optional != nil && *ef.ConfigMapRef.Optional {
					continue
				}
				return nil, fmt.Errorf("configmap %q not found", ef.ConfigMapRef.Name)
			}
			for _, k := range sortedKeys(cm.Data) {
				set(ef.Prefix+k, cm.Data[k])
			}
		case ef.SecretRef != nil:
			s, err := a.client.CoreV1().Secrets(pod.Namespace).Get(ctx, ef.SecretRef.Name, metav1.GetOptions{})
			if err != nil {
				if ef.SecretRef.Optional != nil && *ef.SecretRef.Optional {
					continue
				}
				return nil, fmt.Errorf("secret %q not found", ef.SecretRef.Name)
			}
			keys := make([]string, 0, len(s.Data))
			for k := range s.Data {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			for _, k := range keys {
				set(ef.Prefix+k, string(s.Data[k]))
			}
		}
	}
	vars := map[string]string{}
	for _, kv := range out {
		vars[kv[0]] = kv[1]
	}
	for _, e := range c.Env {
		v := e.Value
		if e.ValueFrom == nil {
			v = expandVars(v, vars)
		} else {
			var err error
			if v, err = a.envSource(ctx, pod, c, e, sb); err != nil {
				return nil, err
			}
		}
		set(e.Name, v)
		vars[e.Name] = v
	}
	return out, nil
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func (a *Agent) envSource(ctx context.Context, pod *corev1.Pod, c *corev1.Container, e corev1.EnvVar, sb *sandbox) (string, error) {
	vf := e.ValueFrom
	switch {
	case vf.FieldRef != nil:
		return fieldValue(pod, vf.FieldRef.FieldPath, a.opts.NodeIP, sb.IP)
	case vf.ConfigMapKeyRef != nil:
		r := vf.ConfigMapKeyRef
		cm, err := a.client.CoreV1().ConfigMaps(pod.Namespace).Get(ctx, r.Name, metav1.GetOptions{})
		if err == nil {
			if v, ok := cm.Data[r.Key]; ok {
				return v, nil
			}
			err = fmt.Errorf("couldn't find key %s in ConfigMap %s/%s", r.Key, pod.Namespace, r.Name)
		} else {
			err = fmt.Errorf("configmap %q not found", r.Name)
		}
		if r.Optional != nil && *r.Optional {
			return "", nil
		}
		return "", err
	case vf.SecretKeyRef != nil:
		r := vf.SecretKeyRef
		s, err := a.client.CoreV1().Secrets(pod.Namespace).Get(ctx, r.Name, metav1.GetOptions{})
		if err == nil {
			if v, ok := s.Data[r.Key]; ok {
				return string(v), nil
			}
			err = fmt.Errorf("couldn't find key %s in Secret %s/%s", r.Key, pod.Namespace, r.Name)
		} else {
			err = fmt.Errorf("secret %q not found", r.Name)
		}
		if r.Optional != nil && *r.Optional {
			return "", nil
		}
		return "", err
	case vf.ResourceFieldRef != nil:
		r := vf.ResourceFieldRef
		name := c.Name
		if r.ContainerName != "" {
			name = r.ContainerName
		}
		for _, ct := range pod.Spec.Containers {
			if ct.Name != name {
				continue
			}
			res, kind, _ := strings.Cut(r.Resource, ".")
			list := ct.Resources.Limits
			if res == "requests" {
				list = ct.Resources.Requests
			}
			q, ok := list[corev1.ResourceName(kind)]
			if !ok {
				return "0", nil
			}
			div := r.Divisor
			if div.IsZero() {
				return strconv.FormatInt(q.Value(), 10), nil
			}
			return strconv.FormatInt((q.MilliValue()+div.MilliValue()-1)/div.MilliValue(), 10), nil
		}
		return "", fmt.Errorf("container %q not found for resourceFieldRef", name)
	}
	return "", nil
}

func fieldValue(pod *corev1.Pod, path, hostIP, podIP string) (string, error) {
	if k, ok := strings.CutPrefix(path, "metadata.labels['"); ok {
		return pod.Labels[strings.TrimSuffix(k, "']")], nil
	}
	if k, ok := strings.CutPrefix(path, "metadata.annotations['"); ok {
		return pod.Annotations[strings.TrimSuffix(k, "']")], nil
	}
	switch path {
	case "metadata.name":
		return pod.Name, nil
	case "metadata.namespace":
		return pod.Namespace, nil
	case "metadata.uid":
		return string(pod.UID), nil
	case "spec.nodeName":
		return pod.Spec.NodeName, nil
	case "spec.serviceAccountName":
		return pod.Spec.ServiceAccountName, nil
	case "status.hostIP", "status.hostIPs":
		return hostIP, nil
	case "status.podIP", "status.podIPs":
		return podIP, nil
	}
	return "", fmt.Errorf("unsupported fieldRef %q", path)
}

// expandVars replaces $(VAR) with known variables; $$ escapes a $, and
// unknown references stay as written (upstream's rules).
func expandVars(s string, vars map[string]string) string {
	return expand(s, func(name string) (string, bool) {
		v, ok := vars[name]
		return v, ok
	})
}

// expandSubPathExpr is upstream's expansion of a volume mount's
// subPathExpr: $(VAR) is the container's variable, $$ a $; a variable that
// is not set or empty is an error (the container does not start).
func expandSubPathExpr(expr string, vars map[string]string) (string, error) {
	var missing []string
	out := expand(expr, func(name string) (string, bool) {
		if v := vars[name]; v != "" {
			return v, true
		}
		if !slices.Contains(missing, name) {
			missing = append(missing, name)
		}
		return "", false
	})
	if len(missing) > 0 {
		sort.Strings(missing)
		return "", fmt.Errorf("missing value for %s", strings.Join(missing, ", "))
	}
	return out, nil
}

// expand replaces each $(NAME) with lookup's value, or leaves it as
// written when lookup has none; $$ is a $, and any other $ stays.
func expand(s string, lookup func(name string) (string, bool)) string {
	if !strings.Contains(s, "$") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '$' || i+1 >= len(s) {
			b.WriteByte(s[i])
			continue
		}
		switch s[i+1] {
		case '$':
			b.WriteByte('$')
			i++
		case '(':
			end := strings.IndexByte(s[i+2:], ')')
			if end < 0 {
				b.WriteString(s[i:])
				return b.String()
			}
			if v, ok := lookup(s[i+2 : i+2+end]); ok {
				b.WriteString(v)
			} else {
				b.WriteString(s[i : i+3+end])
			}
			i += 2 + end
		default:
			b.WriteByte('$')
		}
	}
	return b.String()
}

// subPathSource is the host path a subPath mount binds: the subPath must
// be relative without "..", a missing one is made as a folder, and
// symlinks are resolved (which pins an API-data volume's key to its
// current generation: subPath mounts do not see updates, as upstream) and
// must stay inside the volume.
func subPathSource(base, subPath string, pod *corev1.Pod) (string, error) {
	if filepath.IsAbs(subPath) {
		return "", fmt.Errorf("error SubPath `%s` must not be an absolute path", subPath)
	}
	for _, el := range strings.Split(filepath.ToSlash(subPath), "/") {
		if el == ".." {
			return "", fmt.Errorf("unable to provision SubPath `%s`: must not contain '..'", subPath)
		}
	}
	p := filepath.Join(base, subPath)
	// The kubelet creates a missing subPath directory; here it is also the
	// pod's fsGroup's, as the volume around it. It is made through the
	// volume as a root that symlinks cannot leave: a container may have
	// put a symlink to a host directory where the path's parent should be.
	if _, err := os.Lstat(p); errors.Is(err, os.ErrNotExist) {
		if err := makeSubPath(base, subPath, pod); err != nil {
			return "", err
		}
	}
	root, err := filepath.EvalSymlinks(base)
	if err != nil {
		return "", err
	}
	resolved, err := filepath.EvalSymlinks(p)
	if err != nil {
		return "", err
	}
	if resolved != root && !strings.HasPrefix(resolved, root+"/") {
		return "", fmt.Errorf("subpath %q not within volume path %q", resolved, root)
	}
	return resolved, nil
}

// serviceEnv is the Docker-links style variables of the services that
// exist now: the pod's namespace (when enableServiceLinks is not false)
// and the kubernetes service of the default namespace.
func (a *Agent) serviceEnv(ctx context.Context, pod *corev1.Pod) ([][2]string, error) {
	links := pod.Spec.EnableServiceLinks == nil || *pod.Spec.EnableServiceLinks
	byName := map[string]corev1.Service{}
	if links {
		svcs, err := a.client.CoreV1().Services(pod.Namespace).List(ctx, metav1.ListOptions{})
		if err != nil {
			return nil, fmt.Errorf("list services: %w", err)
		}
		for _, s := range svcs.Items {
			byName[s.Name] = s
		}
	}
	if k, err := a.client.CoreV1().Services(metav1.NamespaceDefault).Get(ctx, "kubernetes", metav1.GetOptions{}); err == nil {
		if pod.Namespace == metav1.NamespaceDefault || !links {
			byName["kubernetes"] = *k
		} else if _, clash := byName["kubernetes"]; !clash {
			byName["kubernetes"] = *k
		}
	}
	names := make([]string, 0, len(byName))
	for n := range byName {
		names = append(names, n)
	}
	sort.Strings(names)
	var out [][2]string
	for _, n := range names {
		s := byName[n]
		ip := s.Spec.ClusterIP
		if ip == "" || ip == corev1.ClusterIPNone || len(s.Spec.Ports) == 0 {
			continue
		}
		prefix := strings.ToUpper(strings.ReplaceAll(s.Name, "-", "_"))
		first := s.Spec.Ports[0]
		out = append(out,
			[2]string{prefix + "_SERVICE_HOST", ip},
			[2]string{prefix + "_SERVICE_PORT", strconv.Itoa(int(first.Port))})
		for _, p := range s.Spec.Ports {
			if p.Name != "" {
				out = append(out, [2]string{prefix + "_SERVICE_PORT_" + strings.ToUpper(strings.ReplaceAll(p.Name, "-", "_")), strconv.Itoa(int(p.Port))})
			}
		}
		proto := func(p corev1.ServicePort) string {
			if p.Protocol == "" {
				return "tcp"
			}
			return strings.ToLower(string(p.Protocol))
		}
		out = append(out, [2]string{prefix + "_PORT", fmt.Sprintf("%s://%s:%d", proto(first), ip, first.Port)})
		for _, p := range s.Spec.Ports {
			pp := fmt.Sprintf("%s_PORT_%d_%s", prefix, p.Port, strings.ToUpper(proto(p)))
			out = append(out,
				[2]string{pp, fmt.Sprintf("%s://%s:%d", proto(p), ip, p.Port)},
				[2]string{pp + "_PROTO", proto(p)},
				[2]string{pp + "_PORT", strconv.Itoa(int(p.Port))},
				[2]string{pp + "_ADDR", ip})
		}
	}
	return out, nil
}
