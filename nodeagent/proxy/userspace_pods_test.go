package proxy_test

import (
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/skiffhq/skiff/internal/nodetest"
	"github.com/skiffhq/skiff/internal/testimages"
	"github.com/skiffhq/skiff/internal/testserver"
	"github.com/skiffhq/skiff/nodeagent/agent"
	"github.com/skiffhq/skiff/nodeagent/proxy"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// TestUserspaceModeOnRealPods runs the agent with --proxy-mode userspace:
// a pod on the CNI bridge reaches a ClusterIP (a local address of the host
// on the holder link, served by the proxy's listener) and both backends
// answer; no nftables table is made.
func TestUserspaceModeOnRealPods(t *testing.T) {
	nodetest.Require(t)
	state := nodetest.StateDir(t, nodetest.Busybox, nodetest.HTTPServer)
	e := &env{t: t, srv: testserver.Start(t), nodeName: fmt.Sprintf("proxy-us-%d", time.Now().UnixNano()%1e6)}
	e.opts = nodetest.AgentOptions(e.nodeName, state, podCIDR, bridge)
	e.popts = proxy.Options{Table: table, Interface: dummy}
	e.opts.ProxyMode, e.opts.Proxy = agent.ProxyModeUserspace, e.popts
	t.Cleanup(e.cleanup)
	if err := e.startAgent(); err != nil {
		t.Fatal(err)
	}

	web := corev1.Container{Name: "web", Image: testimages.HTTPServer, ImagePullPolicy: corev1.PullNever}
	labels := map[string]string{"app": "web"}
	e.createPod("web-1", labels, web)
	e.createPod("web-2", labels, web)
	e.createPod("client", nil, corev1.Container{Name: "c", Image: testimages.Busybox, ImagePullPolicy: corev1.PullNever,
		Command: []string{"sleep", "3600"}})
	svc := e.createService(&corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "web"},
		Spec: corev1.ServiceSpec{Selector: labels,
			Ports: []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromInt32(testimages.HTTPServerPort)}}},
	})
	e.waitReady("web-1")
	e.waitReady("web-2")
	e.waitReady("client")
	e.waitEndpoints("web", 2)

	t.Run("a pod reaches the ClusterIP and both backends answer", func(t *testing.T) {
		// Round robin: four requests in a row reach both pods.
		script := fmt.Sprintf(`for i in 1 2 3 4; do printf 'GET / HTTP/1.0\r\n\r\n' | nc -w 3 %s 80; echo; done`, svc.Spec.ClusterIP)
		var out []byte
		var err error
		deadline := time.Now().Add(30 * time.Second)
		for time.Now().Before(deadline) {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			out, err = e.execIn(ctx, "client", script)
			cancel()
			if strings.Contains(string(out), "hostname=web-1") && strings.Contains(string(out), "hostname=web-2") {
				return
			}
			time.Sleep(300 * time.Millisecond)
		}
		t.Fatalf("from the pod: %v: %s", err, out)
	})
	t.Run("the host reaches it too", func(t *testing.T) {
		hits(t, "http://"+net.JoinHostPort(svc.Spec.ClusterIP, "80")+"/", "web-1", "web-2")
	})
	t.Run("no nftables table; cleanup removes the link", func(t *testing.T) {
		if ok, err := proxy.TableExists(table); err != nil || ok {
			t.Fatalf("nftables table %s in userspace mode: %v %v", table, ok, err)
		}
		if _, err := net.InterfaceByName(dummy); err != nil {
			t.Fatalf("holder link: %v", err)
		}
		e.agent.Stop()
		e.agent = nil
		if err := proxy.Cleanup(e.popts); err != nil {
			t.Fatal(err)
		}
		if _, err := net.InterfaceByName(dummy); err == nil {
			t.Fatalf("link %s still there", dummy)
		}
	})
}
