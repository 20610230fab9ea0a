package deploy

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"github.com/skiffhq/skiff/internal/freeport"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// skiffBin is the binary the scripts install: SKIFF_BIN, else the
// repository's bin/skiff (make test-go builds it first).
func skiffBin(t *testing.T) string {
	t.Helper()
	b := os.Getenv("SKIFF_BIN")
	if b == "" {
		var err error
		if b, err = filepath.Abs("../bin/skiff"); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := os.Stat(b); err != nil {
		t.Fatalf("no skiff binary (make build, or set SKIFF_BIN): %v", err)
	}
	return b
}

type result struct {
	out  string // stdout and stderr
	code int
}

// script runs deploy/<name> with args and an environment without the
// caller's INSTALL_SKIFF_* and SKIFF_* variables, plus env.
func script(t *testing.T, name string, env []string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "./"+name, args...)
	for _, e := range os.Environ() {
		if !strings.HasPrefix(e, "INSTALL_SKIFF_") && !strings.HasPrefix(e, "SKIFF_") {
			cmd.Env = append(cmd.Env, e)
		}
	}
	cmd.Env = append(cmd.Env, env...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	r := result{out: out.String()}
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		r.code = ee.ExitCode()
	case err != nil:
		t.Fatalf("%s: %v", name, err)
	}
	return r
}

// install runs install.sh and fails the test unless it succeeds.
func install(t *testing.T, env []string, args ...string) string {
	t.Helper()
	r := script(t, "install.sh", env, args...)
	if r.code != 0 {
		t.Fatalf("install.sh %s: exit %d\n%s", strings.Join(args, " "), r.code, r.out)
	}
	return r.out
}

func uninstall(t *testing.T, args ...string) string {
	t.Helper()
	r := script(t, "uninstall.sh", nil, args...)
	if r.code != 0 {
		t.Fatalf("uninstall.sh %s: exit %d\n%s", strings.Join(args, " "), r.code, r.out)
	}
	return r.out
}

// entry is what a tree walk records of one path.
type entry struct {
	Mode  fs.FileMode
	MTime int64 // nanoseconds; compared only by the strict snapshot
	Sum   [32]byte
	Link  string
}

// snapshot records every path under root. strict keeps modification
// times (a run that writes nothing leaves even directories' times);
// otherwise directories' times, which change when entries come and go,
// are left out.
func snapshot(t *testing.T, root string, strict bool) map[string]entry {
	t.Helper()
	m := map[string]entry{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		e := entry{Mode: fi.Mode()}
		if strict || !fi.IsDir() {
			e.MTime = fi.ModTime().UnixNano()
		}
		switch {
		case fi.Mode().IsRegular():
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			e.Sum = sha256.Sum256(b)
		case fi.Mode()&fs.ModeSymlink != 0:
			e.Link, _ = os.Readlink(p)
		}
		rel, _ := filepath.Rel(root, p)
		m[rel] = e
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func sameTree(t *testing.T, what string, got, want map[string]entry) {
	t.Helper()
	if reflect.DeepEqual(got, want) {
		return
	}
	var diff []string
	for p, e := range got {
		if w, ok := want[p]; !ok {
			diff = append(diff, "+ "+p)
		} else if e != w {
			diff = append(diff, fmt.Sprintf("~ %s: %v, want %v", p, e, w))
		}
	}
	for p := range want {
		if _, ok := got[p]; !ok {
			diff = append(diff, "- "+p)
		}
	}
	slices.Sort(diff)
	t.Fatalf("%s:\n%s", what, strings.Join(diff, "\n"))
}

// unitFile parses a systemd unit: "Section.Key" to its values in order.
func unitFile(t *testing.T, path string) map[string][]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	u := map[string][]string{}
	section := ""
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || line[0] == '#' || line[0] == ';':
		case line[0] == '[' && line[len(line)-1] == ']':
			section = line[1 : len(line)-1]
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok || section == "" {
				t.Fatalf("%s: line %q", path, line)
			}
			key := section + "." + strings.TrimSpace(k)
			u[key] = append(u[key], strings.TrimSpace(v))
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return u
}

// execWords splits an ExecStart value as systemd does for what
// install.sh writes: blanks between words, double quotes with backslash
// escapes, %% for % and $$ for $.
func execWords(t *testing.T, s string) []string {
	t.Helper()
	var words []string
	var w strings.Builder
	in, quoted := false, false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case quoted && c == '\\' && i+1 < len(s):
			i++
			w.WriteByte(s[i])
		case c == '"':
			quoted, in = !quoted, true
		case !quoted && (c == ' ' || c == '\t'):
			if in {
				words = append(words, w.String())
				w.Reset()
				in = false
			}
		case (c == '%' || c == '$') && i+1 < len(s) && s[i+1] == c:
			i++
			w.WriteByte(c)
			in = true
		case c == '%' || c == '$' || c == '\\':
			t.Fatalf("ExecStart %q: unescaped %q at %d", s, c, i)
		default:
			w.WriteByte(c)
			in = true
		}
	}
	if quoted {
		t.Fatalf("ExecStart %q: open quote", s)
	}
	if in {
		words = append(words, w.String())
	}
	return words
}

