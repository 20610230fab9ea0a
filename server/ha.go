package server

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/skiffhq/skiff/controlplane/encryption"
	"github.com/skiffhq/skiff/controlplane/servertoken"
	"github.com/skiffhq/skiff/controlplane/storage"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
)

// HA with embedded etcd, k3s's model (docs/architecture.md, "HA"):
//
//   - `skiff server --cluster-init` runs the first member, its peer port on
//     the advertise address, and serves the join endpoints below on its
//     API port;
//   - `skiff server --server URL --token T` fetches the cluster CA from URL,
//     checks it against the hash in T, fetches the shared cluster material
//     with T's secret, has the server add it as an etcd learner, starts its
//     member with initial-cluster-state=existing, has it promoted to a
//     voting member, then runs its API server on it. A failure after the
//     member was added removes it again, and the files written are removed.
//
// Every server of the cluster serves the join endpoints, authenticated by
// the token's secret (stored in <data-dir>/server/token).
const (
	haCACertsPath   = servertoken.CACertsPath
	haBootstrapPath = "/skiff/v1/server/bootstrap"
	haMembersPath   = "/skiff/v1/server/etcd-members"
	// memberNameFile keeps this server's etcd member name; it also marks
	// the data dir's member as part of an HA cluster.
	memberNameFile = "server/etcd-name"
	// singleMemberName is the member name of a single server.
	singleMemberName = "skiff"
)

// sharedFiles are the cluster material every server holds the same copy
// of, relative to the data directory: the cluster CA, the embedded etcd's
// CA, the front-proxy CA, the service account signing key and the Secrets encryption config.
// Each server issues its own leaf certificates from the CAs.
var sharedFiles = []string{
	"tls/server-ca.crt", "tls/server-ca.key",
	EtcdTLSDir + "/etcd-ca.crt", EtcdTLSDir + "/etcd-ca.key",
	FrontProxyDir + "/front-proxy-ca.crt", FrontProxyDir + "/front-proxy-ca.key",
	"tls/service-account.key",
	encryption.ConfigFile,
}

// haState is a server's part in an HA cluster.
type haState struct {
	token servertoken.Token
	// join is set while this server joins (nil when it started a cluster
	// or restarts with a member already in its data dir).
	join *joiner
}

// joiner is the client side of a join.
type joiner struct {
	base    string
	token   servertoken.Token
	client  *http.Client
	written []string // files this join created, removed if it fails
	// newDirs are the data dir's directories this join creates (the
	// certificates, the token, the database): removed whole if it fails,
	// with every leaf certificate issued meanwhile.
	newDirs []string
	member  uint64 // the learner added for us (0 = none)
}

// joinDirs are the data dir's directories a first join writes into.
var joinDirs = []string{"tls", "server", "db"}

// haEnabled: --cluster-init or --server, or a data dir whose member is in
// an HA cluster already (it has a member name recorded). As k3s, a
// server once clustered stays clustered: restarted without either flag it
// keeps its peer port on the advertise address and serves the join
// endpoints, instead of coming up as a single server its peers cannot
// reach.
func (s *Server) haEnabled() bool {
	return s.cfg.ClusterInit || s.cfg.JoinServer != "" || s.clustered()
}

// clustered reports whether the data dir records an HA member's name.
func (s *Server) clustered() bool {
	return len(s.cfg.DatastoreEndpoints) == 0 && exists(filepath.Join(s.cfg.DataDir, memberNameFile))
}

// singleMember reports whether the data dir holds the etcd member of a
// single server (started without --cluster-init or --server).
func (s *Server) singleMember() bool { return s.hasEtcdMember() && !s.clustered() }

// advertiseAddress is where other servers reach this one's etcd peer port.
func (s *Server) advertiseAddress() string {
	if s.cfg.AdvertiseAddress != "" {
		return s.cfg.AdvertiseAddress
	}
	if ip := net.ParseIP(s.cfg.BindAddress); ip != nil && !ip.IsUnspecified() {
		return ip.String()
	}
	if addrs, err := net.InterfaceAddrs(); err == nil {
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok && n.IP.To4() != nil && !n.IP.IsLoopback() && n.IP.IsGlobalUnicast() {
				return n.IP.String()
			}
		}
	}
	return "127.0.0.1"
}

