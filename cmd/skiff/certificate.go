package main

import (
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/skiffhq/skiff/controlplane/pki"
	"github.com/spf13/cobra"
)

// certInfo is one line of `skiff certificate check`.
type certInfo struct {
	Name         string    `json:"name"`
	File         string    `json:"file"`
	Subject      string    `json:"subject"`
	Issuer       string    `json:"issuer"`
	Serial       string    `json:"serial"`
	NotBefore    time.Time `json:"notBefore"`
	NotAfter     time.Time `json:"notAfter"`
	DaysLeft     float64   `json:"daysLeft"`
	CA           bool      `json:"ca"`
	Status       string    `json:"status"`
	RenewalAfter time.Time `json:"renewalAfter,omitzero"`
}

func certificateCmd() *cobra.Command {
	var dataDir string
	cmd := &cobra.Command{
		Use:   "certificate",
		Short: "Check and rotate the server's certificates",
		Long: `The server keeps its certificates under <data-dir>/tls: the cluster CA (server-ca),
the API serving certificate and the client certificates of the admin kubeconfig and of
its in-process components (client-*); and under <data-dir>/tls/etcd the embedded etcd's
own CA (etcd-ca), its serving and peer certificates and the API server's client
certificate for it (etcd-*). A running server renews each leaf certificate by
itself when less than --cert-renew-before of its lifetime remains, without a restart;
"rotate" renews them now (the running server picks the new files up within its check
interval, at most a minute).`,
	}
	cmd.PersistentFlags().StringVar(&dataDir, "data-dir", "/var/lib/skiff", "the server's data directory")

	var output string
	var renewBefore float64
	check := &cobra.Command{
		Use:   "check",
		Short: "List every certificate with its subject, expiry and days left",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			infos, err := readCerts(filepath.Join(dataDir, "tls"), renewBefore, time.Now())
			if err != nil {
				return err
			}
			return printCerts(cmd.OutOrStdout(), infos, output)
		},
	}
	check.Flags().StringVarP(&output, "output", "o", "table", "table or json")
	check.Flags().Float64Var(&renewBefore, "cert-renew-before", pki.DefaultRenewBefore, "the server's --cert-renew-before, to say when a renewal is due")

	var services []string
	rotate := &cobra.Command{
		Use:   "rotate",
		Short: "Renew leaf certificates now (all, or --service names from check)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return rotateCerts(cmd.OutOrStdout(), filepath.Join(dataDir, "tls"), services)
		},
	}
	rotate.Flags().StringSliceVar(&services, "service", nil, "certificate names to renew (as listed by check; default: every leaf)")
	cmd.AddCommand(check, rotate)
	return cmd
}

// certDir is a folder of certificates and the CA that signs its leaves.
type certDir struct {
	dir, caName, caCN string
}

// certDirs are the server's certificate folders under tlsDir: the cluster
// CA's, and the embedded etcd's own CA's when the server runs etcd.
func certDirs(tlsDir string) []certDir {
	dirs := []certDir{{tlsDir, "server-ca", "skiff-server-ca"}}
	etcd := filepath.Join(tlsDir, "etcd")
	if _, err := os.Stat(filepath.Join(etcd, "etcd-ca.crt")); err == nil {
		dirs = append(dirs, certDir{etcd, "etcd-ca", "skiff-etcd-ca"})
	}
	return dirs
}

// certFiles lists the certificates of every folder of tlsDir, each with
// the folder it is in.
func certFiles(tlsDir string) (map[string]certDir, []string, error) {
	dirOf := map[string]certDir{}
	var files []string
	for _, d := range certDirs(tlsDir) {
		fs, err := filepath.Glob(filepath.Join(d.dir, "*.crt"))
		if err != nil {
			return nil, nil, err
		}
		for _, f := range fs {
			dirOf[f] = d
		}
		files = append(files, fs...)
	}
	if len(files) == 0 {
		return nil, nil, fmt.Errorf("no certificates in %s (is --data-dir right?)", tlsDir)
	}
	return dirOf, files, nil
}

