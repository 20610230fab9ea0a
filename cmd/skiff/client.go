package main

import (
	"fmt"

	"github.com/spf13/pflag"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// apiFlags are the --kubeconfig and --master flags of every subcommand that
// runs one component or add-on against an API server.
type apiFlags struct {
	kubeconfig, master string
}

// register adds the flags; kubeconfigHelp says whose credentials the
// kubeconfig carries and what they must allow.
func (a *apiFlags) register(f *pflag.FlagSet, kubeconfigHelp string) {
	f.StringVar(&a.kubeconfig, "kubeconfig", "", kubeconfigHelp)
	f.StringVar(&a.master, "master", "", "API server address (overrides the kubeconfig)")
}

// config is the client configuration with the component's user agent and
// rate limit (qps < 0: none, as for watch-driven components).
func (a *apiFlags) config(userAgent string, qps float32, burst int) (*rest.Config, error) {
	rc, err := clientcmd.BuildConfigFromFlags(a.master, a.kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("--kubeconfig: %w", err)
	}
	rc.QPS, rc.Burst = qps, burst
	rc.UserAgent = userAgent
	return rc, nil
}

// Upstream components' clientConnection defaults: protobuf for built-in
// kinds, with JSON accepted for what has no protobuf form.
const (
	protobufContentType       = "application/vnd.kubernetes.protobuf"
	protobufAcceptContentType = "application/vnd.kubernetes.protobuf,application/json"
)

// setContentType applies a component's clientConnection contentType and
// acceptContentTypes to rc, with upstream's defaults for empty values:
// protobuf, and protobuf then JSON (or just contentType when it is set to
// something else). It refuses types client-go cannot speak.
func setContentType(rc *rest.Config, contentType, accept string) error {
	switch contentType {
	case "":
		contentType = protobufContentType
	case protobufContentType, "application/json":
	default:
		return fmt.Errorf("content type %q: want application/json or %s", contentType, protobufContentType)
	}
	if accept == "" {
		accept = contentType
		if contentType == protobufContentType {
			accept = protobufAcceptContentType
		}
	}
	rc.ContentType, rc.AcceptContentTypes = contentType, accept
	return nil
}

// clientset is config followed by a typed clientset on it.
func (a *apiFlags) clientset(userAgent string, qps float32, burst int) (*rest.Config, kubernetes.Interface, error) {
	rc, err := a.config(userAgent, qps, burst)
	if err != nil {
		return nil, nil, err
	}
	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return nil, nil, fmt.Errorf("client: %w", err)
	}
	return rc, cs, nil
}
