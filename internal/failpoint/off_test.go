//go:build !failpoints

package failpoint

import (
	"testing"
)

// TestOffIgnoresEnvironment: a normal build never acts, whatever the
// environment names.
func TestOffIgnoresEnvironment(t *testing.T) {
	t.Setenv(Env, "p=error")
	if Enabled {
		t.Fatal("Enabled in a build without the tag")
	}
	if err := Inject("p", ""); err != nil {
		t.Fatalf("Inject in a normal build: %v", err)
	}
}
