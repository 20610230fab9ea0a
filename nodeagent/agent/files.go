package agent

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/skiffhq/skiff/nodeagent/agent/atomicwriter"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

const (
	mountHosts    = "\x00hosts"
	mountResolv   = "\x00resolv"
	mountHostname = "\x00hostname"
)

// preparePod writes the pod's hostname, hosts and resolv.conf files and
// its volumes; it returns volume name (and the special files) → host path.
func (a *Agent) preparePod(ctx context.Context, pod *corev1.Pod, sb *sandbox) (map[string]string, error) {
	dir := a.podDir(pod.UID)
	etc := filepath.Join(dir, "etc")
	if err := os.MkdirAll(etc, 0o755); err != nil {
		return nil, fmt.Errorf("pod files: %w", err)
	}
	hostname, fqdn := podHostname(pod, a.opts.ClusterDomain)
	files := map[string]string{
		mountHostname: hostname + "\n",
		mountHosts:    hostsFile(pod, sb.IP, hostname, fqdn),
		mountResolv:   a.resolvConf(pod),
	}
	mounts := map[string]string{}
	for key, body := range files {
		p := filepath.Join(etc, strings.TrimPrefix(key, "\x00"))
		if err := writeIfChanged(p, body, 0o644); err != nil {
			return nil, err
		}
		mounts[key] = p
	}
	for _, v := range pod.Spec.Volumes {
		var p string
		var err error
		if v.PersistentVolumeClaim != nil {
			p, err = a.claimVolume(ctx, pod, v, mounts) // volumes.go
		} else {
			p, err = a.prepareVolume(ctx, pod, v)
		}
		if err != nil {
			return nil, fmt.Errorf("MountVolume.SetUp failed for volume %q : %w", v.Name, err)
		}
		mounts[v.Name] = p
		if apiDataVolume(v) {
			mounts[roKey(v.Name)] = "1"
		}
	}
	return mounts, nil
}