// envFile reads KEY=VALUE lines.
func envFile(t *testing.T, path string) map[string]string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	env := map[string]string{}
	for _, line := range strings.Split(string(b), "\n") {
		if line == "" || line[0] == '#' {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			t.Fatalf("%s: line %q", path, line)
		}
		env[k] = v
	}
	return env
}

func mode(t *testing.T, path string) fs.FileMode {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Mode().Perm()
}

func sameFile(t *testing.T, got, want string) {
	t.Helper()
	a, err := os.ReadFile(got)
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(want)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a, b) {
		t.Fatalf("%s is not a copy of %s", got, want)
	}
}

// verifyUnit runs `systemd-analyze verify` on the unit, with ExecStart's
// binary pointed into root (verify checks that it is executable), and
// fails on any complaint: verify exits 0 for an unknown value and only
// prints a warning.
func verifyUnit(t *testing.T, root, unit string) {
	t.Helper()
	sa, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Fatal("systemd-analyze is not installed (Debian package systemd)")
	}
	b, err := os.ReadFile(filepath.Join(root, "etc/systemd/system", unit))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	p := filepath.Join(dir, unit)
	b = bytes.ReplaceAll(b, []byte("ExecStart=/usr/local/bin/skiff"), []byte("ExecStart="+root+"/usr/local/bin/skiff"))
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(sa, "verify", p).CombinedOutput()
	if err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Fatalf("systemd-analyze verify %s: %v\n%s", unit, err, out)
	}
}

