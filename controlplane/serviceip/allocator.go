package serviceip

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/skiffhq/skiff/controlplane/storage"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// Config configures an Allocator.
type Config struct {
	Store *storage.Store
	// ServiceCIDR is the cluster IP range, e.g. 10.43.0.0/16.
	ServiceCIDR string
	// NodePortRange is "first-last"; default 30000-32767.
	NodePortRange string
	Logger        *slog.Logger
}

// Allocator hands out cluster IPs and node ports to Services.
type Allocator struct {
	cidr      netip.Prefix
	base      netip.Addr // the network address
	ips       *span
	ports     *span
	portFirst int
	portRange string
	log       *slog.Logger
}

// maxIPRange caps the usable size of large (IPv6) service ranges.
const maxIPRange = 1 << 20

// New returns an Allocator for cfg.
func New(cfg Config) (*Allocator, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	p, err := netip.ParsePrefix(cfg.ServiceCIDR)
	if err != nil {
		return nil, fmt.Errorf("service CIDR %q: %w", cfg.ServiceCIDR, err)
	}
	p = p.Masked()
	hostBits := p.Addr().BitLen() - p.Bits()
	size := maxIPRange
	if hostBits < 21 {
		size = 1<<hostBits - 2 // without the network and broadcast addresses
	}
	if size < 1 {
		return nil, fmt.Errorf("service CIDR %s is too small", p)
	}
	if cfg.NodePortRange == "" {
		cfg.NodePortRange = "30000-32767"
	}
	lo, hi, ok := strings.Cut(cfg.NodePortRange, "-")
	first, err1 := strconv.Atoi(lo)
	last, err2 := strconv.Atoi(hi)
	if !ok || err1 != nil || err2 != nil || first < 1 || last > 65535 || last < first {
		return nil, fmt.Errorf("invalid node port range %q", cfg.NodePortRange)
	}
	a := &Allocator{
		cidr:      p,
		base:      p.Addr(),
		portFirst: first,
		portRange: cfg.NodePortRange,
		log:       cfg.Logger.With("component", "service-allocator"),
	}
	a.ips = &span{
		store: cfg.Store, prefix: IPPrefix, size: size,
		static: staticBand(size, 16, 256, 16),
		name:   func(off int) string { return a.ipAt(off).String() },
		parse: func(s string) (int, bool) {
			ip, err := netip.ParseAddr(s)
			if err != nil {
				return 0, false
			}
			off, err := a.ipOffset(ip)
			return off, err == nil
		},
	}
	nports := last - first + 1
	a.ports = &span{
		store: cfg.Store, prefix: NodePortPrefix, size: nports,
		static: staticBand(nports, 16, 128, 32),
		name:   func(off int) string { return strconv.Itoa(first + off) },
		parse: func(s string) (int, bool) {
			n, err := strconv.Atoi(s)
			if err != nil || n < first || n > last {
				return 0, false
			}
			return n - first, true
		},
	}
	return a, nil
}

// ipAt is the address at offset off (offset 0 is the first usable address).
func (a *Allocator) ipAt(off int) netip.Addr {
	if a.base.Is4() {
		b := a.base.As4()
		n := binary.BigEndian.Uint32(b[:]) + uint32(off) + 1
		binary.BigEndian.PutUint32(b[:], n)
		return netip.AddrFrom4(b)
	}
	b := a.base.As16()
	n := binary.BigEndian.Uint64(b[8:]) + uint64(off) + 1
	binary.BigEndian.PutUint64(b[8:], n)
	return netip.AddrFrom16(b)
}

var errNotInRange = errors.New("not in range")