func writeIfChanged(path, body string, mode os.FileMode) error {
	if old, err := os.ReadFile(path); err == nil && string(old) == body {
		return nil
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(body), mode); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

func podHostname(pod *corev1.Pod, domain string) (string, string) {
	h := pod.Name
	if pod.Spec.Hostname != "" {
		h = pod.Spec.Hostname
	}
	if len(h) > 63 {
		h = strings.TrimRight(h[:63], "-.")
	}
	if pod.Spec.Subdomain != "" {
		return h, fmt.Sprintf("%s.%s.%s.svc.%s", h, pod.Spec.Subdomain, pod.Namespace, domain)
	}
	return h, ""
}

// hostsFile is the kubelet's managed /etc/hosts.
func hostsFile(pod *corev1.Pod, ip, hostname, fqdn string) string {
	var b strings.Builder
	b.WriteString("# Kubernetes-managed hosts file.\n")
	b.WriteString("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nfe00::0\tip6-mcastprefix\nfe00::1\tip6-allnodes\nfe00::2\tip6-allrouters\n")
	if fqdn != "" {
		fmt.Fprintf(&b, "%s\t%s\t%s\n", ip, fqdn, hostname)
	} else {
		fmt.Fprintf(&b, "%s\t%s\n", ip, hostname)
	}
	if len(pod.Spec.HostAliases) > 0 {
		b.WriteString("\n# Entries added by HostAliases.\n")
		for _, ha := range pod.Spec.HostAliases {
			fmt.Fprintf(&b, "%s\t%s\n", ha.IP, strings.Join(ha.Hostnames, "\t"))
		}
	}
	return b.String()
}

// resolvConf follows the pod's dnsPolicy: ClusterFirst (the default) uses
// the cluster DNS and search path, Default the host's resolv.conf, None
// only dnsConfig; dnsConfig is merged in every case.
func (a *Agent) resolvConf(pod *corev1.Pod) string {
	var (
		servers, search []string
		options         []string
	)
	policy := pod.Spec.DNSPolicy
	if policy == "" {
		policy = corev1.DNSClusterFirst
	}
	if policy == corev1.DNSClusterFirstWithHostNet && !pod.Spec.HostNetwork {
		policy = corev1.DNSClusterFirst
	}
	switch policy {
	case corev1.DNSClusterFirst, corev1.DNSClusterFirstWithHostNet:
		d := a.opts.ClusterDomain
		servers = []string{a.opts.ClusterDNS}
		search = []string{pod.Namespace + ".svc." + d, "svc." + d, d}
		options = []string{"ndots:5"}
	case corev1.DNSDefault:
		b, _ := os.ReadFile("/etc/resolv.conf")
		for _, l := range strings.Split(string(b), "\n") {
			f := strings.Fields(l)
			if len(f) < 2 {
				continue
			}
			switch f[0] {
			case "nameserver":
				servers = append(servers, f[1])
			case "search":
				search = append(search, f[1:]...)
			case "options":
				options = append(options, f[1:]...)
			}
		}
	}
	if dc := pod.Spec.DNSConfig; dc != nil {
		servers = append(servers, dc.Nameservers...)
		search = append(search, dc.Searches...)
		for _, o := range dc.Options {
			opt := o.Name
			if o.Value != nil {
				opt += ":" + *o.Value
			}
			replaced := false
			for i, have := range options {
				if strings.SplitN(have, ":", 2)[0] == o.Name {
					options[i], replaced = opt, true
				}
			}
			if !replaced {
				options = append(options, opt)
			}
		}
	}
	var b strings.Builder
	if len(search) > 0 {
		fmt.Fprintf(&b, "search %s\n", strings.Join(search, " "))
	}
	for _, s := range servers {
		fmt.Fprintf(&b, "nameserver %s\n", s)
	}
	if len(options) > 0 {
		fmt.Fprintf(&b, "options %s\n", strings.Join(options, " "))
	}
	return b.String()
}

// prepareVolume makes a volume's host folder: emptyDir (a tmpfs for
// medium Memory), hostPath, and the API-data volumes configMap, secret,
// projected and downwardAPI. The API-data volumes are written with the
// atomic writer on every sync of the pod, so running pods see updates of
// their ConfigMaps, Secrets and labels/annotations (package atomicwriter).
func (a *Agent) prepareVolume(ctx context.Context, pod *corev1.Pod, v corev1.Volume) (string, error) {
	base := filepath.Join(a.podDir(pod.UID), "volumes")
	switch {
	case v.EmptyDir != nil:
		p := filepath.Join(base, "kubernetes.io~empty-dir", v.Name)
		if v.EmptyDir.Medium == corev1.StorageMediumMemory {
			return p, mountTmpfs(p, emptyDirMemorySize(pod, v.EmptyDir)) // volumes.go
		}
		if err := os.MkdirAll(p, 0o777); err != nil {
			return "", err
		}
		return p, os.Chmod(p, 0o777)
	case v.HostPath != nil:
		t := corev1.HostPathUnset
		if v.HostPath.Type != nil {
			t = *v.HostPath.Type
		}
		switch t {
		case corev1.HostPathDirectoryOrCreate:
			if err := os.MkdirAll(v.HostPath.Path, 0o755); err != nil {
				return "", err
			}
		case corev1.HostPathFileOrCreate:
			f, err := os.OpenFile(v.HostPath.Path, os.O_CREATE, 0o644)
			if err != nil {
				return "", err
			}
			f.Close()
		case corev1.HostPathDirectory, corev1.HostPathFile:
			st, err := os.Stat(v.HostPath.Path)
			if err != nil {
				return "", fmt.Errorf("hostPath type check failed: %s is not a %s", v.HostPath.Path, strings.ToLower(string(t)))
			}
			if st.IsDir() != (t == corev1.HostPathDirectory) {
				return "", fmt.Errorf("hostPath type check failed: %s is not a %s", v.HostPath.Path, strings.ToLower(string(t)))
			}
		}
		return v.HostPath.Path, nil
	case v.ConfigMap != nil:
		dir := filepath.Join(base, "kubernetes.io~configmap", v.Name)
		optional := v.ConfigMap.Optional != nil && *v.ConfigMap.Optional
		data, found, err := a.configMapData(ctx, pod.Namespace, v.ConfigMap.Name, optional)
		if err != nil {
			return "", err
		}
		payload, err := keysPayload(data, v.ConfigMap.Items, defaultMode(v.ConfigMap.DefaultMode), optional || !found, "configmap references non-existent config key")
		if err != nil {
			return "", err
		}
		return dir, writeVolume(pod, dir, payload)
	case v.Secret != nil:
		dir := filepath.Join(base, "kubernetes.io~secret", v.Name)
		optional := v.Secret.Optional != nil && *v.Secret.Optional
		data, found, err := a.secretData(ctx, pod.Namespace, v.Secret.SecretName, optional)
		if err != nil {
			return "", err
		}
		payload, err := keysPayload(data, v.Secret.Items, defaultMode(v.Secret.DefaultMode), optional || !found, "references non-existent secret key")
		if err != nil {
			return "", err
		}
		return dir, writeVolume(pod, dir, payload)
	case v.Projected != nil:
		dir := filepath.Join(base, "kubernetes.io~projected", v.Name)
		payload, err := a.projected(ctx, pod, v)
		if err != nil {
			return "", err
		}
		return dir, writeVolume(pod, dir, payload)
	case v.DownwardAPI != nil:
		dir := filepath.Join(base, "kubernetes.io~downward-api", v.Name)
		payload := map[string]atomicwriter.File{}
		if err := a.downwardPayload(pod, v.DownwardAPI.Items, defaultMode(v.DownwardAPI.DefaultMode), payload); err != nil {
			return "", err
		}
		return dir, writeVolume(pod, dir, payload)
	default:
		return "", fmt.Errorf("volume type not supported by this agent yet")
	}
}

// apiDataVolume reports whether v's contents come from the API
// (configMap, secret, projected, downwardAPI): the kubelet mounts these
// read-only in every container.
func apiDataVolume(v corev1.Volume) bool {
	return v.ConfigMap != nil || v.Secret != nil || v.Projected != nil || v.DownwardAPI != nil
}

func defaultMode(m *int32) os.FileMode {
	if m == nil {
		return 0o644 // upstream's default for every API-data volume
	}
	return os.FileMode(*m)
}

// writeVolume writes an API-data volume through the atomic writer; a new
// generation gets the pod's fsGroup before it is visible.
func writeVolume(pod *corev1.Pod, dir string, payload map[string]atomicwriter.File) error {
	var setPerms func(string) error
	if psc := pod.Spec.SecurityContext; psc != nil && psc.FSGroup != nil {
		gid := int(*psc.FSGroup)
		setPerms = func(gen string) error { return setOwnership(gen, gid, true) }
	}
	if err := atomicwriter.Write(dir, payload, setPerms); err != nil {
		return fmt.Errorf("write volume: %w", err)
	}
	return nil
}

// configMapData gets a ConfigMap's keys (data and binaryData). A missing
// optional ConfigMap is empty (found false); any other error is returned,
// so that a volume keeps its contents through API trouble.
func (a *Agent) configMapData(ctx context.Context, ns, name string, optional bool) (map[string][]byte, bool, error) {
	cm, err := a.client.CoreV1().ConfigMaps(ns).Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		if optional {
			return nil, false, nil
		}
		return nil, false, fmt.Errorf("configmap %q not found", name)
	}
	if err != nil {
		return nil, false, fmt.Errorf("get configmap %q: %w", name, err)
	}
	data := make(map[string][]byte, len(cm.Data)+len(cm.BinaryData))
	for k, s := range cm.Data {
		data[k] = []byte(s)
	}
	for k, b := range cm.BinaryData {
		data[k] = b
	}
	return data, true, nil
}

