package agent

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	goruntime "runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/skiffhq/skiff/version"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/ptr"
)

// LeaseNamespace holds node heartbeat Leases.
const LeaseNamespace = "kube-node-lease"

// firstSubnet is the first /24 of the cluster CIDR: the single node's
// pod range when nothing assigned one.
func firstSubnet(cluster string) (string, error) {
	_, n, err := net.ParseCIDR(cluster)
	if err != nil || n.IP.To4() == nil {
		return "", fmt.Errorf("agent: cluster CIDR %q is not an IPv4 CIDR", cluster)
	}
	if ones, _ := n.Mask.Size(); ones > 24 {
		return n.String(), nil
	}
	return (&net.IPNet{IP: n.IP.To4(), Mask: net.CIDRMask(24, 32)}).String(), nil
}

// registerNode creates the Node (or takes over an existing one) and
// returns it with its pod CIDR decided.
func (a *Agent) registerNode(ctx context.Context) (*corev1.Node, error) {
	want, err := a.desiredNode(ctx)
	if err != nil {
		return nil, err
	}
	nodes := a.client.CoreV1().Nodes()
	n, err := nodes.Create(ctx, want, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		n, err = nodes.Get(ctx, want.Name, metav1.GetOptions{})
		if err == nil && n.Spec.PodCIDR == "" && want.Spec.PodCIDR != "" && a.opts.PodCIDR == "" {
			n.Spec.PodCIDR, n.Spec.PodCIDRs = want.Spec.PodCIDR, want.Spec.PodCIDRs
			n, err = nodes.Update(ctx, n, metav1.UpdateOptions{})
		}
	}
	if err == nil && n.Spec.PodCIDR == "" && a.opts.PodCIDR == "" {
		n, err = a.waitPodCIDR(ctx, n.Name)
	}
	if err != nil {
		return nil, fmt.Errorf("agent: register node: %w", err)
	}
	if a.opts.PodCIDR != "" {
		n.Spec.PodCIDR = a.opts.PodCIDR
	}
	n.Status = want.Status
	if n, err = nodes.UpdateStatus(ctx, n, metav1.UpdateOptions{}); err != nil {
		return nil, fmt.Errorf("agent: node status: %w", err)
	}
	if a.opts.PodCIDR != "" {
		n.Spec.PodCIDR = a.opts.PodCIDR
	}
	if err := a.renewLease(ctx, n); err != nil {
		return nil, err
	}
	return n, nil
}

