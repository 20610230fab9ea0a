package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/skiffhq/skiff/controlplane/encryption"
	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

// ReencryptedAnnotation records on each Secret the key the last
// `skiff secrets-encrypt reencrypt` wrote it with. The API server skips
// updates that change nothing, so a rewrite needs a change.
const ReencryptedAnnotation = "secrets-encryption.skiff.io/reencrypted"

func secretsEncryptCmd() *cobra.Command {
	var dataDir string
	cmd := &cobra.Command{
		Use:   "secrets-encrypt",
		Short: "Manage encryption of Secrets at rest (server started with --secrets-encryption)",
		Long: `Manage the keys that encrypt Secrets in etcd.

Rotation: "rotate" adds a new key in front (new writes use it, the old keys
still decrypt), "reencrypt" rewrites every Secret through the running API
server with the new key and then drops the old keys.`,
	}
	cmd.PersistentFlags().StringVar(&dataDir, "data-dir", "/var/lib/skiff", "the server's data directory")
	cmd.AddCommand(
		&cobra.Command{
			Use:   "status",
			Short: "Show the configured keys and what the running server has loaded",
			Args:  cobra.NoArgs,
			RunE: func(cmd *cobra.Command, args []string) error {
				return encryptStatus(cmd.OutOrStdout(), dataDir)
			},
		},
		&cobra.Command{
			Use:   "rotate",
			Short: "Add a new key that new writes use; old keys still decrypt",
			Args:  cobra.NoArgs,
			RunE: func(cmd *cobra.Command, args []string) error {
				name, err := encryptRotate(dataDir, time.Now())
				if err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "added key %s; run `skiff secrets-encrypt reencrypt` to rewrite existing secrets with it\n", name)
				return nil
			},
		},
		reencryptCmd(&dataDir),
	)
	return cmd
}

