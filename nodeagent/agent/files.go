package agent

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
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

// prepareVolume makes a volume's host folder: emptyDir, configMap,
// secret (basic: keys or items as files with modes) and hostPath.
func (a *Agent) prepareVolume(ctx context.Context, pod *corev1.Pod, v corev1.Volume) (string, error) {
	base := filepath.Join(a.podDir(pod.UID), "volumes")
	switch {
	case v.EmptyDir != nil:
		p := filepath.Join(base, "kubernetes.io~empty-dir", v.Name)
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
		cm, err := a.client.CoreV1().ConfigMaps(pod.Namespace).Get(ctx, v.ConfigMap.Name, metav1.GetOptions{})
		if err != nil {
			if v.ConfigMap.Optional != nil && *v.ConfigMap.Optional {
				cm = &corev1.ConfigMap{}
			} else {
				return "", fmt.Errorf("configmap %q not found", v.ConfigMap.Name)
			}
		}
		data := map[string][]byte{}
		for k, s := range cm.Data {
			data[k] = []byte(s)
		}
		for k, b := range cm.BinaryData {
			data[k] = b
		}
		return writeKeys(filepath.Join(base, "kubernetes.io~configmap", v.Name), data, v.ConfigMap.Items, v.ConfigMap.DefaultMode)
	case v.Secret != nil:
		s, err := a.client.CoreV1().Secrets(pod.Namespace).Get(ctx, v.Secret.SecretName, metav1.GetOptions{})
		if err != nil {
			if v.Secret.Optional != nil && *v.Secret.Optional {
				s = &corev1.Secret{}
			} else {
				return "", fmt.Errorf("secret %q not found", v.Secret.SecretName)
			}
		}
		return writeKeys(filepath.Join(base, "kubernetes.io~secret", v.Name), s.Data, v.Secret.Items, v.Secret.DefaultMode)
	case v.Projected != nil:
		return a.projected(ctx, pod, v, filepath.Join(base, "kubernetes.io~projected", v.Name))
	case v.DownwardAPI != nil:
		data := map[string][]byte{}
		var items []corev1.KeyToPath
		for _, it := range v.DownwardAPI.Items {
			if it.FieldRef == nil {
				continue
			}
			val, err := fieldValue(pod, it.FieldRef.FieldPath, a.opts.NodeIP, pod.Status.PodIP)
			if err != nil {
				return "", err
			}
			data[it.Path] = []byte(val)
			items = append(items, corev1.KeyToPath{Key: it.Path, Path: it.Path, Mode: it.Mode})
		}
		return writeKeys(filepath.Join(base, "kubernetes.io~downward-api", v.Name), data, items, v.DownwardAPI.DefaultMode)
	default:
		return "", fmt.Errorf("volume type not supported by this agent yet")
	}
}

func writeKeys(dir string, data map[string][]byte, items []corev1.KeyToPath, defMode *int32) (string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	mode := os.FileMode(0o644)
	if defMode != nil {
		mode = os.FileMode(*defMode)
	}
	want := map[string]os.FileMode{}
	body := map[string][]byte{}
	if len(items) == 0 {
		for k, b := range data {
			want[k], body[k] = mode, b
		}
	}
	for _, it := range items {
		b, ok := data[it.Key]
		if !ok {
			return "", fmt.Errorf("configuration key %q not found", it.Key)
		}
		m := mode
		if it.Mode != nil {
			m = os.FileMode(*it.Mode)
		}
		want[it.Path], body[it.Path] = m, b
	}
	for p, m := range want {
		full := filepath.Join(dir, filepath.Clean("/"+p))
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			return "", err
		}
		if err := writeIfChanged(full, string(body[p]), m); err != nil {
			return "", err
		}
		if err := os.Chmod(full, m); err != nil {
			return "", err
		}
	}
	return dir, nil
}

// cleanPodDir removes the pod's folder (files, volumes, sandbox record).
func (a *Agent) cleanPodDir(uid types.UID) error {
	if err := os.RemoveAll(a.podDir(uid)); err != nil {
		return fmt.Errorf("remove pod dir: %w", err)
	}
	return nil
}

// projected writes a projected volume: service account tokens (through
// the TokenRequest API, bound to the pod), configMap and secret keys and
// downward API fields.
func (a *Agent) projected(ctx context.Context, pod *corev1.Pod, v corev1.Volume, dir string) (string, error) {
	data := map[string][]byte{}
	var items []corev1.KeyToPath
	add := func(path string, b []byte, mode *int32) {
		data[path] = b
		items = append(items, corev1.KeyToPath{Key: path, Path: path, Mode: mode})
	}
	for _, src := range v.Projected.Sources {
		switch {
		case src.ServiceAccountToken != nil:
			t := src.ServiceAccountToken
			sa := pod.Spec.ServiceAccountName
			if sa == "" {
				sa = "default"
			}
			exp := int64(3607)
			if t.ExpirationSeconds != nil {
				exp = *t.ExpirationSeconds
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
			add(t.Path, []byte(tr.Status.Token), nil)
		case src.ConfigMap != nil:
			cm, err := a.client.CoreV1().ConfigMaps(pod.Namespace).Get(ctx, src.ConfigMap.Name, metav1.GetOptions{})
			if err != nil {
				if src.ConfigMap.Optional != nil && *src.ConfigMap.Optional {
					continue
				}
				return "", fmt.Errorf("configmap %q not found", src.ConfigMap.Name)
			}
			if len(src.ConfigMap.Items) == 0 {
				for k, val := range cm.Data {
					add(k, []byte(val), nil)
				}
			}
			for _, it := range src.ConfigMap.Items {
				if val, ok := cm.Data[it.Key]; ok {
					add(it.Path, []byte(val), it.Mode)
				}
			}
		case src.Secret != nil:
			s, err := a.client.CoreV1().Secrets(pod.Namespace).Get(ctx, src.Secret.Name, metav1.GetOptions{})
			if err != nil {
				if src.Secret.Optional != nil && *src.Secret.Optional {
					continue
				}
				return "", fmt.Errorf("secret %q not found", src.Secret.Name)
			}
			if len(src.Secret.Items) == 0 {
				for k, val := range s.Data {
					add(k, val, nil)
				}
			}
			for _, it := range src.Secret.Items {
				if val, ok := s.Data[it.Key]; ok {
					add(it.Path, val, it.Mode)
				}
			}
		case src.DownwardAPI != nil:
			for _, it := range src.DownwardAPI.Items {
				if it.FieldRef == nil {
					continue
				}
				val, err := fieldValue(pod, it.FieldRef.FieldPath, a.opts.NodeIP, pod.Status.PodIP)
				if err != nil {
					return "", err
				}
				add(it.Path, []byte(val), it.Mode)
			}
		}
	}
	return writeKeys(dir, data, items, v.Projected.DefaultMode)
}
