package authn_test

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// kubectl runs the real kubectl and decodes `auth whoami -o json`.
func kubectlWhoami(t *testing.T, kubeconfig string, args ...string) authenticationv1.UserInfo {
	t.Helper()
	out := kubectl(t, kubeconfig, append([]string{"auth", "whoami", "-o", "json"}, args...)...)
	var r authenticationv1.SelfSubjectReview
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("decode whoami: %v\n%s", err, out)
	}
	if r.APIVersion != "authentication.k8s.io/v1" || r.Kind != "SelfSubjectReview" {
		t.Fatalf("whoami answered %s %s", r.APIVersion, r.Kind)
	}
	return r.Status.UserInfo
}

func kubectl(t *testing.T, kubeconfig string, args ...string) string {
	t.Helper()
	if _, err := exec.LookPath("kubectl"); err != nil {
		t.Skip("kubectl not installed")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "kubectl", append([]string{"--kubeconfig", kubeconfig}, args...)...)
	cmd.Env = append(os.Environ(), "KUBECACHEDIR="+t.TempDir())
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// tokenKubeconfig writes a kubeconfig that authenticates with token only.
func (e *env) tokenKubeconfig(t *testing.T, token string) string {
	t.Helper()
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["skiff"] = &clientcmdapi.Cluster{Server: e.Config.Host, CertificateAuthorityData: e.Config.CAData}
	cfg.AuthInfos["user"] = &clientcmdapi.AuthInfo{Token: token}
	cfg.Contexts["ctx"] = &clientcmdapi.Context{Cluster: "skiff", AuthInfo: "user"}
	cfg.CurrentContext = "ctx"
	path := filepath.Join(t.TempDir(), "kubeconfig")
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestKubectlWhoami(t *testing.T) {
	e := start(t)
	admin := e.Kubeconfig()

	u := kubectlWhoami(t, admin)
	if u.Username != "system:admin" || strings.Join(u.Groups, ",") != "system:masters,system:authenticated" {
		t.Fatalf("admin = %+v", u)
	}
	u = kubectlWhoami(t, e.tokenKubeconfig(t, aliceToken))
	if u.Username != "alice" || u.UID != "uid-alice" || strings.Join(u.Groups, ",") != "devs,ops,system:authenticated" {
		t.Fatalf("alice = %+v", u)
	}
	u = kubectlWhoami(t, admin, "--as=jane", "--as-group=devs", "--as-group=qa", "--as-uid=jane-1")
	if u.Username != "jane" || u.UID != "jane-1" || strings.Join(u.Groups, ",") != "devs,qa,system:authenticated" {
		t.Fatalf("--as jane = %+v", u)
	}
	u = kubectlWhoami(t, admin, "--as=system:serviceaccount:default:robot")
	if strings.Join(u.Groups, ",") != "system:serviceaccounts,system:serviceaccounts:default,system:authenticated" {
		t.Fatalf("--as service account = %+v", u)
	}

	// A token from `kubectl create token` works as that service account.
	kubectl(t, admin, "create", "serviceaccount", "robot")
	tok := strings.TrimSpace(kubectl(t, admin, "create", "token", "robot", "--duration=15m"))
	u = kubectlWhoami(t, e.tokenKubeconfig(t, tok))
	if u.Username != "system:serviceaccount:default:robot" {
		t.Fatalf("service account token = %+v", u)
	}
	// TokenReview through kubectl create (OpenAPI validation included).
	review := filepath.Join(t.TempDir(), "review.yaml")
	body := "apiVersion: authentication.k8s.io/v1\nkind: TokenReview\nspec:\n  token: " + aliceToken + "\n"
	if err := os.WriteFile(review, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	if out := kubectl(t, admin, "create", "-f", review, "-o", "jsonpath={.status.authenticated} {.status.user.username}"); out != "true alice" {
		t.Fatalf("kubectl create tokenreview: %q", out)
	}
	// The plain table output names the user.
	if out := kubectl(t, e.tokenKubeconfig(t, aliceToken), "auth", "whoami"); !strings.Contains(out, "alice") {
		t.Fatalf("whoami table:\n%s", out)
	}
}
