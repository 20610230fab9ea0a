// Package testimages builds container images for tests without a registry:
// docker-archive tarballs made with go-containerregistry from Debian's
// static busybox (/bin/busybox, package busybox-static) and from a tiny
// static Go HTTP server compiled on the spot (CGO_ENABLED=0). The images
// say linux/amd64 (containerd drops image configs without os/architecture
// on import) and are named under skiff.test/, a registry host that no
// reference normalisation rewrites.
package testimages

import (
	"archive/tar"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

const (
	// Busybox is the reference of the busybox image.
	Busybox = "skiff.test/busybox:1"
	// HTTPServer is the reference of the Go test server image; it listens
	// on HTTPServerPort.
	HTTPServer = "skiff.test/httpserver:1"
	// HTTPServerPort is the port the test server listens on.
	HTTPServerPort = 8080
	// BusyboxPath is where Debian's busybox-static installs the binary.
	BusyboxPath = "/bin/busybox"
)

// ErrNoBusybox means the host lacks busybox-static.
var ErrNoBusybox = errors.New("testimages: /bin/busybox not found (apt-get install busybox-static)")

// file is one entry of an image layer.
type file struct {
	mode int64
	body []byte
	link string // symlink target when set
	dir  bool
}

// WriteBusybox writes a docker-archive tarball of the busybox image to
// path: /bin/busybox with a symlink per applet (sh, env, cat, sleep, ...),
// and the usual empty directories. Its default command is sh.
func WriteBusybox(path string) error {
	return WriteBusyboxAs(path, Busybox, "")
}

// WriteBusyboxAs writes the busybox image under another reference; a
// non-empty marker is written to /marker, which makes the image's layer,
// and so its digest, its own (tests that need several distinct images).
func WriteBusyboxAs(path, ref, marker string) error {
	bin, err := os.ReadFile(BusyboxPath)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return ErrNoBusybox
		}
		return fmt.Errorf("testimages: read busybox: %w", err)
	}
	out, err := exec.Command(BusyboxPath, "--list").Output()
	if err != nil {
		return fmt.Errorf("testimages: busybox --list: %w", err)
	}
	files := baseFiles()
	files["bin/busybox"] = file{mode: 0o755, body: bin}
	for _, applet := range strings.Fields(string(out)) {
		if applet == "busybox" || strings.Contains(applet, "/") {
			continue
		}
		files["bin/"+applet] = file{mode: 0o777, link: "busybox"}
	}
	if marker != "" {
		files["marker"] = file{mode: 0o644, body: []byte(marker)}
	}
	return writeImage(path, ref, files, v1.Config{
		Cmd: []string{"sh"},
		Env: []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"},
	})
}

// WriteHTTPServer compiles the test server (package httpserver beside this
// one) with CGO_ENABLED=0 and writes an image holding only it to path.
// workDir receives the binary; it must be writable.
func WriteHTTPServer(path, workDir string) error {
	bin := filepath.Join(workDir, "httpserver")
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w", "-o", bin, "github.com/skiffhq/skiff/internal/testimages/httpserver")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64")
	cmd.Dir = sourceDir()
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("testimages: build httpserver: %w: %s", err, out)
	}
	body, err := os.ReadFile(bin)
	if err != nil {
		return fmt.Errorf("testimages: %w", err)
	}
	files := baseFiles()
	files["httpserver"] = file{mode: 0o755, body: body}
	return writeImage(path, HTTPServer, files, v1.Config{
		Entrypoint:   []string{"/httpserver"},
		ExposedPorts: map[string]struct{}{fmt.Sprintf("%d/tcp", HTTPServerPort): {}},
	})
}

// sourceDir is this package's folder, so that `go build` runs inside the
// module whatever the caller's working directory.
func sourceDir() string {
	_, f, _, ok := runtime.Caller(0)
	if !ok {
		return "."
	}
	return filepath.Dir(f)
}

func baseFiles() map[string]file {
	return map[string]file{
		"bin":        {dir: true, mode: 0o755},
		"etc":        {dir: true, mode: 0o755},
		"tmp":        {dir: true, mode: 0o1777},
		"var":        {dir: true, mode: 0o755},
		"root":       {dir: true, mode: 0o700},
		"etc/passwd": {mode: 0o644, body: []byte("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n")},
		"etc/group":  {mode: 0o644, body: []byte("root:x:0:\nnogroup:x:65534:\n")},
	}
}

func writeImage(path, ref string, files map[string]file, cfg v1.Config) error {
	layerTar, err := tarOf(files)
	if err != nil {
		return err
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(layerTar)), nil
	})
	if err != nil {
		return fmt.Errorf("testimages: layer: %w", err)
	}
	img, err := mutate.AppendLayers(empty.Image, layer)
	if err != nil {
		return fmt.Errorf("testimages: append layer: %w", err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return fmt.Errorf("testimages: config: %w", err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", "amd64"
	cf.Created = v1.Time{Time: time.Unix(0, 0).UTC()}
	cf.Config = cfg
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		return fmt.Errorf("testimages: set config: %w", err)
	}
	tag, err := name.NewTag(ref)
	if err != nil {
		return fmt.Errorf("testimages: %w", err)
	}
	if err := tarball.WriteToFile(path, tag, img); err != nil {
		return fmt.Errorf("testimages: write %s: %w", path, err)
	}
	return nil
}

func tarOf(files map[string]file) ([]byte, error) {
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	epoch := time.Unix(0, 0)
	for _, n := range names {
		f := files[n]
		h := &tar.Header{Name: n, Mode: f.mode, ModTime: epoch, Format: tar.FormatPAX}
		switch {
		case f.dir:
			h.Typeflag, h.Name = tar.TypeDir, n+"/"
		case f.link != "":
			h.Typeflag, h.Linkname = tar.TypeSymlink, f.link
		default:
			h.Typeflag, h.Size = tar.TypeReg, int64(len(f.body))
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, fmt.Errorf("testimages: tar %s: %w", n, err)
		}
		if h.Typeflag == tar.TypeReg {
			if _, err := tw.Write(f.body); err != nil {
				return nil, fmt.Errorf("testimages: tar %s: %w", n, err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("testimages: tar: %w", err)
	}
	return buf.Bytes(), nil
}