func (a *Allocator) ipOffset(ip netip.Addr) (int, error) {
	ip = ip.Unmap()
	if ip.Is4() != a.base.Is4() || !a.cidr.Contains(ip) {
		return 0, errNotInRange
	}
	var d uint64
	if ip.Is4() {
		x, y := ip.As4(), a.base.As4()
		d = uint64(binary.BigEndian.Uint32(x[:]) - binary.BigEndian.Uint32(y[:]))
	} else {
		x, y := ip.As16(), a.base.As16()
		if string(x[:8]) != string(y[:8]) {
			return 0, errNotInRange
		}
		d = binary.BigEndian.Uint64(x[8:]) - binary.BigEndian.Uint64(y[8:])
	}
	if d < 1 || d > uint64(a.ips.size) {
		return 0, errNotInRange
	}
	return int(d - 1), nil
}

// CIDR returns the service range.
func (a *Allocator) CIDR() netip.Prefix { return a.cidr }

// FirstIP returns the first address of the range, the `kubernetes` Service's.
func (a *Allocator) FirstIP() netip.Addr { return a.ipAt(0) }

func ownerOf(svc *corev1.Service) owner {
	return owner{Namespace: svc.Namespace, Name: svc.Name, UID: svc.UID, At: time.Now().UTC()}
}

func needsClusterIP(svc *corev1.Service) bool {
	return svc.Spec.Type != corev1.ServiceTypeExternalName
}

func hasClusterIP(svc *corev1.Service) bool {
	return needsClusterIP(svc) && svc.Spec.ClusterIP != "" && svc.Spec.ClusterIP != corev1.ClusterIPNone
}

func needsNodePorts(svc *corev1.Service) bool {
	switch svc.Spec.Type {
	case corev1.ServiceTypeNodePort:
		return true
	case corev1.ServiceTypeLoadBalancer:
		return svc.Spec.AllocateLoadBalancerNodePorts == nil || *svc.Spec.AllocateLoadBalancerNodePorts
	}
	return false
}

func needsHealthCheckPort(svc *corev1.Service) bool {
	return svc.Spec.Type == corev1.ServiceTypeLoadBalancer &&
		svc.Spec.ExternalTrafficPolicy == corev1.ServiceExternalTrafficPolicyLocal
}

// holding lists what a stored service holds: its cluster IP offset (-1 for
// none) and node port offsets.
func (a *Allocator) holding(svc *corev1.Service) (ip int, ports []int) {
	ip = -1
	if svc == nil {
		return ip, nil
	}
	if hasClusterIP(svc) {
		if addr, err := netip.ParseAddr(svc.Spec.ClusterIP); err == nil {
			if off, err := a.ipOffset(addr); err == nil {
				ip = off
			}
		}
	}
	seen := map[int]bool{}
	add := func(p int32) {
		off := int(p) - a.portFirst
		if p != 0 && off >= 0 && off < a.ports.size && !seen[off] {
			seen[off] = true
			ports = append(ports, off)
		}
	}
	if svc.Spec.Type == corev1.ServiceTypeNodePort || svc.Spec.Type == corev1.ServiceTypeLoadBalancer {
		for _, p := range svc.Spec.Ports {
			add(p.NodePort)
		}
	}
	if needsHealthCheckPort(svc) {
		add(svc.Spec.HealthCheckNodePort)
	}
	return ip, ports
}

var serviceGK = schema.GroupKind{Kind: "Service"}

func invalid(svc *corev1.Service, errs ...*field.Error) error {
	return apierrors.NewInvalid(serviceGK, svc.Name, errs)
}

// BeforeCreate implements apiserver.StorageHook.
func (a *Allocator) BeforeCreate(ctx context.Context, obj runtime.Object, dryRun bool) error {
	svc, ok := obj.(*corev1.Service)
	if !ok {
		return nil
	}
	return a.allocate(ctx, svc, nil, dryRun)
}

// BeforeUpdate implements apiserver.StorageHook.
func (a *Allocator) BeforeUpdate(ctx context.Context, obj, old runtime.Object, dryRun bool) error {
	svc, ok := obj.(*corev1.Service)
	if !ok {
		return nil
	}
	prev, _ := old.(*corev1.Service)
	PrepareForUpdate(svc, prev)
	return a.allocate(ctx, svc, prev, dryRun)
}

