package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/skiffhq/skiff/internal/testimages"
	"github.com/skiffhq/skiff/nodeagent/runtime"
)

func TestImagesImport(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to reach containerd")
	}
	if _, err := os.Stat(runtime.DefaultAddress); err != nil {
		t.Skip("containerd is not running (run deploy/install-deps.sh)")
	}
	tar := filepath.Join(t.TempDir(), "busybox.tar")
	if err := testimages.WriteBusybox(tar); err != nil {
		t.Skip(err)
	}
	cmd := imagesCmd()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetArgs([]string{"import", tar})
	if err := cmd.ExecuteContext(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := out.String(); !strings.Contains(got, "imported "+testimages.Busybox) {
		t.Fatalf("output %q", got)
	}
	rt, err := runtime.New(context.Background(), runtime.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close()
	if _, err := rt.GetImage(context.Background(), testimages.Busybox); err != nil {
		t.Fatalf("image not in the store after import: %v", err)
	}
	cmd.SetArgs([]string{"import", filepath.Join(t.TempDir(), "missing.tar")})
	if err := cmd.ExecuteContext(context.Background()); err == nil {
		t.Fatal("importing a missing file succeeded")
	}
}