// seed gives root a few files of its own, which uninstall.sh must keep.
func seed(t *testing.T, root string) {
	t.Helper()
	for _, p := range []string{"usr/local/bin/kubectl", "etc/systemd/system/other.service", "var/lib/other/state"} {
		if err := os.MkdirAll(filepath.Join(root, filepath.Dir(p)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, p), []byte(p), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// TestInstallUninstall installs each role into a scratch root: the files,
// their modes and contents, a second run that changes nothing, changes
// of token and flags, and an uninstall that leaves the root as it was.
func TestInstallUninstall(t *testing.T) {
	bin := skiffBin(t)
	odd := "/var/log/skiff audit 100%$HOME\"x\\.log" // blank, %, $, quote, backslash
	for _, tc := range []struct {
		role, unit, env string
		flags           []string
		url, token      string
	}{
		{role: "server", unit: "skiff.service", env: "skiff.env",
			flags: []string{"--disable", "dns,etcd-snapshot", "--audit-log-path", odd, "--data-dir=/var/lib/skiff-a"},
			url:   "https://10.0.0.1:6443", token: "SK10" + strings.Repeat("ab", 32) + "::server:0123456789abcdef"},
		{role: "agent", unit: "skiff-agent.service", env: "skiff-agent.env",
			flags: []string{"--node-name", "n1", "--bridge", "skiffx0"},
			url:   "https://10.0.0.1:6443,https://10.0.0.2:6443", token: "SK10" + strings.Repeat("cd", 32) + "::abcdef.0123456789abcdef"},
	} {
		t.Run(tc.role, func(t *testing.T) {
			root := t.TempDir()
			seed(t, root)
			before := snapshot(t, root, false)
			args := append([]string{"--root", root, "--skip-deps", "--binary", bin, tc.role}, tc.flags...)
			args = append(args, "--server", strings.Split(tc.url, ",")[0])
			if rest := strings.SplitN(tc.url, ",", 2); len(rest) == 2 {
				args = append(args, "--server="+rest[1])
			}
			args = append(args, "--token", tc.token)
			out := install(t, nil, args...)
			if !strings.Contains(out, "installed under "+root+": not started") {
				t.Errorf("install output does not say it did not start the service:\n%s", out)
			}

			sameFile(t, filepath.Join(root, "usr/local/bin/skiff"), bin)
			sameFile(t, filepath.Join(root, "usr/local/bin/skiff-uninstall.sh"), "uninstall.sh")
			for p, want := range map[string]fs.FileMode{"usr/local/bin/skiff": 0o755, "usr/local/bin/skiff-uninstall.sh": 0o755,
				"etc/systemd/system/" + tc.unit: 0o644, "etc/skiff/" + tc.env: 0o600} {
				if m := mode(t, filepath.Join(root, p)); m != want {
					t.Errorf("%s: mode %v, want %v", p, m, want)
				}
			}
			unitPath := filepath.Join(root, "etc/systemd/system", tc.unit)
			u := unitFile(t, unitPath)
			for k, want := range map[string]string{"Service.Type": "exec", "Service.KillMode": "mixed", "Service.Restart": "always",
				"Service.EnvironmentFile": "-/etc/skiff/" + tc.env, "Install.WantedBy": "multi-user.target",
				"Unit.After": "network-online.target containerd.service"} {
				if got := u[k]; len(got) != 1 || got[0] != want {
					t.Errorf("%s: %s = %q, want %q", tc.unit, k, got, want)
				}
			}
			if got := u["Service.ExecStart"]; len(got) != 1 {
				t.Fatalf("ExecStart: %q", got)
			}
			words := execWords(t, u["Service.ExecStart"][0])
			if want := append([]string{"/usr/local/bin/skiff", tc.role}, tc.flags...); !slices.Equal(words, want) {
				t.Errorf("ExecStart words\n%q, want\n%q", words, want)
			}
			if b, _ := os.ReadFile(unitPath); bytes.Contains(b, []byte(tc.token)) {
				t.Errorf("the token is in the world-readable unit")
			}
			if env := envFile(t, filepath.Join(root, "etc/skiff", tc.env)); !reflect.DeepEqual(env, map[string]string{"SKIFF_URL": tc.url, "SKIFF_TOKEN": tc.token}) {
				t.Errorf("environment file: %v", env)
			}
			verifyUnit(t, root, tc.unit)

			// Again, the same: nothing written, not even a directory's time.
			installed := snapshot(t, root, true)
			out = install(t, nil, args...)
			if !strings.Contains(out, "nothing changed") {
				t.Errorf("second run does not say nothing changed:\n%s", out)
			}
			sameTree(t, "a second install changed the root", snapshot(t, root, true), installed)

			// Another token: only the environment file; the same from the
			// environment's SKIFF_TOKEN (the role from INSTALL_SKIFF_EXEC).
			args2 := slices.Clone(args)
			args2[len(args2)-1] = tc.token + "0"
			out = install(t, nil, args2...)
			if !strings.Contains(out, "wrote /etc/skiff/"+tc.env+" (") {
				t.Errorf("new token: output\n%s", out)
			}
			if env := envFile(t, filepath.Join(root, "etc/skiff", tc.env)); env["SKIFF_TOKEN"] != tc.token+"0" {
				t.Errorf("new token: environment file %v", env)
			}
			noTokenArgs := slices.Clone(args[:len(args)-2])
			i := slices.Index(noTokenArgs, tc.role)
			execEnv := []string{"INSTALL_SKIFF_EXEC=" + tc.role, "SKIFF_TOKEN=" + tc.token}
			out = install(t, execEnv, slices.Delete(noTokenArgs, i, i+1)...)
			if !strings.Contains(out, "wrote /etc/skiff/"+tc.env+" (") {
				t.Errorf("token back from SKIFF_TOKEN: output\n%s", out)
			}
			if b, _ := os.ReadFile(filepath.Join(root, "etc/skiff", tc.env)); !strings.Contains(string(b), "SKIFF_TOKEN="+tc.token+"\n") {
				t.Errorf("token from SKIFF_TOKEN: environment file\n%s", b)
			}
			// Another flag: the unit.
			out = install(t, nil, append(args, "--log-level", "debug")...)
			if !strings.Contains(out, "wrote /etc/systemd/system/"+tc.unit+" (") {
				t.Errorf("new flag: output\n%s", out)
			}
			if w := execWords(t, unitFile(t, unitPath)["Service.ExecStart"][0]); !slices.Equal(w[len(w)-2:], []string{"--log-level", "debug"}) {
				t.Errorf("new flag: ExecStart %q", w)
			}
			verifyUnit(t, root, tc.unit)

			// The service's data (its data dir, with a mount-free tree).
			data := "var/lib/skiff"
			if tc.role == "server" {
				data = "var/lib/skiff-a"
			}
			if err := os.MkdirAll(filepath.Join(root, data, "agent/pods"), 0o700); err != nil {
				t.Fatal(err)
			}
			out = uninstall(t, "--root", root)
			if !strings.Contains(out, "skiff removed") {
				t.Errorf("uninstall output:\n%s", out)
			}
			sameTree(t, "uninstall did not leave the root as it was", snapshot(t, root, false), before)
			if out = uninstall(t, "--root", root); !strings.Contains(out, "nothing to do") {
				t.Errorf("second uninstall:\n%s", out)
			}
		})
	}
}

// TestInstallRefusesBadInput: each mistake stops install.sh with a
// message before it writes anything.
func TestInstallRefusesBadInput(t *testing.T) {
	bin := skiffBin(t)
	tok := "SK10" + strings.Repeat("ab", 32) + "::abcdef.0123456789abcdef"
	for _, tc := range []struct {
		name string
		env  []string
		args []string
		want string
		deps bool // without --skip-deps
	}{
		{"unknown role", nil, []string{"worker"}, `unknown role "worker": want server or agent`, false},
		{"unknown role from INSTALL_SKIFF_EXEC", []string{"INSTALL_SKIFF_EXEC=master --cluster-init"}, nil, `unknown role "master"`, false},
		{"agent without server", nil, []string{"agent", "--token", tok}, "agent needs --server URL", false},
		{"agent without token", nil, []string{"agent", "--server", "https://10.0.0.1:6443"}, "agent needs --token", false},
		{"agent from SKIFF_URL without token", []string{"SKIFF_URL=https://10.0.0.1:6443"}, nil, "agent needs --token", false},
		{"server join without token", nil, []string{"server", "--server", "https://10.0.0.1:6443"}, "needs --token", false},
		{"server token without URL", nil, []string{"server", "--token", tok}, "--token needs --server", false},
		{"cluster-init and join", nil, []string{"server", "--cluster-init", "--server", "https://10.0.0.1:6443", "--token", tok}, "not both", false},
		{"server joining through two URLs", nil, []string{"server", "--server", "https://10.0.0.1:6443", "--server", "https://10.0.0.2:6443", "--token", tok}, "one --server URL to join through", false},
		{"flag with a line break", nil, []string{"server", "--node-labels", "a=b\nc=d"}, "a flag with a line break", false},
		{"token with a blank", nil, []string{"agent", "--server", "https://10.0.0.1:6443", "--token", "a b"}, "may not hold blanks", false},
		{"data dir /", nil, []string{"server", "--data-dir", "/"}, `refusing "/" as a data directory`, false},
		{"data dir /var/lib", nil, []string{"server", "--data-dir=/var//lib/"}, `refusing "/var/lib" as a data directory`, false},
		{"data dir /usr", nil, []string{"server", "--data-dir=/var/lib/skiff/../../../usr"}, `refusing "/usr" as a data directory`, false},
		{"relative data dir", nil, []string{"server", "--data-dir", "data"}, `"data" is not an absolute path`, false},
		{"flag without value", nil, []string{"server", "--data-dir"}, "--data-dir needs a value", false},
		{"bad cluster CIDR", nil, []string{"server", "--cluster-cidr", "10.42.0.0"}, `"10.42.0.0" is not an IPv4 CIDR`, false},
		{"missing binary", nil, []string{"--binary", "/nonexistent/skiff", "server"}, "/nonexistent/skiff: no skiff binary", false},
		{"not a skiff binary", nil, []string{"--binary", "/bin/false", "server"}, "version failed: not a skiff binary", false},
		{"packages into a root", nil, []string{"server"}, "packages are installed only on / (give --skip-deps with --root)", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			seed(t, root)
			before := snapshot(t, root, true)
			args := append([]string{"--root", root, "--binary", bin}, tc.args...)
			if !tc.deps {
				args = append([]string{"--skip-deps"}, args...)
			}
			r := script(t, "install.sh", tc.env, args...)
			if r.code != 2 || !strings.Contains(r.out, tc.want) {
				t.Errorf("exit %d, output\n%s\nwant exit 2 and %q", r.code, r.out, tc.want)
			}
			sameTree(t, "a refused install wrote", snapshot(t, root, true), before)
		})
	}

	// A second role over an installed one: refused, the first untouched.
	root := t.TempDir()
	install(t, nil, "--root", root, "--skip-deps", "--binary", bin, "server")
	before := snapshot(t, root, true)
	r := script(t, "install.sh", nil, "--root", root, "--skip-deps", "--binary", bin, "agent", "--server", "https://10.0.0.1:6443", "--token", tok)
	if r.code != 2 || !strings.Contains(r.out, "skiff.service is installed here; run skiff-uninstall.sh first") {
		t.Errorf("agent over a server: exit %d\n%s", r.code, r.out)
	}
	sameTree(t, "a refused second role wrote", snapshot(t, root, true), before)
	uninstall(t, "--root", root)
	if r := script(t, "uninstall.sh", nil, "--root", root, "--purge"); r.code != 2 || !strings.Contains(r.out, `unknown argument "--purge"`) {
		t.Errorf("uninstall --purge: exit %d\n%s", r.code, r.out)
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	p, err := freeport.On()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestInstalledServerStarts runs the server the way the installed unit
// would: the ExecStart line's words with the installed binary (under the
// scratch root) and the environment file, plus --data-dir into the root
// (the unit's default /var/lib/skiff there), until /readyz answers; then
// uninstall.sh removes the data it wrote with everything else.
func TestInstalledServerStarts(t *testing.T) {
	bin := skiffBin(t)
	kubectl, err := exec.LookPath("kubectl")
	if err != nil {
		t.Fatal("kubectl is not installed")
	}
	root := t.TempDir()
	seed(t, root)
	before := snapshot(t, root, false)
	// Loopback and free ports only, and no node agent: the server must
	// not touch this machine's containerd or network.
	flags := []string{"--bind-address", "127.0.0.1",
		"--https-listen-port", fmt.Sprint(freePort(t)), "--etcd-client-port", "0", "--etcd-peer-port", "0",
		"--disable-agent", "--ingress-http-port", "0", "--ingress-https-port", "0", "--dashboard-port", "0",
		"--dns-port", fmt.Sprint(freePort(t)), "--disable", "dns,etcd-snapshot"}
	install(t, nil, append([]string{"--root", root, "--skip-deps", "--binary", bin, "server"}, flags...)...)
	u := unitFile(t, filepath.Join(root, "etc/systemd/system/skiff.service"))
	if got := u["Unit.After"]; len(got) != 1 || got[0] != "network-online.target" {
		t.Errorf("a server without an agent should not wait for containerd: After=%q", got)
	}
	words := execWords(t, u["Service.ExecStart"][0])
	if want := append([]string{"/usr/local/bin/skiff", "server"}, flags...); !slices.Equal(words, want) {
		t.Fatalf("ExecStart %q, want %q: not starting it", words, want)
	}
	dataDir := filepath.Join(root, "var/lib/skiff")
	cmd := exec.Command(filepath.Join(root, words[0]), append(words[1:], "--data-dir", dataDir)...)
	cmd.Env = os.Environ()
	for k, v := range envFile(t, filepath.Join(root, "etc/skiff/skiff.env")) {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	var log bytes.Buffer
	cmd.Stdout, cmd.Stderr = &log, &log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-done
		}
	}
	t.Cleanup(func() {
		stop()
		if t.Failed() {
			s := log.String()
			if len(s) > 4000 {
				s = s[len(s)-4000:]
			}
			t.Logf("server log:\n%s", s)
		}
	})
	kc := filepath.Join(dataDir, "admin.kubeconfig")
	ready := false
	for deadline := time.Now().Add(2 * time.Minute); time.Now().Before(deadline) && !ready; {
		select {
		case err := <-done:
			done <- err
			t.Fatalf("the installed server exited: %v", err)
		default:
		}
		if _, err := os.Stat(kc); err == nil {
			out, err := exec.Command(kubectl, "--kubeconfig", kc, "get", "--raw", "/readyz").CombinedOutput()
			ready = err == nil && strings.TrimSpace(string(out)) == "ok"
		}
		if !ready {
			time.Sleep(200 * time.Millisecond)
		}
	}
	if !ready {
		t.Fatal("the installed server did not become ready")
	}
	stop()
	uninstall(t, "--root", root)
	sameTree(t, "uninstall after a server ran", snapshot(t, root, false), before)
}

// TestUninstallCleansNetwork: in a network namespace of the test's own,
// with what a node agent leaves there (the service proxy's table and
// link, the pod network's guard table and bridge, host-gw and blackhole
// routes), uninstall.sh --clean-network removes exactly those.
func TestUninstallCleansNetwork(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root for a network namespace")
	}
	for _, b := range []string{"ip", "nft"} {
		if _, err := exec.LookPath(b); err != nil {
			t.Fatalf("%s is not installed", b)
		}
	}
	bin := skiffBin(t)
	ns := fmt.Sprintf("skiff-uninst-%d", os.Getpid())
	run := func(args ...string) string {
		t.Helper()
		out, err := exec.Command("ip", append([]string{"netns", "exec", ns}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	if out, err := exec.Command("ip", "netns", "add", ns).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add: %v\n%s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", ns).Run() })
	for _, c := range [][]string{
		{"ip", "link", "set", "lo", "up"},
		{"ip", "link", "add", "skiff-svc0", "type", "bridge"},
		{"ip", "link", "add", "skiffx0", "type", "bridge"},
		{"ip", "link", "set", "skiffx0", "up"},
		{"ip", "link", "add", "other0", "type", "bridge"},
		{"ip", "link", "set", "other0", "up"},
		{"ip", "route", "add", "10.42.7.0/24", "dev", "other0", "proto", "211"},
		{"ip", "route", "add", "blackhole", "10.42.0.0/16"},
		{"ip", "route", "add", "blackhole", "10.43.0.0/16"},
		{"ip", "route", "add", "blackhole", "10.77.0.0/16"},
		{"nft", "add", "table", "ip", "skiff_proxy"},
		{"nft", "add", "table", "inet", "skiffx0_guard"},
		{"nft", "add", "table", "inet", "other"},
	} {
		run(c...)
	}
	root := t.TempDir()
	install(t, nil, "--root", root, "--skip-deps", "--binary", bin, "agent", "--server", "https://10.0.0.1:6443",
		"--token", "SK10"+strings.Repeat("ab", 32)+"::abcdef.0123456789abcdef", "--bridge", "skiffx0")
	run("./uninstall.sh", "--root", root, "--clean-network")

	links := run("ip", "-o", "link", "show")
	for _, l := range []string{"skiff-svc0", "skiffx0"} {
		if strings.Contains(links, " "+l+":") {
			t.Errorf("link %s left:\n%s", l, links)
		}
	}
	if !strings.Contains(links, " other0:") {
		t.Errorf("link other0 removed:\n%s", links)
	}
	if tables := run("nft", "list", "tables"); strings.TrimSpace(tables) != "table inet other" {
		t.Errorf("nftables tables left: %q, want only inet other", tables)
	}
	if routes := run("ip", "-4", "route", "show", "table", "main"); strings.TrimSpace(routes) != "blackhole 10.77.0.0/16" {
		t.Errorf("routes left:\n%s\nwant only blackhole 10.77.0.0/16", routes)
	}
}

// TestScriptsLint: bash -n and shellcheck (Debian package shellcheck,
// which install-deps.sh installs) on the install scripts.
func TestScriptsLint(t *testing.T) {
	sc, err := exec.LookPath("shellcheck")
	if err != nil {
		t.Fatal("shellcheck is not installed (deploy/install-deps.sh installs it)")
	}
	for _, s := range []string{"install.sh", "uninstall.sh"} {
		if out, err := exec.Command("bash", "-n", s).CombinedOutput(); err != nil {
			t.Errorf("bash -n %s: %v\n%s", s, err, out)
		}
		if out, err := exec.Command(sc, s).CombinedOutput(); err != nil {
			t.Errorf("shellcheck %s: %v\n%s", s, err, out)
		}
	}
}
