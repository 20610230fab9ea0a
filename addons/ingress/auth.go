package ingress

import (
	"crypto/md5"
	"crypto/sha1"
	"crypto/subtle"
	"encoding/base64"
	"fmt"
	"strings"

	"golang.org/x/crypto/bcrypt"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/types"
)

// basicAuth checks HTTP basic credentials against htpasswd entries from a
// Secret (auth-secret, auth-secret-type auth-file or auth-map).
type basicAuth struct {
	realm  string
	users  map[string]string // user → htpasswd hash
	broken string            // configuration error: every request gets 503
}

func (b *builder) basicAuth(ing *networkingv1.Ingress, secrets map[types.NamespacedName]*corev1.Secret, problems *[]string) *basicAuth {
	a := &basicAuth{realm: "Authentication Required", users: map[string]string{}}
	if v, ok := annotation(ing, "auth-realm"); ok && v != "" {
		a.realm = v
	}
	fail := func(format string, args ...any) *basicAuth {
		msg := fmt.Sprintf(format, args...)
		*problems = append(*problems, msg)
		a.broken = msg
		return a
	}
	name, _ := annotation(ing, "auth-secret")
	if name == "" {
		return fail("auth-type basic needs an auth-secret annotation")
	}
	ref := types.NamespacedName{Namespace: ing.Namespace, Name: name}
	if ns, n, ok := strings.Cut(name, "/"); ok {
		if ns != ing.Namespace {
			// A Secret in another namespace would let any Ingress author
			// read credentials they cannot read themselves.
			return fail("auth-secret %s: only Secrets of the Ingress's namespace are used", name)
		}
		ref.Name = n
	}
	s := secrets[ref]
	if s == nil {
		return fail("auth-secret %s not found", ref)
	}
	typ, _ := annotation(ing, "auth-secret-type")
	switch typ {
	case "", "auth-file":
		for line := range strings.SplitSeq(string(s.Data["auth"]), "\n") {
			line = strings.TrimSpace(line)
			if line == "" || strings.HasPrefix(line, "#") {
				continue
			}
			if u, h, ok := strings.Cut(line, ":"); ok {
				a.users[u] = h
			}
		}
	case "auth-map":
		for u, h := range s.Data {
			a.users[u] = strings.TrimSpace(string(h))
		}
	default:
		return fail("auth-secret-type %q: want auth-file or auth-map", typ)
	}
	if len(a.users) == 0 {
		return fail("auth-secret %s holds no users", ref)
	}
	return a
}

// check reports whether user and password match an entry.
func (a *basicAuth) check(user, password string) bool {
	h, ok := a.users[user]
	if !ok {
		return false
	}
	return checkHtpasswd(h, password)
}

// checkHtpasswd verifies a password against an htpasswd hash: bcrypt
// ($2y$, $2a$, $2b$), Apache MD5 ($apr1$) or {SHA}.
func checkHtpasswd(hash, password string) bool {
	switch {
	case strings.HasPrefix(hash, "$2y$"), strings.HasPrefix(hash, "$2a$"), strings.HasPrefix(hash, "$2b$"):
		return bcrypt.CompareHashAndPassword([]byte(hash), []byte(password)) == nil
	case strings.HasPrefix(hash, "$apr1$"):
		rest := hash[len("$apr1$"):]
		salt, _, ok := strings.Cut(rest, "$")
		if !ok {
			return false
		}
		return subtle.ConstantTimeCompare([]byte(apr1(password, salt)), []byte(hash)) == 1
	case strings.HasPrefix(hash, "{SHA}"):
		sum := sha1.Sum([]byte(password))
		want := "{SHA}" + base64.StdEncoding.EncodeToString(sum[:])
		return subtle.ConstantTimeCompare([]byte(want), []byte(hash)) == 1
	}
	return false
}

// apr1 is Apache's MD5-based crypt ("$apr1$salt$hash").
func apr1(password, salt string) string {
	if len(salt) > 8 {
		salt = salt[:8]
	}
	const magic = "$apr1$"
	pw := []byte(password)
	alt := md5.Sum([]byte(password + salt + password))
	ctx := md5.New()
	ctx.Write(pw)
	ctx.Write([]byte(magic + salt))
	for i := len(pw); i > 0; i -= 16 {
		ctx.Write(alt[:min(i, 16)])
	}
	for i := len(pw); i > 0; i >>= 1 {
		if i&1 != 0 {
			ctx.Write([]byte{0})
		} else {
			ctx.Write(pw[:1])
		}
	}
	final := ctx.Sum(nil)
	for i := range 1000 {
		c := md5.New()
		if i&1 != 0 {
			c.Write(pw)
		} else {
			c.Write(final)
		}
		if i%3 != 0 {
			c.Write([]byte(salt))
		}
		if i%7 != 0 {
			c.Write(pw)
		}
		if i&1 != 0 {
			c.Write(final)
		} else {
			c.Write(pw)
		}
		final = c.Sum(nil)
	}
	const itoa64 = "./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
	var out []byte
	enc := func(a, b, c byte, n int) {
		v := uint(a)<<16 | uint(b)<<8 | uint(c)
		for range n {
			out = append(out, itoa64[v&0x3f])
			v >>= 6
		}
	}
	enc(final[0], final[6], final[12], 4)
	enc(final[1], final[7], final[13], 4)
	enc(final[2], final[8], final[14], 4)
	enc(final[3], final[9], final[15], 4)
	enc(final[4], final[10], final[5], 4)
	enc(0, 0, final[11], 2)
	return magic + salt + "$" + string(out)
}
