package kinds

import (
	"fmt"
	"net"
	"sort"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/sets"
)

// nodeUnreachablePodReason is the status.reason the node lifecycle
// controller sets on pods of a lost node.
const nodeUnreachablePodReason = "NodeLost"

func init() {
	tblRegister("", "Pod", []metav1.TableColumnDefinition{
		tblName(),
		tblCol("Ready", "string", "The aggregate readiness state of this pod for accepting traffic."),
		tblCol("Status", "string", "The aggregate status of the containers in this pod."),
		tblCol("Restarts", "string", "The number of times the containers in this pod have been restarted and when the last container in this pod has restarted."),
		tblAge(),
		tblWide("IP", "string", corev1.PodStatus{}.SwaggerDoc()["podIP"]),
		tblWide("Node", "string", corev1.PodSpec{}.SwaggerDoc()["nodeName"]),
		tblWide("Nominated Node", "string", corev1.PodStatus{}.SwaggerDoc()["nominatedNodeName"]),
		tblWide("Readiness Gates", "string", corev1.PodSpec{}.SwaggerDoc()["readinessGates"]),
	}, podRow)

	tblRegister("", "PodTemplate", []metav1.TableColumnDefinition{
		tblName(),
		tblCol("Containers", "string", tblContainersDesc),
		tblCol("Images", "string", tblImagesDesc),
		tblCol("Pod Labels", "string", "The labels for the pod template."),
	}, func(o *corev1.PodTemplate) []interface{} {
		names, images := tblContainers(o.Template.Spec.Containers)
		return []interface{}{o.Name, names, images, labels.FormatLabels(o.Template.Labels)}
	})

	tblRegister("", "ReplicationController", []metav1.TableColumnDefinition{
		tblName(),
		tblCol("Desired", "integer", corev1.ReplicationControllerSpec{}.SwaggerDoc()["replicas"]),
		tblCol("Current", "integer", corev1.ReplicationControllerStatus{}.SwaggerDoc()["replicas"]),
		tblCol("Ready", "integer", corev1.ReplicationControllerStatus{}.SwaggerDoc()["readyReplicas"]),
		tblAge(),
		tblWide("Containers", "string", tblContainersDesc),
		tblWide("Images", "string", tblImagesDesc),
		tblWide("Selector", "string", corev1.ReplicationControllerSpec{}.SwaggerDoc()["selector"]),
	}, func(o *corev1.ReplicationController) []interface{} {
		var cs []corev1.Container
		if o.Spec.Template != nil {
			cs = o.Spec.Template.Spec.Containers
		}
		names, images := tblContainers(cs)
		return []interface{}{o.Name, int64(deref(o.Spec.Replicas, 1)), int64(o.Status.Replicas), int64(o.Status.ReadyReplicas),
			tblSince(o.CreationTimestamp), names, images, labels.FormatLabels(o.Spec.Selector)}
	})

	tblRegister("", "Service", []metav1.TableColumnDefinition{
		tblName(),
		tblCol("Type", "string", corev1.ServiceSpec{}.SwaggerDoc()["type"]),
		tblCol("Cluster-IP", "string", corev1.ServiceSpec{}.SwaggerDoc()["clusterIP"]),
		tblCol("External-IP", "string", corev1.ServiceSpec{}.SwaggerDoc()["externalIPs"]),
		tblCol("Port(s)", "string", corev1.ServiceSpec{}.SwaggerDoc()["ports"]),
		tblAge(),
		tblWide("Selector", "string", corev1.ServiceSpec{}.SwaggerDoc()["selector"]),
	}, serviceRow)

	tblRegister("", "Endpoints", []metav1.TableColumnDefinition{
		tblName(),
		tblCol("Endpoints", "string", corev1.Endpoints{}.SwaggerDoc()["subsets"]),
		tblAge(),
	}, func(o *corev1.Endpoints) []interface{} {
		return []interface{}{o.Name, endpointsCell(o), tblSince(o.CreationTimestamp)}
	})

	tblRegister("", "Node", []metav1.TableColumnDefinition{
		tblName(),
		tblCol("Status", "string", "The status of the node"),
		tblCol("Roles", "string", "The roles of the node"),
		tblAge(),
		tblCol("Version", "string", corev1.NodeSystemInfo{}.SwaggerDoc()["kubeletVersion"]),
		tblWide("Internal-IP", "string", corev1.NodeStatus{}.SwaggerDoc()["addresses"]),
		tblWide("External-IP", "string", corev1.NodeStatus{}.SwaggerDoc()["addresses"]),
		tblWide("OS-Image", "string", corev1.NodeSystemInfo{}.SwaggerDoc()["osImage"]),
		tblWide("Kernel-Version", "string", corev1.NodeSystemInfo{}.SwaggerDoc()["kernelVersion"]),
		tblWide("Container-Runtime", "string", corev1.NodeSystemInfo{}.SwaggerDoc()["containerRuntimeVersion"]),
	}, nodeRow)

	eventCols := []metav1.TableColumnDefinition{
		tblCol("Last Seen", "string", corev1.Event{}.SwaggerDoc()["lastTimestamp"]),
		tblCol("Type", "string", corev1.Event{}.SwaggerDoc()["type"]),
		tblCol("Reason", "string", corev1.Event{}.SwaggerDoc()["reason"]),
		tblCol("Object", "string", corev1.Event{}.SwaggerDoc()["involvedObject"]),
		tblWide("Subobject", "string", corev1.ObjectReference{}.SwaggerDoc()["fieldPath"]),
		tblWide("Source", "string", corev1.Event{}.SwaggerDoc()["source"]),
		tblCol("Message", "string", corev1.Event{}.SwaggerDoc()["message"]),
		tblWide("First Seen", "string", corev1.Event{}.SwaggerDoc()["firstTimestamp"]),
		tblWide("Count", "string", corev1.Event{}.SwaggerDoc()["count"]),
		{Name: "Name", Type: "string", Format: "name", Priority: 1, Description: tblNameDesc},
	}
	tblRegister("", "Event", eventCols, eventRow)
	tblRegister("events.k8s.io", "Event", eventCols, func(o *eventsv1.Event) []interface{} {
		return eventRow(eventToCore(o))
	})

	tblRegister("", "Namespace", []metav1.TableColumnDefinition{
		tblName(),
		tblCol("Status", "string", "The status of the namespace"),
		tblAge(),
	}, func(o *corev1.Namespace) []interface{} {
		return []interface{}{o.Name, string(o.Status.Phase), tblSince(o.CreationTimestamp)}
	})

	tblRegister("", "Secret", []metav1.TableColumnDefinition{
		tblName(),
		tblCol("Type", "string", corev1.Secret{}.SwaggerDoc()["type"]),
		tblCol("Data", "string", corev1.Secret{}.SwaggerDoc()["data"]),
		tblAge(),
	}, func(o *corev1.Secret) []interface{} {
		// Data counts stringData too: it is merged into data on write.
		n := len(o.Data)
		for k := range o.StringData {
			if _, dup := o.Data[k]; !dup {
				n++
			}
		}
		return []interface{}{o.Name, string(o.Type), int64(n), tblSince(o.CreationTimestamp)}
	})

	tblRegister("", "ServiceAccount", []metav1.TableColumnDefinition{
		tblName(),
		tblCol("Secrets", "string", corev1.ServiceAccount{}.SwaggerDoc()["secrets"]),
		tblAge(),
	}, func(o *corev1.ServiceAccount) []interface{} {
		return []interface{}{o.Name, int64(len(o.Secrets)), tblSince(o.CreationTimestamp)}
	})

	tblRegister("", "PersistentVolume", []metav1.TableColumnDefinition{
		tblName(),
		tblCol("Capacity", "string", corev1.PersistentVolumeSpec{}.SwaggerDoc()["capacity"]),
		tblCol("Access Modes", "string", corev1.PersistentVolumeSpec{}.SwaggerDoc()["accessModes"]),
		tblCol("Reclaim Policy", "string", corev1.PersistentVolumeSpec{}.SwaggerDoc()["persistentVolumeReclaimPolicy"]),
		tblCol("Status", "string", corev1.PersistentVolumeStatus{}.SwaggerDoc()["phase"]),
		tblCol("Claim", "string", corev1.PersistentVolumeSpec{}.SwaggerDoc()["claimRef"]),
		tblCol("StorageClass", "string", "StorageClass of the pv"),
		tblCol("VolumeAttributesClass", "string", "VolumeAttributesClass of the pv"),
		tblCol("Reason", "string", corev1.PersistentVolumeStatus{}.SwaggerDoc()["reason"]),
		tblAge(),
		tblWide("VolumeMode", "string", corev1.PersistentVolumeSpec{}.SwaggerDoc()["volumeMode"]),
	}, pvRow)

	tblRegister("", "PersistentVolumeClaim", []metav1.TableColumnDefinition{
		tblName(),
		tblCol("Status", "string", corev1.PersistentVolumeClaimStatus{}.SwaggerDoc()["phase"]),
		tblCol("Volume", "string", corev1.PersistentVolumeClaimSpec{}.SwaggerDoc()["volumeName"]),
		tblCol("Capacity", "string", corev1.PersistentVolumeClaimStatus{}.SwaggerDoc()["capacity"]),
		tblCol("Access Modes", "string", corev1.PersistentVolumeClaimStatus{}.SwaggerDoc()["accessModes"]),
		tblCol("StorageClass", "string", "StorageClass of the pvc"),
		tblCol("VolumeAttributesClass", "string", "VolumeAttributesClass of the pvc"),
		tblAge(),
		tblWide("VolumeMode", "string", corev1.PersistentVolumeClaimSpec{}.SwaggerDoc()["volumeMode"]),
	}, pvcRow)

	tblRegister("", "ConfigMap", []metav1.TableColumnDefinition{
		tblName(),
		tblCol("Data", "string", corev1.ConfigMap{}.SwaggerDoc()["data"]),
		tblAge(),
	}, func(o *corev1.ConfigMap) []interface{} {
		return []interface{}{o.Name, int64(len(o.Data) + len(o.BinaryData)), tblSince(o.CreationTimestamp)}
	})

	tblRegister("", "ResourceQuota", []metav1.TableColumnDefinition{
		tblName(),
		tblCol("Request", "string", "Request represents a minimum amount of cpu/memory that a container may consume."),
		tblCol("Limit", "string", "Limits control the maximum amount of cpu/memory that a container may use independent of contention on the node."),
		tblAge(),
	}, resourceQuotaRow)

	// Upstream has no LimitRange printer: the default columns apply.
	tblRegister("", "LimitRange", tblDefaultColumns(), func(o *corev1.LimitRange) []interface{} { return tblDefaultRow(o) })
}