// secretData is configMapData for a Secret.
func (a *Agent) secretData(ctx context.Context, ns, name string, optional bool) (map[string][]byte, bool, error) {
	s, err := a.client.CoreV1().Secrets(ns).Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		if optional {
			return nil, false, nil
		}
		return nil, false, fmt.Errorf("secret %q not found", name)
	}
	if err != nil {
		return nil, false, fmt.Errorf("get secret %q: %w", name, err)
	}
	return s.Data, true, nil
}

// keysPayload is upstream's MakePayload for configMap and secret keys:
// every key with the default mode, or only the items (path and mode of
// their own); an item whose key is missing is skipped when optional and an
// error otherwise.
func keysPayload(data map[string][]byte, items []corev1.KeyToPath, mode os.FileMode, optional bool, missing string) (map[string]atomicwriter.File, error) {
	out := map[string]atomicwriter.File{}
	if err := addKeys(out, data, items, mode, optional, missing); err != nil {
		return nil, err
	}
	return out, nil
}

func addKeys(out map[string]atomicwriter.File, data map[string][]byte, items []corev1.KeyToPath, mode os.FileMode, optional bool, missing string) error {
	if len(items) == 0 {
		for k, b := range data {
			out[k] = atomicwriter.File{Data: b, Mode: mode}
		}
		return nil
	}
	for _, it := range items {
		b, ok := data[it.Key]
		if !ok {
			if optional {
				continue
			}
			return fmt.Errorf("%s: %s", missing, it.Key)
		}
		m := mode
		if it.Mode != nil {
			m = os.FileMode(*it.Mode)
		}
		out[it.Path] = atomicwriter.File{Data: b, Mode: m}
	}
	return nil
}

