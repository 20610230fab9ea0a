package server

import (
	"context"
	"fmt"
	"time"

	"github.com/skiffhq/skiff/controlplane/authn"
	"github.com/skiffhq/skiff/controlplane/controllers"
	"github.com/skiffhq/skiff/controlplane/controllers/certificates"
	"github.com/skiffhq/skiff/controlplane/controllers/tokencleaner"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// startNodeJoin runs what node join needs: the CSR requestor hook, the
// CSR approver and signer (with the cluster CA) and the bootstrap token
// cleaner, each with its own identity (upstream's controller service
// accounts). --disable csrapproving, csrsigning or tokencleaner turns them off.
func (s *Server) startNodeJoin(ctx context.Context) {
	s.api.AddStorageHook(certificates.GroupResource, certificates.RequestorHook{})
	if err := s.nodeJoinRBAC(ctx); err != nil {
		s.log.Error("node join RBAC", "err", err)
	}
	// Each is a singleton among the servers (see runSingleton), under a
	// Lease named as the controller.
	run := func(user string, mk func(kubernetes.Interface) controllers.Controller, workers int) {
		rc, err := s.ComponentConfig("system:serviceaccount:kube-system:"+user, []string{"system:serviceaccounts", "system:serviceaccounts:kube-system"})
		if err != nil {
			s.log.Error("controller identity", "user", user, "err", err)
			return
		}
		cs, err := kubernetes.NewForConfig(rc)
		if err != nil {
			s.log.Error("controller client", "user", user, "err", err)
			return
		}
		s.runElectedController(ctx, "skiff-"+user, func() controllers.Controller { return mk(cs) }, workers)
	}
	if !s.disabled("csrapproving") || !s.disabled("csrsigning") {
		run("certificate-controller", func(cs kubernetes.Interface) controllers.Controller {
			cfg := certificates.Config{Client: cs, Logger: s.cfg.Logger, NoApprove: s.disabled("csrapproving")}
			if !s.disabled("csrsigning") {
				cfg.Signer = s.ca
			}
			return certificates.New(cfg)
		}, 2)
	}
	if !s.disabled("tokencleaner") {
		run("token-cleaner", func(cs kubernetes.Interface) controllers.Controller {
			return tokencleaner.New(cs, s.cfg.Logger)
		}, 1)
	}
}

// nodeJoinRBAC creates, once, the roles and bindings node join needs (as
// kubeadm does for its bootstrap tokens): bootstrap tokens made by
// `skiff token create` may create CSRs (system:node-bootstrapper), and the
// certificate controller and token cleaner get upstream's controller roles.
// Existing objects are left as they are, so an administrator may change them.
func (s *Server) nodeJoinRBAC(ctx context.Context) error {
	rc, err := s.ComponentConfig("system:skiff:node-join-setup", []string{"system:masters"})
	if err != nil {
		return err
	}
	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	labels := map[string]string{"kubernetes.io/bootstrapping": "rbac-defaults"}
	meta := func(name, ns string) metav1.ObjectMeta {
		return metav1.ObjectMeta{Name: name, Namespace: ns, Labels: labels}
	}
	sa := func(name string) []rbacv1.Subject {
		return []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: name, Namespace: metav1.NamespaceSystem}}
	}
	events := rbacv1.PolicyRule{APIGroups: []string{"", "events.k8s.io"}, Resources: []string{"events"}, Verbs: []string{"create", "patch", "update"}}
	certRole := "system:controller:certificate-controller"
	servingRole := "system:skiff:kubelet-serving-approver"
	cleanerRole := "system:controller:token-cleaner"
	ignoreExists := func(what string, err error) error {
		if err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("create %s: %w", what, err)
		}
		return nil
	}
	rbac := cs.RbacV1()
	_, err = rbac.ClusterRoles().Create(ctx, &rbacv1.ClusterRole{ObjectMeta: meta(certRole, ""), Rules: []rbacv1.PolicyRule{
		{APIGroups: []string{"certificates.k8s.io"}, Resources: []string{"certificatesigningrequests"}, Verbs: []string{"delete", "get", "list", "watch"}},
		{APIGroups: []string{"certificates.k8s.io"}, Resources: []string{"certificatesigningrequests/approval", "certificatesigningrequests/status"}, Verbs: []string{"update"}},
		{APIGroups: []string{"certificates.k8s.io"}, Resources: []string{"signers"}, ResourceNames: []string{certificates.KubeletClientSigner}, Verbs: []string{"approve", "sign"}},
		{APIGroups: []string{"authorization.k8s.io"}, Resources: []string{"subjectaccessreviews"}, Verbs: []string{"create"}},
		events,
	}}, metav1.CreateOptions{})
	if err := ignoreExists("ClusterRole "+certRole, err); err != nil {
		return err
	}
	// Serving certificates of joined agents: a role of its own, so that a
	// cluster made before it existed gets it too.
	_, err = rbac.ClusterRoles().Create(ctx, &rbacv1.ClusterRole{ObjectMeta: meta(servingRole, ""), Rules: []rbacv1.PolicyRule{
		{APIGroups: []string{"certificates.k8s.io"}, Resources: []string{"signers"}, ResourceNames: []string{certificates.KubeletServingSigner}, Verbs: []string{"approve", "sign"}},
		{APIGroups: []string{""}, Resources: []string{"nodes"}, Verbs: []string{"get"}},
	}}, metav1.CreateOptions{})
	if err := ignoreExists("ClusterRole "+servingRole, err); err != nil {
		return err
	}
	_, err = rbac.ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{ObjectMeta: meta(servingRole, ""),
		RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: servingRole},
		Subjects: sa("certificate-controller")}, metav1.CreateOptions{})
	if err := ignoreExists("ClusterRoleBinding "+servingRole, err); err != nil {
		return err
	}
	_, err = rbac.ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{ObjectMeta: meta(certRole, ""),
		RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: certRole},
		Subjects: sa("certificate-controller")}, metav1.CreateOptions{})
	if err := ignoreExists("ClusterRoleBinding "+certRole, err); err != nil {
		return err
	}
	_, err = rbac.Roles(metav1.NamespaceSystem).Create(ctx, &rbacv1.Role{ObjectMeta: meta(cleanerRole, metav1.NamespaceSystem), Rules: []rbacv1.PolicyRule{
		{APIGroups: []string{""}, Resources: []string{"secrets"}, Verbs: []string{"delete", "get", "list", "watch"}},
		events,
	}}, metav1.CreateOptions{})
	if err := ignoreExists("Role "+cleanerRole, err); err != nil {
		return err
	}
	_, err = rbac.RoleBindings(metav1.NamespaceSystem).Create(ctx, &rbacv1.RoleBinding{ObjectMeta: meta(cleanerRole, metav1.NamespaceSystem),
		RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: cleanerRole},
		Subjects: sa("token-cleaner")}, metav1.CreateOptions{})
	if err := ignoreExists("RoleBinding "+cleanerRole, err); err != nil {
		return err
	}
	_, err = rbac.ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{ObjectMeta: meta("skiff:kubelet-bootstrap", ""),
		RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "system:node-bootstrapper"},
		Subjects: []rbacv1.Subject{{Kind: rbacv1.GroupKind, APIGroup: rbacv1.GroupName, Name: authn.BootstrapDefaultGroup}}}, metav1.CreateOptions{})
	return ignoreExists("ClusterRoleBinding skiff:kubelet-bootstrap", err)
}
