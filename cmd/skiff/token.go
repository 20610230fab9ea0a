package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/skiffhq/skiff/controlplane/authn"
	"github.com/skiffhq/skiff/controlplane/servertoken"
	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

func tokenCmd() *cobra.Command {
	var dataDir, kubeconfig string
	cmd := &cobra.Command{
		Use:   "token",
		Short: "Manage node join (bootstrap) tokens",
	}
	pf := cmd.PersistentFlags()
	pf.StringVar(&dataDir, "data-dir", "/var/lib/skiff", "the server's data directory")
	pf.StringVar(&kubeconfig, "kubeconfig", "", "admin kubeconfig (default <data-dir>/admin.kubeconfig)")
	config := func() (*rest.Config, error) {
		path := kubeconfig
		if path == "" {
			path = filepath.Join(dataDir, "admin.kubeconfig")
		}
		rc, err := clientcmd.BuildConfigFromFlags("", path)
		if err != nil {
			return nil, fmt.Errorf("--kubeconfig: %w", err)
		}
		return rc, nil
	}
	client := func() (kubernetes.Interface, error) {
		rc, err := config()
		if err != nil {
			return nil, err
		}
		return kubernetes.NewForConfig(rc)
	}
	var ttl time.Duration
	var description string
	create := &cobra.Command{
		Use:   "create",
		Short: "Create a bootstrap token a node can join with; prints the join token for `skiff agent --token` (SK10<ca hash>::<id>.<secret>)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			rc, err := config()
			if err != nil {
				return err
			}
			cs, err := kubernetes.NewForConfig(rc)
			if err != nil {
				return err
			}
			tok, err := createToken(cmd.Context(), cs, ttl, description, time.Now())
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), joinToken(rc, tok))
			return nil
		},
	}
	create.Flags().DurationVar(&ttl, "ttl", 24*time.Hour, "lifetime of the token (0 = never expires)")
	create.Flags().StringVar(&description, "description", "", "human-readable description of the token")
	list := &cobra.Command{
		Use:   "list",
		Short: "List bootstrap tokens",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			cs, err := client()
			if err != nil {
				return err
			}
			return listTokens(cmd.Context(), cs, cmd.OutOrStdout(), time.Now())
		},
	}
	del := &cobra.Command{
		Use:   "delete <token-id or token>...",
		Short: "Delete bootstrap tokens",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cs, err := client()
			if err != nil {
				return err
			}
			for _, a := range args {
				if err := deleteToken(cmd.Context(), cs, a); err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "bootstrap token %q deleted\n", tokenID(a))
			}
			return nil
		},
	}
	cmd.AddCommand(create, list, del)
	return cmd
}

func createToken(ctx context.Context, cs kubernetes.Interface, ttl time.Duration, description string, now time.Time) (string, error) {
	if ttl < 0 {
		return "", errors.New("--ttl must not be negative")
	}
	tok, err := authn.NewBootstrapToken()
	if err != nil {
		return "", err
	}
	var expires time.Time
	if ttl > 0 {
		expires = now.Add(ttl)
	}
	data, err := authn.BootstrapTokenSecretData(tok, expires, description)
	if err != nil {
		return "", err
	}
	id, _, _ := authn.ParseBootstrapToken(tok)
	_, err = cs.CoreV1().Secrets(metav1.NamespaceSystem).Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: authn.BootstrapTokenSecretPrefix + id, Namespace: metav1.NamespaceSystem},
		Type:       authn.BootstrapTokenSecretType,
		Data:       data,
	}, metav1.CreateOptions{})
	if err != nil {
		return "", fmt.Errorf("create bootstrap token: %w", err)
	}
	return tok, nil
}

func listTokens(ctx context.Context, cs kubernetes.Interface, w io.Writer, now time.Time) error {
	list, err := cs.CoreV1().Secrets(metav1.NamespaceSystem).List(ctx, metav1.ListOptions{})
	if err != nil {
		return fmt.Errorf("list bootstrap tokens: %w", err)
	}
	sort.Slice(list.Items, func(i, j int) bool { return list.Items[i].Name < list.Items[j].Name })
	tw := tabwriter.NewWriter(w, 0, 8, 3, ' ', 0)
	fmt.Fprintln(tw, "TOKEN\tTTL\tEXPIRES\tUSAGES\tDESCRIPTION\tEXTRA GROUPS")
	for _, s := range list.Items {
		if s.Type != authn.BootstrapTokenSecretType {
			continue
		}
		id, secret := string(s.Data[authn.BootstrapTokenIDKey]), string(s.Data[authn.BootstrapTokenSecretKey])
		ttl, expires := "<forever>", "<never>"
		if exp := string(s.Data[authn.BootstrapTokenExpirationKey]); exp != "" {
			expires = exp
			if t, err := time.Parse(time.RFC3339, exp); err == nil {
				if left := t.Sub(now); left > 0 {
					ttl = left.Round(time.Second).String()
				} else {
					ttl = "<invalid>"
				}
			}
		}
		var usages []string
		for _, k := range []string{authn.BootstrapTokenUsageAuthKey, authn.BootstrapTokenUsageSignKey} {
			if string(s.Data[k]) == "true" {
				usages = append(usages, strings.TrimPrefix(k, "usage-bootstrap-"))
			}
		}
		desc := string(s.Data[authn.BootstrapTokenDescriptionKey])
		if desc == "" {
			desc = "<none>"
		}
		fmt.Fprintf(tw, "%s.%s\t%s\t%s\t%s\t%s\t%s\n", id, secret, ttl, expires, strings.Join(usages, ","), desc, string(s.Data[authn.BootstrapTokenExtraGroupsKey]))
	}
	return tw.Flush()
}

// joinToken is the node join token of bootstrap token tok: the hash of
// the cluster CA rc trusts, then the token (SK10<hash>::<id>.<secret>),
// which `skiff agent --token` checks the server with. Without a CA in rc
// it is the bare bootstrap token.
func joinToken(rc *rest.Config, tok string) string {
	ca := rc.CAData
	if len(ca) == 0 && rc.CAFile != "" {
		ca, _ = os.ReadFile(rc.CAFile)
	}
	if len(ca) == 0 {
		return tok
	}
	return servertoken.NodeToken{CAHash: servertoken.CAHash(ca), Bootstrap: tok}.String()
}

// tokenID is the id of a bootstrap token, a join token or an id.
func tokenID(arg string) string {
	if _, boot, ok := strings.Cut(arg, "::"); ok {
		arg = boot
	}
	id, _, _ := strings.Cut(arg, ".")
	return id
}

func deleteToken(ctx context.Context, cs kubernetes.Interface, arg string) error {
	id := tokenID(arg)
	if len(id) != 6 || strings.Trim(id, "abcdefghijklmnopqrstuvwxyz0123456789") != "" {
		return fmt.Errorf("token id %q is invalid: must match [a-z0-9]{6}", id)
	}
	err := cs.CoreV1().Secrets(metav1.NamespaceSystem).Delete(ctx, authn.BootstrapTokenSecretPrefix+id, metav1.DeleteOptions{})
	if apierrors.IsNotFound(err) {
		return fmt.Errorf("bootstrap token %q not found", id)
	}
	if err != nil {
		return fmt.Errorf("delete bootstrap token %q: %w", id, err)
	}
	return nil
}