// downwardPayload adds downward API items: fields of the pod (labels and
// annotations included, so they update live) and containers' resources.
func (a *Agent) downwardPayload(pod *corev1.Pod, items []corev1.DownwardAPIVolumeFile, mode os.FileMode, out map[string]atomicwriter.File) error {
	for _, it := range items {
		var val string
		var err error
		switch {
		case it.FieldRef != nil:
			val, err = volumeFieldValue(pod, it.FieldRef.FieldPath, a.opts.NodeIP)
		case it.ResourceFieldRef != nil:
			val, err = a.envSource(context.Background(), pod, &corev1.Container{Name: it.ResourceFieldRef.ContainerName},
				corev1.EnvVar{ValueFrom: &corev1.EnvVarSource{ResourceFieldRef: it.ResourceFieldRef}}, nil)
		default:
			continue
		}
		if err != nil {
			return fmt.Errorf("downward API item %q: %w", it.Path, err)
		}
		m := mode
		if it.Mode != nil {
			m = os.FileMode(*it.Mode)
		}
		out[it.Path] = atomicwriter.File{Data: []byte(val), Mode: m}
	}
	return nil
}

// volumeFieldValue is a downward API volume's field: besides the env
// fields, all labels or annotations as upstream formats them (sorted
// key="quoted value" lines).
func volumeFieldValue(pod *corev1.Pod, path, hostIP string) (string, error) {
	var m map[string]string
	switch path {
	case "metadata.labels":
		m = pod.Labels
	case "metadata.annotations":
		m = pod.Annotations
	default:
		return fieldValue(pod, path, hostIP, pod.Status.PodIP)
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, "%s=%q\n", k, m[k])
	}
	return strings.TrimSuffix(b.String(), "\n"), nil
}

// cleanPodDir removes the pod's folder (files, volumes, sandbox record),
// unmounting its memory-backed emptyDirs first.
func (a *Agent) cleanPodDir(uid types.UID) error {
	a.forgetTokens(uid)
	if err := unmountTmpfsVolumes(filepath.Join(a.podDir(uid), "volumes", "kubernetes.io~empty-dir")); err != nil {
		return fmt.Errorf("remove pod dir: %w", err)
	}
	if err := os.RemoveAll(a.podDir(uid)); err != nil {
		return fmt.Errorf("remove pod dir: %w", err)
	}
	return nil
}