// waitPodCIDR waits up to PodCIDRWait for the node IPAM controller to
// give the node a pod range; without one it takes the cluster CIDR's first
// /24 (the standalone behaviour).
func (a *Agent) waitPodCIDR(ctx context.Context, name string) (*corev1.Node, error) {
	nodes := a.client.CoreV1().Nodes()
	deadline := time.Now().Add(a.opts.PodCIDRWait)
	for time.Now().Before(deadline) {
		n, err := nodes.Get(ctx, name, metav1.GetOptions{})
		if err == nil && n.Spec.PodCIDR != "" {
			return n, nil
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
	cidr, err := firstSubnet(a.opts.ClusterCIDR)
	if err != nil {
		return nil, err
	}
	a.log.Warn("no pod CIDR assigned; taking the first range of the cluster CIDR", "podCIDR", cidr, "waited", a.opts.PodCIDRWait)
	var out *corev1.Node
	err = retry.RetryOnConflict(retry.DefaultBackoff, func() error {
		n, err := nodes.Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if n.Spec.PodCIDR != "" {
			out = n
			return nil
		}
		n.Spec.PodCIDR, n.Spec.PodCIDRs = cidr, []string{cidr}
		out, err = nodes.Update(ctx, n, metav1.UpdateOptions{})
		return err
	})
	return out, err
}

func (a *Agent) desiredNode(ctx context.Context) (*corev1.Node, error) {
	cidr := a.opts.PodCIDR
	if cidr == "" && a.opts.PodCIDRWait <= 0 {
		var err error
		if cidr, err = firstSubnet(a.opts.ClusterCIDR); err != nil {
			return nil, err
		}
	}
	rtVersion, err := a.rt.Version(ctx)
	if err != nil {
		return nil, fmt.Errorf("agent: %w", err)
	}
	cores := goruntime.NumCPU()
	pods := min(110, 10*cores)
	mem := memTotal()
	storage := diskTotal(a.opts.StateDir)
	capacity := corev1.ResourceList{
		corev1.ResourceCPU:              *resource.NewQuantity(int64(cores), resource.DecimalSI),
		corev1.ResourceMemory:           *resource.NewQuantity(mem, resource.BinarySI),
		corev1.ResourcePods:             *resource.NewQuantity(int64(pods), resource.DecimalSI),
		corev1.ResourceEphemeralStorage: *resource.NewQuantity(storage, resource.BinarySI),
	}
	// Allocatable keeps upstream's default hard eviction threshold for
	// memory (100Mi) and 10% of the disk.
	alloc := capacity.DeepCopy()
	alloc[corev1.ResourceMemory] = *resource.NewQuantity(max(0, mem-100<<20), resource.BinarySI)
	alloc[corev1.ResourceEphemeralStorage] = *resource.NewQuantity(storage*9/10, resource.BinarySI)
	host, _ := os.Hostname()
	now := metav1.Now()
	return &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: a.opts.NodeName, Labels: map[string]string{
			"kubernetes.io/hostname": a.opts.NodeName,
			"kubernetes.io/os":       goruntime.GOOS,
			"kubernetes.io/arch":     goruntime.GOARCH,
			"beta.kubernetes.io/os":  goruntime.GOOS, "beta.kubernetes.io/arch": goruntime.GOARCH,
		}},
		Spec: podCIDRSpec(cidr),
		Status: corev1.NodeStatus{
			Capacity:    capacity,
			Allocatable: alloc,
			Phase:       corev1.NodeRunning,
			Addresses: []corev1.NodeAddress{
				{Type: corev1.NodeInternalIP, Address: a.opts.NodeIP},
				{Type: corev1.NodeHostName, Address: host},
			},
			DaemonEndpoints: corev1.NodeDaemonEndpoints{KubeletEndpoint: corev1.DaemonEndpoint{Port: int32(a.apiPort())}},
			NodeInfo: corev1.NodeSystemInfo{
				MachineID:               readTrim("/etc/machine-id"),
				BootID:                  readTrim("/proc/sys/kernel/random/boot_id"),
				KernelVersion:           kernelVersion(),
				OSImage:                 osImage(),
				ContainerRuntimeVersion: rtVersion,
				KubeletVersion:          version.Info().GitVersion,
				KubeProxyVersion:        "",
				OperatingSystem:         goruntime.GOOS,
				Architecture:            goruntime.GOARCH,
			},
			Conditions: []corev1.NodeCondition{
				cond(corev1.NodeMemoryPressure, corev1.ConditionFalse, "KubeletHasSufficientMemory", "kubelet has sufficient memory available", now),
				cond(corev1.NodeDiskPressure, corev1.ConditionFalse, "KubeletHasNoDiskPressure", "kubelet has no disk pressure", now),
				cond(corev1.NodePIDPressure, corev1.ConditionFalse, "KubeletHasSufficientPID", "kubelet has sufficient PID available", now),
				cond(corev1.NodeReady, corev1.ConditionTrue, "KubeletReady", "kubelet is posting ready status", now),
			},
		},
	}, nil
}

func podCIDRSpec(cidr string) corev1.NodeSpec {
	if cidr == "" {
		return corev1.NodeSpec{}
	}
	return corev1.NodeSpec{PodCIDR: cidr, PodCIDRs: []string{cidr}}
}

func cond(t corev1.NodeConditionType, s corev1.ConditionStatus, reason, msg string, now metav1.Time) corev1.NodeCondition {
	return corev1.NodeCondition{Type: t, Status: s, Reason: reason, Message: msg, LastHeartbeatTime: now, LastTransitionTime: now}
}

// heartbeat renews the Lease every interval and refreshes the Ready
// condition's heartbeat every minute. It also runs the volumes' disk
// usage walker and keeps the node's local-path storage report current
// (localpath.go).
func (a *Agent) heartbeat(ctx context.Context) {
	a.wg.Add(1)
	go func() { defer a.wg.Done(); a.summary.du.run(ctx) }()
	var storage storageReporter
	storage.report(ctx, a)
	t := time.NewTicker(a.opts.LeaseInterval)
	defer t.Stop()
	lastStatus := time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		storage.report(ctx, a)
		n, err := a.client.CoreV1().Nodes().Get(ctx, a.opts.NodeName, metav1.GetOptions{})
		if err != nil {
			a.log.Warn("heartbeat: get node", "err", err)
			continue
		}
		if err := a.renewLease(ctx, n); err != nil {
			a.log.Warn("heartbeat: lease", "err", err)
		}
		a.reclaimVolumes(ctx, n)
		if time.Since(lastStatus) >= time.Minute || markedUnknown(n) {
			n = n.DeepCopy()
			now := metav1.Now()
			for i := range n.Status.Conditions {
				n.Status.Conditions[i].LastHeartbeatTime = now
				restoreCondition(&n.Status.Conditions[i], now)
			}
			if _, err := a.client.CoreV1().Nodes().UpdateStatus(ctx, n, metav1.UpdateOptions{}); err == nil {
				lastStatus = time.Now()
			}
		}
	}
}

