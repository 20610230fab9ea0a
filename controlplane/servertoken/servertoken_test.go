package servertoken

import (
	"errors"
	"strings"
	"testing"
)

func TestRoundTripAndChecks(t *testing.T) {
	ca := []byte("-----BEGIN CERTIFICATE-----\nx\n-----END CERTIFICATE-----\n")
	tok, err := New(ca)
	if err != nil {
		t.Fatal(err)
	}
	got, err := Parse(tok.String())
	if err != nil || got != tok {
		t.Fatalf("Parse(%q) = %+v, %v; want %+v", tok.String(), got, err, tok)
	}
	if !got.MatchesCA(ca) || got.MatchesCA([]byte("other")) {
		t.Error("MatchesCA accepts the wrong CA or refuses the right one")
	}
	if !got.CheckSecret(tok.Secret) || got.CheckSecret(tok.Secret+"x") || got.CheckSecret("") {
		t.Error("CheckSecret accepts a wrong secret or refuses the right one")
	}
	dir := t.TempDir()
	if err := Write(dir, tok); err != nil {
		t.Fatal(err)
	}
	if r, err := Read(dir); err != nil || r != tok {
		t.Fatalf("Read = %+v, %v", r, err)
	}
}

func TestParseRejects(t *testing.T) {
	h := strings.Repeat("ab", 32)
	for _, s := range []string{"", "secret", "K10" + h + "::server:s", "SK10" + h + "::server:", "SK10" + h[:10] + "::server:s", "SK10" + strings.Repeat("zz", 32) + "::server:s", "SK10" + h + ":s"} {
		if _, err := Parse(s); !errors.Is(err, ErrFormat) {
			t.Errorf("Parse(%q) = %v, want ErrFormat", s, err)
		}
	}
}

func TestNodeToken(t *testing.T) {
	ca := []byte("-----BEGIN CERTIFICATE-----\nnode\n-----END CERTIFICATE-----\n")
	tok := NodeToken{CAHash: CAHash(ca), Bootstrap: "abcdef.0123456789abcdef"}
	got, err := ParseNode(" " + tok.String() + "\n")
	if err != nil || got != tok {
		t.Fatalf("ParseNode(%q) = %+v, %v", tok.String(), got, err)
	}
	if !got.MatchesCA(ca) || got.MatchesCA([]byte("other")) {
		t.Fatal("MatchesCA")
	}
	server := Token{CAHash: CAHash(ca), Secret: strings.Repeat("a", 32)}.String()
	for _, bad := range []string{
		"", "abcdef.0123456789abcdef", server,
		"SK10" + strings.Repeat("0", 63) + "::abcdef.0123456789abcdef",
		"SK10" + CAHash(ca) + "::ABCDEF.0123456789abcdef",
		"SK10" + CAHash(ca) + "::abcdef.0123456789",
		"SK10" + CAHash(ca) + "::abcdef0123456789abcdef",
	} {
		_, err := ParseNode(bad)
		if !errors.Is(err, ErrNodeFormat) {
			t.Errorf("ParseNode(%q): %v, want ErrNodeFormat", bad, err)
		}
		if err != nil && strings.Contains(err.Error(), strings.Repeat("a", 32)) {
			t.Errorf("the error repeats a secret: %v", err)
		}
	}
}