func isRestartableInit(c *corev1.Container) bool {
	return c != nil && c.RestartPolicy != nil && *c.RestartPolicy == corev1.ContainerRestartPolicyAlways
}

func podConditionTrue(conds []corev1.PodCondition, t corev1.PodConditionType) bool {
	for _, c := range conds {
		if c.Type == t {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

func podReadyTrue(conds []corev1.PodCondition) bool {
	for _, c := range conds {
		if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue {
			return true
		}
	}
	return false
}

// terminatedReason names a terminated container state without a reason.
func terminatedReason(prefix string, t *corev1.ContainerStateTerminated) string {
	if t.Reason != "" {
		return prefix + t.Reason
	}
	if t.Signal != 0 {
		return fmt.Sprintf("%sSignal:%d", prefix, t.Signal)
	}
	return fmt.Sprintf("%sExitCode:%d", prefix, t.ExitCode)
}

// podRow computes kubectl's READY, STATUS and RESTARTS for a pod.
func podRow(pod *corev1.Pod) []interface{} {
	total := len(pod.Spec.Containers)
	ready := 0
	restarts, sidecarRestarts := 0, 0
	var lastRestart, lastSidecarRestart metav1.Time

	reason := string(pod.Status.Phase)
	if pod.Status.Reason != "" {
		reason = pod.Status.Reason
	}
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.PodScheduled && c.Reason == corev1.PodReasonSchedulingGated {
			reason = corev1.PodReasonSchedulingGated
		}
	}

	inits := make(map[string]*corev1.Container, len(pod.Spec.InitContainers))
	for i := range pod.Spec.InitContainers {
		c := &pod.Spec.InitContainers[i]
		inits[c.Name] = c
		if isRestartableInit(c) {
			total++
		}
	}

	later := func(cur *metav1.Time, st corev1.ContainerStatus) {
		if t := st.LastTerminationState.Terminated; t != nil && cur.Before(&t.FinishedAt) {
			*cur = t.FinishedAt
		}
	}

	initializing := false
	for i, st := range pod.Status.InitContainerStatuses {
		restarts += int(st.RestartCount)
		later(&lastRestart, st)
		sidecar := isRestartableInit(inits[st.Name])
		if sidecar {
			sidecarRestarts += int(st.RestartCount)
			later(&lastSidecarRestart, st)
		}
		switch {
		case st.State.Terminated != nil && st.State.Terminated.ExitCode == 0:
			continue
		case sidecar && st.Started != nil && *st.Started:
			if st.Ready {
				ready++
			}
			continue
		case st.State.Terminated != nil:
			reason = terminatedReason("Init:", st.State.Terminated)
		case st.State.Waiting != nil && st.State.Waiting.Reason != "" && st.State.Waiting.Reason != "PodInitializing":
			reason = "Init:" + st.State.Waiting.Reason
		default:
			reason = fmt.Sprintf("Init:%d/%d", i, len(pod.Spec.InitContainers))
		}
		initializing = true
		break
	}

	if !initializing || podConditionTrue(pod.Status.Conditions, corev1.PodInitialized) {
		restarts = sidecarRestarts
		lastRestart = lastSidecarRestart
		running := false
		for i := len(pod.Status.ContainerStatuses) - 1; i >= 0; i-- {
			st := pod.Status.ContainerStatuses[i]
			restarts += int(st.RestartCount)
			later(&lastRestart, st)
			switch {
			case st.State.Waiting != nil && st.State.Waiting.Reason != "":
				reason = st.State.Waiting.Reason
			case st.State.Terminated != nil:
				reason = terminatedReason("", st.State.Terminated)
			case st.Ready && st.State.Running != nil:
				running = true
				ready++
			}
		}
		// A pod whose last container completed but another still runs.
		if reason == "Completed" && running {
			if podReadyTrue(pod.Status.Conditions) {
				reason = "Running"
			} else {
				reason = "NotReady"
			}
		}
	}

	if pod.DeletionTimestamp != nil {
		if pod.Status.Reason == nodeUnreachablePodReason {
			reason = "Unknown"
		} else if pod.Status.Phase != corev1.PodSucceeded && pod.Status.Phase != corev1.PodFailed {
			reason = "Terminating"
		}
	}

	restartCell := strconv.Itoa(restarts)
	if restarts != 0 && !lastRestart.IsZero() {
		restartCell = fmt.Sprintf("%d (%s ago)", restarts, tblSince(lastRestart))
	}

	ip := ""
	if len(pod.Status.PodIPs) > 0 {
		ip = pod.Status.PodIPs[0].IP
	}
	gates := "<none>"
	if n := len(pod.Spec.ReadinessGates); n > 0 {
		trueGates := 0
		for _, g := range pod.Spec.ReadinessGates {
			for _, c := range pod.Status.Conditions {
				if c.Type == g.ConditionType {
					if c.Status == corev1.ConditionTrue {
						trueGates++
					}
					break
				}
			}
		}
		gates = fmt.Sprintf("%d/%d", trueGates, n)
	}
	return []interface{}{pod.Name, fmt.Sprintf("%d/%d", ready, total), reason, restartCell, tblSince(pod.CreationTimestamp),
		orNone(ip), orNone(pod.Spec.NodeName), orNone(pod.Status.NominatedNodeName), gates}
}

func orNone(s string) string {
	if s == "" {
		return "<none>"
	}
	return s
}

func serviceRow(svc *corev1.Service) []interface{} {
	clusterIP := "<none>"
	if len(svc.Spec.ClusterIPs) > 0 {
		clusterIP = svc.Spec.ClusterIPs[0]
	}
	ports := servicePorts(svc.Spec.Ports)
	if ports == "" {
		ports = "<none>"
	}
	return []interface{}{svc.Name, string(svc.Spec.Type), clusterIP, serviceExternalIP(svc), ports,
		tblSince(svc.CreationTimestamp), labels.FormatLabels(svc.Spec.Selector)}
}

// serviceExternalIP renders EXTERNAL-IP: external IPs, load-balancer
// ingress points, "<pending>" for a load balancer without any yet.
func serviceExternalIP(svc *corev1.Service) string {
	switch svc.Spec.Type {
	case corev1.ServiceTypeClusterIP, corev1.ServiceTypeNodePort:
		if len(svc.Spec.ExternalIPs) > 0 {
			return strings.Join(svc.Spec.ExternalIPs, ",")
		}
		return "<none>"
	case corev1.ServiceTypeLoadBalancer:
		lb := loadBalancerIngress(svc.Status.LoadBalancer.Ingress)
		if len(svc.Spec.ExternalIPs) > 0 {
			return strings.Join(append(lb, svc.Spec.ExternalIPs...), ",")
		}
		if len(lb) > 0 {
			return strings.Join(lb, ",")
		}
		return "<pending>"
	case corev1.ServiceTypeExternalName:
		return svc.Spec.ExternalName
	}
	return "<unknown>"
}

// loadBalancerIngress lists the sorted, distinct IPs (or hostnames).
func loadBalancerIngress(ing []corev1.LoadBalancerIngress) []string {
	set := sets.New[string]()
	for _, i := range ing {
		if i.IP != "" {
			set.Insert(i.IP)
		} else if i.Hostname != "" {
			set.Insert(i.Hostname)
		}
	}
	return sets.List(set)
}

func servicePorts(ports []corev1.ServicePort) string {
	out := make([]string, len(ports))
	for i, p := range ports {
		if p.NodePort > 0 {
			out[i] = fmt.Sprintf("%d:%d/%s", p.Port, p.NodePort, p.Protocol)
		} else {
			out[i] = fmt.Sprintf("%d/%s", p.Port, p.Protocol)
		}
	}
	return strings.Join(out, ",")
}

// endpointsCell lists up to three address:port pairs.
func endpointsCell(ep *corev1.Endpoints) string {
	if len(ep.Subsets) == 0 {
		return "<none>"
	}
	var list []string
	count := 0
	add := func(s string) {
		if len(list) < 3 {
			list = append(list, s)
		}
		count++
	}
	for _, ss := range ep.Subsets {
		if len(ss.Ports) == 0 {
			for _, a := range ss.Addresses {
				add(a.IP)
			}
			continue
		}
		for _, p := range ss.Ports {
			for _, a := range ss.Addresses {
				add(net.JoinHostPort(a.IP, strconv.Itoa(int(p.Port))))
			}
		}
	}
	return tblListMore(list, count, 3, "")
}

func nodeRow(n *corev1.Node) []interface{} {
	var status []string
	for _, c := range n.Status.Conditions {
		if c.Type != corev1.NodeReady {
			continue
		}
		if c.Status == corev1.ConditionTrue {
			status = append(status, string(c.Type))
		} else {
			status = append(status, "Not"+string(c.Type))
		}
	}
	// Upstream keys conditions by type, so a repeated Ready counts once.
	if len(status) > 1 {
		status = status[len(status)-1:]
	}
	if len(status) == 0 {
		status = []string{"Unknown"}
	}
	if n.Spec.Unschedulable {
		status = append(status, "SchedulingDisabled")
	}
	roles := strings.Join(nodeRoles(n), ",")
	if roles == "" {
		roles = "<none>"
	}
	info := n.Status.NodeInfo
	return []interface{}{n.Name, strings.Join(status, ","), roles, tblSince(n.CreationTimestamp), info.KubeletVersion,
		nodeAddress(n, corev1.NodeInternalIP), nodeAddress(n, corev1.NodeExternalIP),
		orUnknown(info.OSImage), orUnknown(info.KernelVersion), orUnknown(info.ContainerRuntimeVersion)}
}

func orUnknown(s string) string {
	if s == "" {
		return "<unknown>"
	}
	return s
}

func nodeAddress(n *corev1.Node, t corev1.NodeAddressType) string {
	for _, a := range n.Status.Addresses {
		if a.Type == t {
			return a.Address
		}
	}
	return "<none>"
}

// nodeRoles reads node-role.kubernetes.io/<role> labels and the legacy
// kubernetes.io/role label.
func nodeRoles(n *corev1.Node) []string {
	roles := sets.New[string]()
	for k, v := range n.Labels {
		switch {
		case strings.HasPrefix(k, "node-role.kubernetes.io/"):
			if r := strings.TrimPrefix(k, "node-role.kubernetes.io/"); r != "" {
				roles.Insert(r)
			}
		case k == "kubernetes.io/role" && v != "":
			roles.Insert(v)
		}
	}
	return sets.List(roles)
}

func eventRow(e *corev1.Event) []interface{} {
	first := tblSince(e.FirstTimestamp)
	if e.FirstTimestamp.IsZero() {
		first = tblSinceMicro(e.EventTime)
	}
	last := tblSince(e.LastTimestamp)
	if e.LastTimestamp.IsZero() {
		last = first
	}
	count := e.Count
	if e.Series != nil {
		last = tblSinceMicro(e.Series.LastObservedTime)
		count = e.Series.Count
	} else if count == 0 {
		count = 1
	}
	target := strings.ToLower(e.InvolvedObject.Kind)
	if e.InvolvedObject.Name != "" {
		target += "/" + e.InvolvedObject.Name
	}
	component := e.Source.Component
	if component == "" {
		component = e.ReportingController
	}
	host := e.Source.Host
	if host == "" {
		host = e.ReportingInstance
	}
	source := component
	if host != "" {
		source += ", " + host
	}
	return []interface{}{last, e.Type, e.Reason, target, e.InvolvedObject.FieldPath, source,
		strings.TrimSpace(e.Message), first, int64(count), e.Name}
}

// eventToCore maps an events.k8s.io/v1 Event onto the core/v1 fields the
// printer reads, as upstream's conversion does.
func eventToCore(e *eventsv1.Event) *corev1.Event {
	out := &corev1.Event{
		ObjectMeta:          e.ObjectMeta,
		InvolvedObject:      e.Regarding,
		Reason:              e.Reason,
		Message:             e.Note,
		Type:                e.Type,
		EventTime:           e.EventTime,
		FirstTimestamp:      e.DeprecatedFirstTimestamp,
		LastTimestamp:       e.DeprecatedLastTimestamp,
		Count:               e.DeprecatedCount,
		Source:              e.DeprecatedSource,
		ReportingController: e.ReportingController,
		ReportingInstance:   e.ReportingInstance,
		Action:              e.Action,
	}
	if e.Series != nil {
		out.Series = &corev1.EventSeries{Count: e.Series.Count, LastObservedTime: e.Series.LastObservedTime}
	}
	return out
}

// accessModes abbreviates access modes in upstream's fixed order.
func accessModes(modes []corev1.PersistentVolumeAccessMode) string {
	has := map[corev1.PersistentVolumeAccessMode]bool{}
	for _, m := range modes {
		has[m] = true
	}
	var out []string
	for _, m := range []struct {
		mode  corev1.PersistentVolumeAccessMode
		short string
	}{
		{corev1.ReadWriteOnce, "RWO"}, {corev1.ReadOnlyMany, "ROX"},
		{corev1.ReadWriteMany, "RWX"}, {corev1.ReadWriteOncePod, "RWOP"},
	} {
		if has[m.mode] {
			out = append(out, m.short)
		}
	}
	return strings.Join(out, ",")
}

const betaStorageClassAnnotation = "volume.beta.kubernetes.io/storage-class"

func pvRow(pv *corev1.PersistentVolume) []interface{} {
	claim := ""
	if pv.Spec.ClaimRef != nil {
		claim = pv.Spec.ClaimRef.Namespace + "/" + pv.Spec.ClaimRef.Name
	}
	capacity := pv.Spec.Capacity[corev1.ResourceStorage]
	phase := string(pv.Status.Phase)
	if pv.DeletionTimestamp != nil {
		phase = "Terminating"
	}
	class, ok := pv.Annotations[betaStorageClassAnnotation]
	if !ok {
		class = pv.Spec.StorageClassName
	}
	vac := "<unset>"
	if pv.Spec.VolumeAttributesClassName != nil {
		vac = *pv.Spec.VolumeAttributesClassName
	}
	mode := "<unset>"
	if pv.Spec.VolumeMode != nil {
		mode = string(*pv.Spec.VolumeMode)
	}
	return []interface{}{pv.Name, capacity.String(), accessModes(pv.Spec.AccessModes), string(pv.Spec.PersistentVolumeReclaimPolicy),
		phase, claim, class, vac, pv.Status.Reason, tblSince(pv.CreationTimestamp), mode}
}

func pvcRow(pvc *corev1.PersistentVolumeClaim) []interface{} {
	phase := string(pvc.Status.Phase)
	if pvc.DeletionTimestamp != nil {
		phase = "Terminating"
	}
	capacity, modes := "", ""
	if pvc.Spec.VolumeName != "" {
		modes = accessModes(pvc.Status.AccessModes)
		q := pvc.Status.Capacity[corev1.ResourceStorage]
		capacity = q.String()
	}
	class, ok := pvc.Annotations[betaStorageClassAnnotation]
	if !ok && pvc.Spec.StorageClassName != nil {
		class = *pvc.Spec.StorageClassName
	}
	vac := "<unset>"
	if pvc.Spec.VolumeAttributesClassName != nil {
		vac = *pvc.Spec.VolumeAttributesClassName
	}
	mode := "<unset>"
	if pvc.Spec.VolumeMode != nil {
		mode = string(*pvc.Spec.VolumeMode)
	}
	return []interface{}{pvc.Name, phase, pvc.Spec.VolumeName, capacity, modes, class, vac, tblSince(pvc.CreationTimestamp), mode}
}

// resourceQuotaRow renders "resource: used/hard" pairs, limits.* apart.
func resourceQuotaRow(q *corev1.ResourceQuota) []interface{} {
	names := make([]string, 0, len(q.Status.Hard))
	for n := range q.Status.Hard {
		names = append(names, string(n))
	}
	sort.Strings(names)
	var req, lim []string
	for _, n := range names {
		used := q.Status.Used[corev1.ResourceName(n)]
		hard := q.Status.Hard[corev1.ResourceName(n)]
		cell := fmt.Sprintf("%s: %s/%s", n, used.String(), hard.String())
		if pieces := strings.Split(n, "."); len(pieces) > 1 && pieces[0] == "limits" {
			lim = append(lim, cell)
		} else {
			req = append(req, cell)
		}
	}
	return []interface{}{q.Name, strings.Join(req, ", "), strings.Join(lim, ", "), tblSince(q.CreationTimestamp)}
}