// PrepareForUpdate fills what an update left out from the stored service
// and drops what its new type no longer uses, as upstream does before
// validation. It is idempotent; BeforeUpdate calls it again.
func PrepareForUpdate(obj, old runtime.Object) {
	svc, ok := obj.(*corev1.Service)
	prev, ok2 := old.(*corev1.Service)
	if !ok || !ok2 || prev == nil {
		return
	}
	keepAllocated(svc, prev)
	dropTypeDependent(svc, prev)
}

// Release implements apiserver.StorageHook: what obj holds and kept does
// not goes back to the pool.
func (a *Allocator) Release(ctx context.Context, obj, kept runtime.Object) {
	svc, ok := obj.(*corev1.Service)
	if !ok {
		return
	}
	k, _ := kept.(*corev1.Service)
	ip, ports := a.holding(svc)
	kip, kports := a.holding(k)
	o := ownerOf(svc)
	if ip >= 0 && ip != kip {
		a.releaseIP(ctx, ip, o)
	}
	keep := map[int]bool{}
	for _, p := range kports {
		keep[p] = true
	}
	for _, p := range ports {
		if !keep[p] {
			a.releasePort(ctx, p, o)
		}
	}
}

// AfterDelete implements apiserver.StorageHook.
func (a *Allocator) AfterDelete(ctx context.Context, obj runtime.Object) {
	a.Release(ctx, obj, nil)
}

func (a *Allocator) releaseIP(ctx context.Context, off int, o owner) {
	if err := a.ips.release(context.WithoutCancel(ctx), off, o); err != nil {
		a.log.Error("cannot release cluster IP", "ip", a.ipAt(off), "service", o.Namespace+"/"+o.Name, "err", err)
	}
}

func (a *Allocator) releasePort(ctx context.Context, off int, o owner) {
	if err := a.ports.release(context.WithoutCancel(ctx), off, o); err != nil {
		a.log.Error("cannot release node port", "port", a.portFirst+off, "service", o.Namespace+"/"+o.Name, "err", err)
	}
}

// keepAllocated fills values an update left empty from the stored service,
// as upstream's patchAllocatedValues does (clients often send a spec
// without the allocated fields).
func keepAllocated(svc, old *corev1.Service) {
	if needsClusterIP(old) && needsClusterIP(svc) {
		if svc.Spec.ClusterIP == "" && len(svc.Spec.ClusterIPs) == 0 {
			svc.Spec.ClusterIP = old.Spec.ClusterIP
			svc.Spec.ClusterIPs = append([]string(nil), old.Spec.ClusterIPs...)
		} else if svc.Spec.ClusterIP == "" && len(svc.Spec.ClusterIPs) > 0 && len(old.Spec.ClusterIPs) > 0 && svc.Spec.ClusterIPs[0] == old.Spec.ClusterIPs[0] {
			svc.Spec.ClusterIP = old.Spec.ClusterIP
		}
	}
	if needsNodePorts(old) && needsNodePorts(svc) {
		used := map[int32]bool{}
		for _, p := range svc.Spec.Ports {
			if p.NodePort != 0 {
				used[p.NodePort] = true
			}
		}
		byName := map[string]int32{}
		for _, p := range old.Spec.Ports {
			byName[p.Name] = p.NodePort
		}
		for i := range svc.Spec.Ports {
			p := &svc.Spec.Ports[i]
			if p.NodePort == 0 {
				if v := byName[p.Name]; v != 0 && !used[v] {
					p.NodePort = v
					used[v] = true
				}
			}
		}
	}
	if needsHealthCheckPort(old) && needsHealthCheckPort(svc) && svc.Spec.HealthCheckNodePort == 0 {
		svc.Spec.HealthCheckNodePort = old.Spec.HealthCheckNodePort
	}
}