// etcdMemberName is this server's member name: <hostname>-<random>, kept in
// the data dir. A server outside an HA cluster keeps the name "skiff", and
// so does a single server converted by --cluster-init (its member keeps
// its name; the name is recorded like any HA member's).
func (s *Server) etcdMemberName() (string, error) {
	if !s.haEnabled() {
		return singleMemberName, nil
	}
	path := filepath.Join(s.cfg.DataDir, memberNameFile)
	if b, err := os.ReadFile(path); err == nil && len(bytes.TrimSpace(b)) > 0 {
		return string(bytes.TrimSpace(b)), nil
	}
	name := singleMemberName
	if !s.hasEtcdMember() {
		host, _ := os.Hostname()
		if host == "" {
			host = "skiff"
		}
		r := make([]byte, 4)
		if _, err := rand.Read(r); err != nil {
			return "", fmt.Errorf("etcd member name: %w", err)
		}
		name = host + "-" + hex.EncodeToString(r)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return "", fmt.Errorf("etcd member name: %w", err)
	}
	if err := os.WriteFile(path, []byte(name+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("etcd member name: %w", err)
	}
	return name, nil
}

func (s *Server) etcdDataDir() string { return filepath.Join(s.cfg.DataDir, "db", "etcd") }

func (s *Server) hasEtcdMember() bool {
	_, err := os.Stat(filepath.Join(s.etcdDataDir(), "member"))
	return err == nil
}

// prepareHA runs before the CAs are loaded: a server joining for the
// first time fetches the cluster material; every HA server loads or
// creates its token.
func (s *Server) prepareHA(ctx context.Context) error {
	if !s.haEnabled() {
		return nil
	}
	if len(s.cfg.DatastoreEndpoints) > 0 {
		return errors.New("--cluster-init and --server are for the embedded etcd, not with --datastore-endpoint")
	}
	if s.cfg.JoinServer != "" && s.singleMember() {
		return fmt.Errorf("%s holds the etcd data of a single server: a server joins with a data dir without it (or make this server the first of a cluster with --cluster-init)", s.etcdDataDir())
	}
	s.ha = &haState{}
	if s.cfg.JoinServer == "" {
		if s.singleMember() {
			s.log.Info("converting a single server into the first server of an HA cluster: its etcd member keeps its data and name and takes a peer URL on the advertise address", "member", singleMemberName, "advertise", s.advertiseAddress())
		}
		return nil
	}
	tok, err := servertoken.Parse(s.cfg.Token)
	if err != nil {
		return fmt.Errorf("--token: %w", err)
	}
	s.ha.token = tok
	if s.hasEtcdMember() {
		// A restart: the member is in the data dir, etcd ignores the
		// initial cluster. Keep the token we joined with.
		return nil
	}
	j := &joiner{base: strings.TrimSuffix(s.cfg.JoinServer, "/"), token: tok}
	for _, d := range joinDirs {
		if p := filepath.Join(s.cfg.DataDir, d); !exists(p) {
			j.newDirs = append(j.newDirs, p)
		}
	}
	s.ha.join = j
	return j.fetchMaterial(ctx, s.cfg.DataDir)
}

// ensureServerToken stores this server's token once its CA is loaded:
// the first server of a cluster makes one.
func (s *Server) ensureServerToken() error {
	if s.ha == nil {
		return nil
	}
	if s.cfg.JoinServer != "" {
		if !s.ha.token.MatchesCA(s.ca.CertPEM) {
			return fmt.Errorf("--token: its CA hash does not match this data dir's cluster CA (%s)", filepath.Join(s.cfg.DataDir, "tls", "server-ca.crt"))
		}
		return s.recordWritten(servertoken.File, func() error { return servertoken.Write(s.cfg.DataDir, s.ha.token) })
	}
	tok, err := servertoken.Read(s.cfg.DataDir)
	switch {
	case err != nil:
		if tok, err = servertoken.New(s.ca.CertPEM); err != nil {
			return err
		}
		if err := servertoken.Write(s.cfg.DataDir, tok); err != nil {
			return err
		}
	case !tok.MatchesCA(s.ca.CertPEM):
		// The CA was replaced (controlplane/pki/README.md, "CA
		// rotation"): the token takes the new CA's hash and keeps its
		// secret, so the other servers' --token changes in its hash only.
		tok.CAHash = servertoken.CAHash(s.ca.CertPEM)
		if err := servertoken.Write(s.cfg.DataDir, tok); err != nil {
			return err
		}
		s.log.Warn("cluster CA changed: server token rewritten with its hash; restart the other servers with the new token", "path", filepath.Join(s.cfg.DataDir, servertoken.File))
	}
	s.ha.token = tok
	s.log.Info("server token for joining servers (skiff server --server <url> --token ...)", "path", filepath.Join(s.cfg.DataDir, servertoken.File))
	return nil
}

// recordWritten runs write and, during a first join, remembers the file
// when it did not exist before, so that a failed join removes it.
func (s *Server) recordWritten(rel string, write func() error) error {
	path := filepath.Join(s.cfg.DataDir, rel)
	_, statErr := os.Stat(path)
	if err := write(); err != nil {
		return err
	}
	if s.ha.join != nil && errors.Is(statErr, os.ErrNotExist) {
		s.ha.join.written = append(s.ha.join.written, path)
	}
	return nil
}

// undoJoin removes what a failed first join left: the etcd learner (if
// added) and the files written. ctx-less: it runs on the way out.
func (s *Server) undoJoin() {
	if s.ha == nil || s.ha.join == nil {
		return
	}
	j := s.ha.join
	if j.member != 0 {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		if err := j.removeMember(ctx, j.member); err != nil {
			s.log.Error("join failed and the etcd member added for it could not be removed: remove it with `skiff etcd member remove`", "id", strconv.FormatUint(j.member, 16), "err", err)
		} else {
			s.log.Info("join failed: removed the etcd member added for it", "id", strconv.FormatUint(j.member, 16))
		}
		cancel()
		_ = os.RemoveAll(s.etcdDataDir())
	}
	for _, p := range j.written {
		_ = os.Remove(p)
	}
	for _, d := range j.newDirs {
		_ = os.RemoveAll(d)
	}
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// startJoinedEtcd adds this server as a learner through the server it
// joins, starts its member in the existing cluster and has it promoted.
func (s *Server) startJoinedEtcd(ctx context.Context, cfg storage.EmbeddedConfig) (*storage.Embedded, error) {
	j := s.ha.join
	add, err := j.addMember(ctx, cfg.Name, cfg.PeerURL)
	if err != nil {
		return nil, err
	}
	j.member = add.ID
	cfg.InitialCluster = add.InitialCluster
	cfg.InitialClusterExisting = true
	cfg.ReadyTimeout = 30 * time.Second
	e, err := storage.StartEmbedded(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("start the joined etcd member: %w", err)
	}
	// A learner is promoted once it has caught up with the leader.
	pctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	for {
		err = j.promoteMember(pctx, add.ID)
		if err == nil {
			break
		}
		select {
		case <-pctx.Done():
			e.Close()
			return nil, fmt.Errorf("promote the joined etcd member: %w", err)
		case <-time.After(300 * time.Millisecond):
		}
	}
	s.log.Info("joined the etcd cluster", "server", j.base, "member", cfg.Name, "id", strconv.FormatUint(add.ID, 16))
	return e, nil
}

// advertisePeerURL makes the peer URL etcd lists for this member the one
// it listens on, peerURL, when the member is alone in its cluster: a single
// server converted by --cluster-init registered a loopback URL, and a
// member's peer port or advertise address may change across restarts.
// Joining servers read the URL from the member list. With other members
// the change would need them (a quorum) and is not made: it is logged.
func (s *Server) advertisePeerURL(ctx context.Context, peerURL string) error {
	cli := s.etcd.Client()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	list, err := cli.MemberList(ctx)
	if err != nil {
		return fmt.Errorf("etcd member list: %w", err)
	}
	self := list.Header.GetMemberId()
	for _, m := range list.Members {
		if m.ID != self || slices.Equal(m.PeerURLs, []string{peerURL}) {
			continue
		}
		if len(list.Members) > 1 {
			s.log.Warn("this etcd member's registered peer URL is not the one it listens on: the other members cannot reach it until it is restarted on its registered address and port", "registered", m.PeerURLs, "listening", peerURL)
			return nil
		}
		if _, err := cli.MemberUpdate(ctx, self, []string{peerURL}); err != nil {
			return fmt.Errorf("etcd member update (peer URL %s): %w", peerURL, err)
		}
		s.log.Info("etcd member's peer URL updated", "member", m.Name, "from", m.PeerURLs, "to", peerURL)
	}
	return nil
}

// joinDone marks a first join finished: nothing is undone any more.
func (s *Server) joinDone() {
	if s.ha != nil {
		s.ha.join = nil
	}
}

// --- server side -----------------------------------------------------------

// haHandler serves the join endpoints in front of the API; other paths go
// to next. The cluster CA (public) is served on every server: joining
// servers and agents check it against their token's hash.
func (s *Server) haHandler(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := r.URL.Path
		switch {
		case p == haCACertsPath && r.Method == http.MethodGet:
			w.Header().Set("Content-Type", "application/x-pem-file")
			_, _ = w.Write(s.ca.CertPEM)
		case s.ha == nil || !strings.HasPrefix(p, "/skiff/v1/server/"):
			next.ServeHTTP(w, r)
		case !s.ha.token.CheckSecret(strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")):
			haError(w, http.StatusUnauthorized, errors.New("server token rejected"))
		case p == haBootstrapPath && r.Method == http.MethodGet:
			s.serveBootstrap(w)
		case p == haMembersPath && r.Method == http.MethodPost:
			s.serveMemberAdd(w, r)
		case strings.HasPrefix(p, haMembersPath+"/") && (r.Method == http.MethodDelete || r.Method == http.MethodPost):
			s.serveMember(w, r, strings.TrimPrefix(p, haMembersPath+"/"))
		default:
			haError(w, http.StatusNotFound, fmt.Errorf("no %s %s", r.Method, p))
		}
	})
}

func haError(w http.ResponseWriter, code int, err error) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(code)
	_, _ = io.WriteString(w, err.Error())
}