// markedUnknown reports whether the node lifecycle controller set a
// condition Unknown because heartbeats stopped (the agent was away).
func markedUnknown(n *corev1.Node) bool {
	for _, c := range n.Status.Conditions {
		if c.Status == corev1.ConditionUnknown && (c.Reason == "NodeStatusUnknown" || c.Reason == "NodeStatusNeverUpdated") {
			return true
		}
	}
	return false
}

// restoreCondition puts a condition the node lifecycle controller set
// Unknown back to what the agent reports, as the kubelet does on its next
// status update.
func restoreCondition(c *corev1.NodeCondition, now metav1.Time) {
	if c.Status != corev1.ConditionUnknown || (c.Reason != "NodeStatusUnknown" && c.Reason != "NodeStatusNeverUpdated") {
		return
	}
	var fresh corev1.NodeCondition
	switch c.Type {
	case corev1.NodeReady:
		fresh = cond(c.Type, corev1.ConditionTrue, "KubeletReady", "kubelet is posting ready status", now)
	case corev1.NodeMemoryPressure:
		fresh = cond(c.Type, corev1.ConditionFalse, "KubeletHasSufficientMemory", "kubelet has sufficient memory available", now)
	case corev1.NodeDiskPressure:
		fresh = cond(c.Type, corev1.ConditionFalse, "KubeletHasNoDiskPressure", "kubelet has no disk pressure", now)
	case corev1.NodePIDPressure:
		fresh = cond(c.Type, corev1.ConditionFalse, "KubeletHasSufficientPID", "kubelet has sufficient PID available", now)
	default:
		return
	}
	*c = fresh
}

func (a *Agent) renewLease(ctx context.Context, n *corev1.Node) error {
	leases := a.client.CoordinationV1().Leases(LeaseNamespace)
	now := metav1.NewMicroTime(time.Now())
	l, err := leases.Get(ctx, n.Name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		_, err = leases.Create(ctx, &coordinationv1.Lease{
			ObjectMeta: metav1.ObjectMeta{Name: n.Name, Namespace: LeaseNamespace, OwnerReferences: []metav1.OwnerReference{{
				APIVersion: "v1", Kind: "Node", Name: n.Name, UID: n.UID,
			}}},
			Spec: coordinationv1.LeaseSpec{HolderIdentity: ptr.To(n.Name), LeaseDurationSeconds: ptr.To(int32(40)), RenewTime: &now},
		}, metav1.CreateOptions{})
	} else if err == nil {
		l = l.DeepCopy()
		l.Spec.HolderIdentity, l.Spec.LeaseDurationSeconds, l.Spec.RenewTime = ptr.To(n.Name), ptr.To(int32(40)), &now
		_, err = leases.Update(ctx, l, metav1.UpdateOptions{})
	}
	if err != nil {
		return fmt.Errorf("agent: lease: %w", err)
	}
	return nil
}

func memTotal() int64 {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if f := strings.Fields(sc.Text()); len(f) >= 2 && f[0] == "MemTotal:" {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return kb * 1024
		}
	}
	return 0
}

func diskTotal(path string) int64 {
	var st syscall.Statfs_t
	if err := syscall.Statfs(path, &st); err != nil {
		return 0
	}
	return int64(st.Blocks) * int64(st.Bsize)
}

func readTrim(path string) string {
	b, _ := os.ReadFile(path)
	return strings.TrimSpace(string(b))
}

func kernelVersion() string { return readTrim("/proc/sys/kernel/osrelease") }

func osImage() string {
	b, _ := os.ReadFile("/etc/os-release")
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "PRETTY_NAME="); ok {
			return strings.Trim(v, `"`)
		}
	}
	return "Linux"
}