// dropTypeDependent clears fields the new type no longer uses when the
// client left them as they were (upstream's dropTypeDependentFields).
func dropTypeDependent(svc, old *corev1.Service) {
	if needsClusterIP(old) && !needsClusterIP(svc) && svc.Spec.ClusterIP == old.Spec.ClusterIP &&
		strings.Join(svc.Spec.ClusterIPs, ",") == strings.Join(old.Spec.ClusterIPs, ",") {
		svc.Spec.ClusterIP = ""
		svc.Spec.ClusterIPs = nil
	}
	if needsClusterIP(old) && !needsClusterIP(svc) {
		if fmt.Sprint(svc.Spec.IPFamilies) == fmt.Sprint(old.Spec.IPFamilies) {
			svc.Spec.IPFamilies = nil
		}
		if (svc.Spec.IPFamilyPolicy == nil) == (old.Spec.IPFamilyPolicy == nil) &&
			(svc.Spec.IPFamilyPolicy == nil || *svc.Spec.IPFamilyPolicy == *old.Spec.IPFamilyPolicy) {
			svc.Spec.IPFamilyPolicy = nil
		}
	}
	wasNP := old.Spec.Type == corev1.ServiceTypeNodePort || old.Spec.Type == corev1.ServiceTypeLoadBalancer
	isNP := svc.Spec.Type == corev1.ServiceTypeNodePort || svc.Spec.Type == corev1.ServiceTypeLoadBalancer
	if wasNP && !isNP && sameNodePorts(svc, old) {
		for i := range svc.Spec.Ports {
			svc.Spec.Ports[i].NodePort = 0
		}
	}
	if needsHealthCheckPort(old) && !needsHealthCheckPort(svc) && svc.Spec.HealthCheckNodePort == old.Spec.HealthCheckNodePort {
		svc.Spec.HealthCheckNodePort = 0
	}
	if old.Spec.Type == corev1.ServiceTypeLoadBalancer && svc.Spec.Type != corev1.ServiceTypeLoadBalancer {
		if a, b := old.Spec.AllocateLoadBalancerNodePorts, svc.Spec.AllocateLoadBalancerNodePorts; a != nil && b != nil && *a == *b {
			svc.Spec.AllocateLoadBalancerNodePorts = nil
		}
		if a, b := old.Spec.LoadBalancerClass, svc.Spec.LoadBalancerClass; (a == nil) == (b == nil) && (a == nil || *a == *b) {
			svc.Spec.LoadBalancerClass = nil
		}
	}
	if externallyAccessible(old) && !externallyAccessible(svc) && old.Spec.ExternalTrafficPolicy == svc.Spec.ExternalTrafficPolicy {
		svc.Spec.ExternalTrafficPolicy = ""
	}
	if svc.Spec.Type != corev1.ServiceTypeLoadBalancer {
		svc.Status.LoadBalancer = corev1.LoadBalancerStatus{}
	}
}

func externallyAccessible(svc *corev1.Service) bool {
	return svc.Spec.Type == corev1.ServiceTypeLoadBalancer || svc.Spec.Type == corev1.ServiceTypeNodePort ||
		(svc.Spec.Type == corev1.ServiceTypeClusterIP && len(svc.Spec.ExternalIPs) > 0)
}

func sameNodePorts(a, b *corev1.Service) bool {
	byName := map[string]int32{}
	for _, p := range b.Spec.Ports {
		byName[p.Name] = p.NodePort
	}
	for _, p := range a.Spec.Ports {
		if p.NodePort != 0 && byName[p.Name] != p.NodePort {
			return false
		}
	}
	return true
}