// projected is a projected volume's payload: service account tokens
// (through the TokenRequest API, bound to the pod, renewed as upstream
// when 80% of their life or 24 hours passed), configMap and secret keys
// and downward API fields.
func (a *Agent) projected(ctx context.Context, pod *corev1.Pod, v corev1.Volume) (map[string]atomicwriter.File, error) {
	out := map[string]atomicwriter.File{}
	mode := defaultMode(v.Projected.DefaultMode)
	for _, src := range v.Projected.Sources {
		switch {
		case src.ServiceAccountToken != nil:
			tok, err := a.projectedToken(ctx, pod, v.Name, src.ServiceAccountToken)
			if err != nil {
				return nil, err
			}
			out[src.ServiceAccountToken.Path] = atomicwriter.File{Data: []byte(tok), Mode: mode}
		case src.ConfigMap != nil:
			optional := src.ConfigMap.Optional != nil && *src.ConfigMap.Optional
			data, found, err := a.configMapData(ctx, pod.Namespace, src.ConfigMap.Name, optional)
			if err != nil {
				return nil, err
			}
			if err := addKeys(out, data, src.ConfigMap.Items, mode, optional || !found, "configmap references non-existent config key"); err != nil {
				return nil, err
			}
		case src.Secret != nil:
			optional := src.Secret.Optional != nil && *src.Secret.Optional
			data, found, err := a.secretData(ctx, pod.Namespace, src.Secret.Name, optional)
			if err != nil {
				return nil, err
			}
			if err := addKeys(out, data, src.Secret.Items, mode, optional || !found, "references non-existent secret key"); err != nil {
				return nil, err
			}
		case src.DownwardAPI != nil:
			if err := a.downwardPayload(pod, src.DownwardAPI.Items, mode, out); err != nil {
				return nil, err
			}
		}
	}
	return out, nil
}

// cachedToken is a service account token of a projected volume.
type cachedToken struct {
	token          string
	issued, expiry time.Time
}

// projectedToken returns the pod's token for a projected source, from the
// agent's cache while it is fresh (less than 80% of its life and 24 hours
// old), so that the volume does not change on every sync.
func (a *Agent) projectedToken(ctx context.Context, pod *corev1.Pod, volume string, t *corev1.ServiceAccountTokenProjection) (string, error) {
	sa := pod.Spec.ServiceAccountName
	if sa == "" {
		sa = "default"
	}
	exp := int64(3607)
	if t.ExpirationSeconds != nil {
		exp = *t.ExpirationSeconds
	}
	key := fmt.Sprintf("%s/%s/%s/%s/%d", pod.UID, volume, sa, t.Audience, exp)
	now := time.Now()
	a.mu.Lock()
	c, ok := a.tokens[key]
	a.mu.Unlock()
	if ok && now.Before(c.issued.Add(c.expiry.Sub(c.issued)*8/10)) && now.Before(c.issued.Add(24*time.Hour)) {
		return c.token, nil
	}
	var aud []string
	if t.Audience != "" {
		aud = []string{t.Audience}
	}
	tr, err := a.client.CoreV1().ServiceAccounts(pod.Namespace).CreateToken(ctx, sa, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{Audiences: aud, ExpirationSeconds: &exp, BoundObjectRef: &authenticationv1.BoundObjectReference{
			Kind: "Pod", APIVersion: "v1", Name: pod.Name, UID: pod.UID,
		}},
	}, metav1.CreateOptions{})
	if err != nil {
		return "", fmt.Errorf("failed to fetch token: %w", err)
	}
	c = cachedToken{token: tr.Status.Token, issued: now, expiry: tr.Status.ExpirationTimestamp.Time}
	if c.expiry.Before(now) {
		c.expiry = now.Add(time.Duration(exp) * time.Second)
	}
	a.mu.Lock()
	if a.tokens == nil {
		a.tokens = map[string]cachedToken{}
	}
	a.tokens[key] = c
	a.mu.Unlock()
	return c.token, nil
}

// forgetTokens drops the cached tokens of a pod that is gone.
func (a *Agent) forgetTokens(uid types.UID) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for k := range a.tokens {
		if strings.HasPrefix(k, string(uid)+"/") {
			delete(a.tokens, k)
		}
	}
}
