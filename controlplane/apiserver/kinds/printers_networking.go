package kinds

import (
	"fmt"
	"strconv"
	"strings"

	discoveryv1 "k8s.io/api/discovery/v1"
	discoveryv1beta1 "k8s.io/api/discovery/v1beta1"
	extensionsv1beta1 "k8s.io/api/extensions/v1beta1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/sets"
)

func init() {
	tblRegister("networking.k8s.io", "Ingress", []metav1.TableColumnDefinition{
		tblName(),
		tblCol("Class", "string", "The name of the IngressClass resource that should be used for additional configuration"),
		tblCol("Hosts", "string", "Hosts that incoming requests are matched against before the ingress rule"),
		tblCol("Address", "string", "Address is a list containing ingress points for the load-balancer"),
		tblCol("Ports", "string", "Ports of TLS configurations that open"),
		tblAge(),
	}, func(o *networkingv1.Ingress) []interface{} {
		class := "<none>"
		if o.Spec.IngressClassName != nil {
			class = *o.Spec.IngressClassName
		}
		ports := "80"
		if len(o.Spec.TLS) != 0 {
			ports = "80, 443"
		}
		return []interface{}{o.Name, class, ingressHosts(o.Spec.Rules), ingressAddress(o.Status.LoadBalancer.Ingress), ports,
			tblSince(o.CreationTimestamp)}
	})

	tblRegister("networking.k8s.io", "IngressClass", []metav1.TableColumnDefinition{
		tblName(),
		tblCol("Controller", "string", "Controller that is responsible for handling this class"),
		tblCol("Parameters", "string", "A reference to a resource with additional parameters"),
		tblAge(),
	}, func(o *networkingv1.IngressClass) []interface{} {
		params := "<none>"
		if p := o.Spec.Parameters; p != nil {
			params = p.Kind
			if p.APIGroup != nil {
				params += "." + *p.APIGroup
			}
			params += "/" + p.Name
		}
		return []interface{}{o.Name, o.Spec.Controller, params, tblSince(o.CreationTimestamp)}
	})

	tblRegister("networking.k8s.io", "NetworkPolicy", []metav1.TableColumnDefinition{
		tblName(),
		tblCol("Pod-Selector", "string", extensionsv1beta1.NetworkPolicySpec{}.SwaggerDoc()["podSelector"]),
		tblAge(),
	}, func(o *networkingv1.NetworkPolicy) []interface{} {
		return []interface{}{o.Name, metav1.FormatLabelSelector(&o.Spec.PodSelector), tblSince(o.CreationTimestamp)}
	})

	tblRegister("discovery.k8s.io", "EndpointSlice", []metav1.TableColumnDefinition{
		tblName(),
		tblCol("AddressType", "string", discoveryv1beta1.EndpointSlice{}.SwaggerDoc()["addressType"]),
		tblCol("Ports", "string", discoveryv1beta1.EndpointSlice{}.SwaggerDoc()["ports"]),
		tblCol("Endpoints", "string", discoveryv1beta1.EndpointSlice{}.SwaggerDoc()["endpoints"]),
		tblAge(),
	}, func(o *discoveryv1.EndpointSlice) []interface{} {
		var ports []string
		for _, p := range o.Ports {
			if len(ports) == 3 {
				break
			}
			switch {
			case p.Port != nil:
				ports = append(ports, strconv.Itoa(int(*p.Port)))
			case p.Name != nil:
				ports = append(ports, *p.Name)
			default:
				ports = append(ports, "*")
			}
		}
		var addrs []string
		count := 0
		for _, e := range o.Endpoints {
			for _, a := range e.Addresses {
				if len(addrs) < 3 {
					addrs = append(addrs, a)
				}
				count++
			}
		}
		return []interface{}{o.Name, string(o.AddressType), tblListMore(ports, len(o.Ports), 3, "<unset>"),
			tblListMore(addrs, count, 3, "<unset>"), tblSince(o.CreationTimestamp)}
	})
}

// ingressHosts lists up to three rule hosts, "*" when none is set.
func ingressHosts(rules []networkingv1.IngressRule) string {
	var list []string
	for _, r := range rules {
		if len(list) == 3 {
			return fmt.Sprintf("%s + %d more...", strings.Join(list, ","), len(rules)-3)
		}
		if r.Host != "" {
			list = append(list, r.Host)
		}
	}
	if len(list) == 0 {
		return "*"
	}
	return strings.Join(list, ",")
}

func ingressAddress(ing []networkingv1.IngressLoadBalancerIngress) string {
	set := sets.New[string]()
	for _, i := range ing {
		if i.IP != "" {
			set.Insert(i.IP)
		} else if i.Hostname != "" {
			set.Insert(i.Hostname)
		}
	}
	return strings.Join(sets.List(set), ",")
}