// allocate fills and reserves svc's cluster IP and node ports. old is the
// stored service on update. On error nothing new stays reserved.
func (a *Allocator) allocate(ctx context.Context, svc, old *corev1.Service, dryRun bool) (err error) {
	o := ownerOf(svc)
	var newIP = -1
	var newPorts []int
	defer func() {
		if err != nil && !dryRun {
			if newIP >= 0 {
				a.releaseIP(ctx, newIP, o)
			}
			for _, p := range newPorts {
				a.releasePort(ctx, p, o)
			}
		}
	}()
	oldIP, oldPorts := a.holding(old)
	clusterIPs := field.NewPath("spec", "clusterIPs")

	if !needsClusterIP(svc) {
		// ExternalName: no cluster IP (validation rejects one).
		if svc.Spec.ClusterIP == "" && len(svc.Spec.ClusterIPs) == 0 {
			svc.Spec.IPFamilies, svc.Spec.IPFamilyPolicy = nil, nil
		}
	} else {
		// spec.clusterIPs mirrors spec.clusterIP.
		switch {
		case svc.Spec.ClusterIP != "" && len(svc.Spec.ClusterIPs) == 0:
			svc.Spec.ClusterIPs = []string{svc.Spec.ClusterIP}
		case svc.Spec.ClusterIP == "" && len(svc.Spec.ClusterIPs) > 0:
			svc.Spec.ClusterIP = svc.Spec.ClusterIPs[0]
		case svc.Spec.ClusterIP != "" && svc.Spec.ClusterIPs[0] != svc.Spec.ClusterIP:
			return invalid(svc, field.Invalid(clusterIPs, svc.Spec.ClusterIPs, "element [0] of spec.clusterIPs must match spec.clusterIP"))
		}
		if len(svc.Spec.ClusterIPs) > 1 {
			return invalid(svc, field.Invalid(clusterIPs, svc.Spec.ClusterIPs, "may specify no more than one IP for each IP family"))
		}
		if old != nil && needsClusterIP(old) && old.Spec.ClusterIP != "" && svc.Spec.ClusterIP != old.Spec.ClusterIP {
			return invalid(svc, field.Invalid(clusterIPs.Index(0), svc.Spec.ClusterIP, "field is immutable"))
		}
		a.setFamilies(svc)
		switch ip := svc.Spec.ClusterIP; {
		case ip == corev1.ClusterIPNone:
		case ip == "":
			off, err := a.ips.next(ctx, o, dryRun)
			if err != nil {
				return apierrors.NewInternalError(fmt.Errorf("failed to allocate a serviceIP: %w", err))
			}
			if !dryRun {
				newIP = off
			}
			svc.Spec.ClusterIP = a.ipAt(off).String()
			svc.Spec.ClusterIPs = []string{svc.Spec.ClusterIP}
		default:
			addr, perr := netip.ParseAddr(ip)
			if perr != nil {
				return invalid(svc, field.Invalid(clusterIPs.Index(0), ip, "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)"))
			}
			off, rerr := a.ipOffset(addr)
			if rerr != nil {
				return invalid(svc, field.Invalid(clusterIPs, svc.Spec.ClusterIPs, fmt.Sprintf(
					"failed to allocate IP %s: provided IP is not in the valid range. The range of valid IPs is %s", ip, a.cidr)))
			}
			if off == oldIP {
				break
			}
			if err := a.take(ctx, a.ips, off, o, dryRun); err != nil {
				if errors.Is(err, ErrAllocated) {
					return invalid(svc, field.Invalid(clusterIPs, svc.Spec.ClusterIPs, fmt.Sprintf("failed to allocate IP %s: provided IP is already allocated", ip)))
				}
				return err
			}
			if !dryRun {
				newIP = off
			}
		}
	}

	held := map[int]bool{}
	for _, p := range oldPorts {
		held[p] = true
	}
	mine := map[int]bool{}
	// reservePort takes an explicitly requested port (once per value).
	reservePort := func(path *field.Path, port int32) error {
		off := int(port) - a.portFirst
		if off < 0 || off >= a.ports.size {
			return invalid(svc, field.Invalid(path, port, "provided port is not in the valid range. The range of valid ports is "+a.portRange))
		}
		if held[off] || mine[off] {
			mine[off] = true
			return nil
		}
		if err := a.take(ctx, a.ports, off, o, dryRun); err != nil {
			if errors.Is(err, ErrAllocated) {
				return invalid(svc, field.Invalid(path, port, "provided port is already allocated"))
			}
			return err
		}
		mine[off] = true
		if !dryRun {
			newPorts = append(newPorts, off)
		}
		return nil
	}
	nextPort := func() (int32, error) {
		off, err := a.ports.next(ctx, o, dryRun)
		if err != nil {
			return 0, apierrors.NewInternalError(fmt.Errorf("failed to allocate a nodePort: %w", err))
		}
		mine[off] = true
		if !dryRun {
			newPorts = append(newPorts, off)
		}
		return int32(a.portFirst + off), nil
	}
	ports := field.NewPath("spec", "ports")
	switch svc.Spec.Type {
	case corev1.ServiceTypeNodePort, corev1.ServiceTypeLoadBalancer:
		for i, p := range svc.Spec.Ports {
			if p.NodePort != 0 {
				if err := reservePort(ports.Index(i).Child("nodePort"), p.NodePort); err != nil {
					return err
				}
			}
		}
		if needsNodePorts(svc) {
			// Ports sharing a number (TCP and UDP 53) share a node port.
			byPort := map[int32]int32{}
			for _, p := range svc.Spec.Ports {
				if p.NodePort != 0 {
					byPort[p.Port] = p.NodePort
				}
			}
			for i := range svc.Spec.Ports {
				p := &svc.Spec.Ports[i]
				if p.NodePort != 0 {
					continue
				}
				if np, ok := byPort[p.Port]; ok {
					p.NodePort = np
					continue
				}
				np, err := nextPort()
				if err != nil {
					return err
				}
				p.NodePort = np
				byPort[p.Port] = np
			}
		}
	default:
		for i, p := range svc.Spec.Ports {
			if p.NodePort != 0 {
				return invalid(svc, field.Forbidden(ports.Index(i).Child("nodePort"), fmt.Sprintf("may not be used when `type` is '%s'", svc.Spec.Type)))
			}
		}
	}
	if needsHealthCheckPort(svc) {
		path := field.NewPath("spec", "healthCheckNodePort")
		if hc := svc.Spec.HealthCheckNodePort; hc != 0 {
			if err := reservePort(path, hc); err != nil {
				return err
			}
		} else {
			np, err := nextPort()
			if err != nil {
				return err
			}
			svc.Spec.HealthCheckNodePort = np
		}
	} else if svc.Spec.HealthCheckNodePort != 0 {
		return invalid(svc, field.Invalid(field.NewPath("spec", "healthCheckNodePort"), svc.Spec.HealthCheckNodePort,
			"may only be set when `type` is 'LoadBalancer' and `externalTrafficPolicy` is 'Local'"))
	}
	return nil
}

// take reserves off, or for a dry run checks that it is free.
func (a *Allocator) take(ctx context.Context, s *span, off int, o owner, dryRun bool) error {
	if dryRun {
		return s.heldBy(ctx, off, o)
	}
	return s.reserve(ctx, off, o)
}

// setFamilies fills ipFamilies and ipFamilyPolicy for a single-stack
// cluster, as upstream does when it allocates.
func (a *Allocator) setFamilies(svc *corev1.Service) {
	fam := corev1.IPv4Protocol
	if !a.base.Is4() {
		fam = corev1.IPv6Protocol
	}
	if len(svc.Spec.IPFamilies) == 0 {
		svc.Spec.IPFamilies = []corev1.IPFamily{fam}
	}
	if svc.Spec.IPFamilyPolicy == nil {
		p := corev1.IPFamilyPolicySingleStack
		if svc.Spec.ClusterIP == corev1.ClusterIPNone && len(svc.Spec.Selector) == 0 {
			p = corev1.IPFamilyPolicyRequireDualStack
		}
		svc.Spec.IPFamilyPolicy = &p
	}
}