func readCerts(dir string, renewBefore float64, now time.Time) ([]certInfo, error) {
	dirOf, files, err := certFiles(dir)
	if err != nil {
		return nil, err
	}
	cas := map[string]*x509.Certificate{} // folder → the CA of its leaves
	for _, d := range certDirs(dir) {
		if c, err := readCert(filepath.Join(d.dir, d.caName+".crt")); err == nil {
			cas[d.dir] = c
		}
	}
	var out []certInfo
	for _, f := range files {
		c, err := readCert(f)
		if err != nil {
			return nil, err
		}
		i := certInfo{
			Name:      strings.TrimSuffix(filepath.Base(f), ".crt"),
			File:      f,
			Subject:   c.Subject.String(),
			Issuer:    c.Issuer.String(),
			Serial:    c.SerialNumber.Text(16),
			NotBefore: c.NotBefore,
			NotAfter:  c.NotAfter,
			DaysLeft:  math.Floor(c.NotAfter.Sub(now).Hours()/24*10) / 10,
			CA:        c.IsCA,
			Status:    "ok",
		}
		if !c.IsCA {
			life := c.NotAfter.Sub(c.NotBefore)
			i.RenewalAfter = c.NotAfter.Add(-time.Duration(renewBefore * float64(life)))
		}
		switch {
		case now.After(c.NotAfter):
			i.Status = "expired"
		case !c.IsCA && cas[dirOf[f].dir] != nil && c.CheckSignatureFrom(cas[dirOf[f].dir]) != nil:
			// Left by another CA (a CA rotation; the server reissues
			// only the leaves it uses).
			i.Status = "not signed by " + dirOf[f].caName
		case !c.IsCA && pki.Due(c, renewBefore, now):
			i.Status = "renewal due"
		}
		out = append(out, i)
	}
	return out, nil
}

func readCert(path string) (*x509.Certificate, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	b, _ := pem.Decode(data)
	if b == nil || b.Type != "CERTIFICATE" {
		return nil, fmt.Errorf("%s: no PEM certificate", path)
	}
	c, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

func printCerts(w io.Writer, infos []certInfo, output string) error {
	switch output {
	case "json":
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(infos)
	case "table", "":
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "NAME\tSUBJECT\tNOT AFTER\tDAYS LEFT\tSTATUS")
		for _, i := range infos {
			name := i.Name
			if i.CA {
				name += " (CA)"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%.1f\t%s\n", name, i.Subject, i.NotAfter.UTC().Format(time.RFC3339), i.DaysLeft, i.Status)
		}
		return tw.Flush()
	default:
		return fmt.Errorf("--output %q: table or json", output)
	}
}

func rotateCerts(w io.Writer, dir string, services []string) error {
	caCert := filepath.Join(dir, "server-ca.crt")
	if _, err := os.Stat(caCert); err != nil {
		return fmt.Errorf("cluster CA: %w", err)
	}
	cas := map[string]*pki.CA{}
	for _, d := range certDirs(dir) {
		ca, err := pki.LoadOrCreateCA(d.dir, d.caName, d.caCN)
		if err != nil {
			return err
		}
		cas[d.dir] = ca
	}
	dirOf, _, err := certFiles(dir)
	if err != nil {
		return err
	}
	infos, err := readCerts(dir, pki.DefaultRenewBefore, time.Now())
	if err != nil {
		return err
	}
	var leaves []string
	files := map[string]string{} // leaf name → its certificate file
	for _, i := range infos {
		if !i.CA {
			leaves = append(leaves, i.Name)
			files[i.Name] = i.File
		}
	}
	for _, s := range services {
		if !slices.Contains(leaves, s) {
			return fmt.Errorf("--service %q: no such leaf certificate (have %s)", s, strings.Join(leaves, ", "))
		}
	}
	var errs []error
	for _, name := range leaves {
		if len(services) > 0 && !slices.Contains(services, name) {
			continue
		}
		d := dirOf[files[name]]
		keyFile := filepath.Join(d.dir, name+".key")
		if _, err := os.Stat(keyFile); err != nil {
			continue // not one of ours (no key beside it)
		}
		c, err := cas[d.dir].RenewFiles(filepath.Join(d.dir, name+".crt"), keyFile)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", name, err))
			continue
		}
		fmt.Fprintf(w, "rotated %s: serial %s, not after %s\n", name, c.SerialNumber.Text(16), c.NotAfter.UTC().Format(time.RFC3339))
	}
	return errors.Join(errs...)
}