type bootstrapResponse struct {
	// Files maps paths relative to the data dir to their contents.
	Files map[string][]byte `json:"files"`
}

func (s *Server) serveBootstrap(w http.ResponseWriter) {
	resp := bootstrapResponse{Files: map[string][]byte{}}
	for _, rel := range sharedFiles {
		b, err := os.ReadFile(filepath.Join(s.cfg.DataDir, rel))
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			haError(w, http.StatusInternalServerError, fmt.Errorf("read %s: %w", rel, err))
			return
		}
		resp.Files[rel] = b
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(resp)
}

type memberAddRequest struct {
	Name    string `json:"name"`
	PeerURL string `json:"peerURL"`
}

type memberAddResponse struct {
	ID             uint64 `json:"id"`
	InitialCluster string `json:"initialCluster"`
}

func (s *Server) serveMemberAdd(w http.ResponseWriter, r *http.Request) {
	var req memberAddRequest
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<16)).Decode(&req); err != nil || req.Name == "" || req.PeerURL == "" {
		haError(w, http.StatusBadRequest, fmt.Errorf("want {name, peerURL}: %v", err))
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 25*time.Second)
	defer cancel()
	// A linearizable read needs a quorum: without one, add nothing.
	if _, err := s.etcdCli.Get(ctx, "/registry/health"); err != nil {
		haError(w, http.StatusServiceUnavailable, fmt.Errorf("the etcd cluster has no quorum, not adding a member: %w", err))
		return
	}
	list, err := s.etcdCli.MemberList(ctx)
	if err != nil {
		haError(w, http.StatusServiceUnavailable, fmt.Errorf("etcd member list: %w", err))
		return
	}
	for _, m := range list.Members {
		if m.Name == req.Name {
			haError(w, http.StatusConflict, fmt.Errorf("an etcd member named %q exists already (remove it with `skiff etcd member remove %s`)", req.Name, req.Name))
			return
		}
	}
	// etcd refuses a reconfiguration until every member has been
	// connected for its health interval (5 s): right after another server
	// joined, or a failed join was undone, that is a wait, not a failure.
	add, err := s.etcdCli.MemberAddAsLearner(ctx, []string{req.PeerURL})
	for err != nil && strings.Contains(err.Error(), rpctypes.ErrUnhealthy.Error()) && ctx.Err() == nil {
		select {
		case <-ctx.Done():
		case <-time.After(500 * time.Millisecond):
			add, err = s.etcdCli.MemberAddAsLearner(ctx, []string{req.PeerURL})
		}
	}
	if err != nil {
		haError(w, http.StatusServiceUnavailable, fmt.Errorf("etcd member add: %w", err))
		return
	}
	var parts []string
	for _, m := range add.Members {
		name := m.Name
		if m.ID == add.Member.ID {
			name = req.Name
		}
		if name == "" { // another member added but not started yet
			continue
		}
		for _, u := range m.PeerURLs {
			parts = append(parts, name+"="+u)
		}
	}
	s.log.Info("added an etcd learner for a joining server", "name", req.Name, "peerURL", req.PeerURL, "id", strconv.FormatUint(add.Member.ID, 16))
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(memberAddResponse{ID: add.Member.ID, InitialCluster: strings.Join(parts, ",")})
}