func reencryptCmd(dataDir *string) *cobra.Command {
	var kubeconfig string
	var keepOld bool
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "reencrypt",
		Short: "Rewrite every Secret with the current key, then drop the old keys",
		Long: `Rewrite every Secret through the running API server so that it is stored
with the current write key, then remove the other keys from the
configuration (unless --keep-old-keys).

The rewrite goes through the API server rather than etcd directly: the
server's watch cache and watchers see every change, optimistic concurrency
keeps concurrent edits, it works with an external datastore, and the
cluster does not have to stop.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if kubeconfig == "" {
				kubeconfig = filepath.Join(*dataDir, "admin.kubeconfig")
			}
			rc, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
			if err != nil {
				return fmt.Errorf("--kubeconfig: %w", err)
			}
			rc.QPS, rc.Burst = 100, 200
			cs, err := kubernetes.NewForConfig(rc)
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			n, err := encryptReencrypt(ctx, cs, *dataDir, !keepOld)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "reencrypted %d secrets\n", n)
			return nil
		},
	}
	cmd.Flags().StringVar(&kubeconfig, "kubeconfig", "", "admin kubeconfig (default <data-dir>/admin.kubeconfig)")
	cmd.Flags().BoolVar(&keepOld, "keep-old-keys", false, "keep the old keys in the configuration")
	cmd.Flags().DurationVar(&timeout, "timeout", 10*time.Minute, "give up after this long")
	return cmd
}

func encryptStatus(w io.Writer, dataDir string) error {
	c, err := encryption.LoadConfig(filepath.Join(dataDir, encryption.ConfigFile))
	if errors.Is(err, os.ErrNotExist) {
		fmt.Fprintln(w, "Encryption Status: Disabled (no configuration; start the server with --secrets-encryption)")
		return nil
	}
	if err != nil {
		return err
	}
	t, err := encryption.New(c)
	if err != nil {
		return err
	}
	want := t.State()
	fmt.Fprintln(w, "Encryption Status: Enabled")
	if want.WriteKey == "" {
		fmt.Fprintln(w, "Write Key: identity (new secrets are stored unencrypted)")
	} else {
		fmt.Fprintf(w, "Write Key: %s\n", strings.TrimPrefix(want.WriteKey, "k8s:enc:"))
	}
	fmt.Fprintln(w, "Keys:")
	for _, k := range want.Keys {
		fmt.Fprintf(w, "  %s\n", strings.TrimPrefix(k, "k8s:enc:"))
	}
	st, err := encryption.ReadState(dataDir)
	switch {
	case err != nil:
		fmt.Fprintln(w, "Server: no state (not started with --secrets-encryption yet)")
	case st.ConfigHash == want.ConfigHash:
		fmt.Fprintln(w, "Server: current configuration loaded")
	default:
		fmt.Fprintln(w, "Server: an older configuration is loaded (is the server running?)")
	}
	return nil
}

// encryptRotate puts a new aesgcm key in front of the secrets providers.
func encryptRotate(dataDir string, now time.Time) (string, error) {
	path := filepath.Join(dataDir, encryption.ConfigFile)
	c, err := encryption.LoadConfig(path)
	if err != nil {
		return "", err
	}
	rc := c.Secrets()
	name := fmt.Sprintf("aesgcmkey-%d", now.UnixNano())
	k, err := encryption.NewKey(name)
	if err != nil {
		return "", err
	}
	if first := rc.Providers[0]; first.AESGCM != nil {
		first.AESGCM.Keys = append([]encryption.Key{k}, first.AESGCM.Keys...)
	} else {
		rc.Providers = append([]encryption.ProviderConfig{{AESGCM: &encryption.KeysConfig{Keys: []encryption.Key{k}}}}, rc.Providers...)
	}
	if err := encryption.SaveConfig(path, c); err != nil {
		return "", err
	}
	return name, nil
}

// encryptReencrypt waits until the server has loaded the current
// configuration, rewrites every Secret, and optionally drops the old keys.
func encryptReencrypt(ctx context.Context, cs kubernetes.Interface, dataDir string, dropOld bool) (int, error) {
	path := filepath.Join(dataDir, encryption.ConfigFile)
	c, err := encryption.LoadConfig(path)
	if err != nil {
		return 0, err
	}
	if err := waitLoaded(ctx, dataDir, c.Hash()); err != nil {
		return 0, err
	}
	t, err := encryption.New(c)
	if err != nil {
		return 0, err
	}
	writeKey := strings.TrimPrefix(t.State().WriteKey, "k8s:enc:")
	if writeKey == "" {
		writeKey = "identity"
	}
	n := 0
	opts := metav1.ListOptions{Limit: 500}
	for {
		list, err := cs.CoreV1().Secrets("").List(ctx, opts)
		if err != nil {
			return n, fmt.Errorf("list secrets: %w", err)
		}
		for i := range list.Items {
			if err := rewriteSecret(ctx, cs, &list.Items[i], writeKey); err != nil {
				return n, err
			}
			n++
		}
		if list.Continue == "" {
			break
		}
		opts.Continue = list.Continue
	}
	if !dropOld {
		return n, nil
	}
	rc := c.Secrets()
	var keep []encryption.ProviderConfig
	for i, p := range rc.Providers {
		switch {
		case p.Identity != nil:
			keep = append(keep, p)
		case i == 0 && p.AESGCM != nil:
			keep = append(keep, encryption.ProviderConfig{AESGCM: &encryption.KeysConfig{Keys: p.AESGCM.Keys[:1]}})
		case i == 0 && p.AESCBC != nil:
			keep = append(keep, encryption.ProviderConfig{AESCBC: &encryption.KeysConfig{Keys: p.AESCBC.Keys[:1]}})
		}
	}
	rc.Providers = keep
	if err := encryption.SaveConfig(path, c); err != nil {
		return n, err
	}
	return n, waitLoaded(ctx, dataDir, c.Hash())
}

func rewriteSecret(ctx context.Context, cs kubernetes.Interface, sec *corev1.Secret, writeKey string) error {
	for {
		s := sec.DeepCopy()
		if s.Annotations == nil {
			s.Annotations = map[string]string{}
		}
		s.Annotations[ReencryptedAnnotation] = writeKey + "@" + time.Now().UTC().Format(time.RFC3339Nano)
		_, err := cs.CoreV1().Secrets(s.Namespace).Update(ctx, s, metav1.UpdateOptions{})
		switch {
		case err == nil, apierrors.IsNotFound(err):
			return nil
		case apierrors.IsConflict(err):
			cur, gerr := cs.CoreV1().Secrets(s.Namespace).Get(ctx, s.Name, metav1.GetOptions{})
			if apierrors.IsNotFound(gerr) {
				return nil
			}
			if gerr != nil {
				return fmt.Errorf("reencrypt secret %s/%s: %w", s.Namespace, s.Name, gerr)
			}
			sec = cur
		default:
			return fmt.Errorf("reencrypt secret %s/%s: %w", s.Namespace, s.Name, err)
		}
	}
}

// waitLoaded waits until the running server reports configuration hash.
func waitLoaded(ctx context.Context, dataDir, hash string) error {
	for {
		st, err := encryption.ReadState(dataDir)
		if err == nil && st.ConfigHash == hash {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("the server has not loaded the current encryption configuration (is it running with --secrets-encryption?): %w", ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}