// serveMember: DELETE <id> removes a member (a failed join undoing
// itself), POST <id>/promote promotes a learner.
func (s *Server) serveMember(w http.ResponseWriter, r *http.Request, rest string) {
	idText, promote := strings.CutSuffix(rest, "/promote")
	id, err := strconv.ParseUint(idText, 16, 64)
	if err != nil || promote != (r.Method == http.MethodPost) {
		haError(w, http.StatusBadRequest, fmt.Errorf("bad member path %q", rest))
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
	defer cancel()
	if promote {
		_, err = s.etcdCli.MemberPromote(ctx, id)
	} else {
		_, err = s.etcdCli.MemberRemove(ctx, id)
	}
	if err != nil {
		haError(w, http.StatusServiceUnavailable, fmt.Errorf("etcd member %s: %w", idText, err))
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// --- client side -----------------------------------------------------------

// fetchMaterial checks the server's CA against the token's hash, fetches
// the shared files with the token's secret and writes them into dataDir.
// A file that exists already must be the same.
func (j *joiner) fetchMaterial(ctx context.Context, dataDir string) error {
	// The CA is public; it is trusted only once it matches the token's
	// hash, and the secret is sent only to a server that serves it.
	caPEM, err := servertoken.FetchCA(ctx, j.base, j.token.CAHash)
	if err != nil {
		return err
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	j.client = &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}
	body, err := j.get(ctx, j.client, haBootstrapPath)
	if err != nil {
		return fmt.Errorf("fetch the cluster material from %s: %w", j.base, err)
	}
	var resp bootstrapResponse
	if err := json.Unmarshal(body, &resp); err != nil {
		return fmt.Errorf("cluster material from %s: %w", j.base, err)
	}
	if !bytes.Equal(resp.Files["tls/server-ca.crt"], caPEM) {
		return fmt.Errorf("cluster material from %s: its CA is not the one it serves", j.base)
	}
	for _, rel := range sharedFiles {
		data, ok := resp.Files[rel]
		if !ok {
			continue
		}
		path := filepath.Join(dataDir, rel)
		old, err := os.ReadFile(path)
		if err == nil {
			if !bytes.Equal(old, data) {
				return fmt.Errorf("%s exists and differs from the cluster's: this data dir belongs to another cluster", path)
			}
			continue
		}
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return fmt.Errorf("write cluster material: %w", err)
		}
		if err := os.WriteFile(path, data, 0o600); err != nil {
			return fmt.Errorf("write cluster material: %w", err)
		}
		j.written = append(j.written, path)
	}
	return nil
}

func (j *joiner) get(ctx context.Context, c *http.Client, path string) ([]byte, error) {
	return j.do(ctx, c, http.MethodGet, path, nil)
}

func (j *joiner) do(ctx context.Context, c *http.Client, method, path string, body []byte) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, method, j.base+path, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+j.token.Secret)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode >= 300 {
		return nil, fmt.Errorf("%s %s: %s: %s", method, path, resp.Status, strings.TrimSpace(string(data)))
	}
	return data, nil
}

func (j *joiner) addMember(ctx context.Context, name, peerURL string) (memberAddResponse, error) {
	var out memberAddResponse
	body, _ := json.Marshal(memberAddRequest{Name: name, PeerURL: peerURL})
	data, err := j.do(ctx, j.client, http.MethodPost, haMembersPath, body)
	if err != nil {
		return out, fmt.Errorf("add this server to the etcd cluster through %s: %w", j.base, err)
	}
	if err := json.Unmarshal(data, &out); err != nil {
		return out, fmt.Errorf("etcd member add answer: %w", err)
	}
	return out, nil
}

func (j *joiner) promoteMember(ctx context.Context, id uint64) error {
	_, err := j.do(ctx, j.client, http.MethodPost, haMembersPath+"/"+strconv.FormatUint(id, 16)+"/promote", nil)
	return err
}

func (j *joiner) removeMember(ctx context.Context, id uint64) error {
	_, err := j.do(ctx, j.client, http.MethodDelete, haMembersPath+"/"+strconv.FormatUint(id, 16), nil)
	return err
}
