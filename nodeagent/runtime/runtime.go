// Package runtime runs a node's containers through containerd (client v2,
// namespace "skiff", the runc v2 shim, the overlayfs snapshotter). It
// imports images from tarballs, creates and starts containers joined to a
// pod's network namespace, copies each task's stdout and stderr into a
// CRI-format log file itself (timestamp, stream, P/F tag), reports exit
// codes and OOM kills, and stops containers with SIGTERM then SIGKILL after
// the grace period. Everything the agent needs to know about a container
// after a restart is kept in containerd: its labels carry the pod identity
// and the log path, and a stopped task keeps its exit status until removal.
package runtime

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	eventtypes "github.com/containerd/containerd/api/events"
	"github.com/containerd/containerd/api/services/tasks/v1"
	tasktypes "github.com/containerd/containerd/api/types/task"
	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/pkg/cio"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/containerd/v2/pkg/oci"
	"github.com/containerd/errdefs"
	"github.com/containerd/errdefs/pkg/errgrpc"
	"github.com/containerd/typeurl/v2"
	"github.com/distribution/reference"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/skiffhq/skiff/nodeagent/crilog"
)

const (
	// Namespace is the containerd namespace holding Skiff's images and
	// containers.
	Namespace = "skiff"
	// DefaultAddress is containerd's default socket.
	DefaultAddress = "/run/containerd/containerd.sock"
	// Snapshotter and RuncRuntime are what containers are created with.
	Snapshotter = "overlayfs"
	RuncRuntime = "io.containerd.runc.v2"
)

// Labels every container carries, so that a restarted agent can adopt it.
const (
	LabelPodUID       = "io.skiff.pod.uid"
	LabelPodName      = "io.skiff.pod.name"
	LabelPodNamespace = "io.skiff.pod.namespace"
	LabelContainer    = "io.skiff.container.name"
	LabelRestart      = "io.skiff.container.restart"
	LabelInit         = "io.skiff.container.init"
	LabelLogPath      = "io.skiff.log.path"
	LabelImageRef     = "io.skiff.image.ref"
	// LabelNode names the node (agent) that created the container: agents
	// sharing one containerd leave each other's containers alone.
	LabelNode      = "io.skiff.node"
	labelStartedAt = "io.skiff.started-at"
)

// Errors.
var (
	ErrImageNotFound     = errors.New("image not found")
	ErrContainerNotFound = errors.New("container not found")
)

// State is a container's lifecycle state.
type State string

const (
	StateCreated State = "created"
	StateRunning State = "running"
	StateExited  State = "exited"
	StateUnknown State = "unknown"
)

// Container is what containerd knows about one container.
type Container struct {
	ID         string
	Labels     map[string]string
	Image      string
	State      State
	Pid        uint32
	ExitCode   int32
	OOMKilled  bool
	StartedAt  time.Time
	FinishedAt time.Time
	CreatedAt  time.Time
}

// Restart is the container's restart index from its labels.
func (c Container) Restart() int {
	n, _ := strconv.Atoi(c.Labels[LabelRestart])
	return n
}

// Image is an image in the local store.
type Image struct {
	Ref string // normalised reference, e.g. docker.io/library/busybox:latest
	// ID is the repo digest reference (name@sha256:...), as a kubelet
	// reports imageID.
	ID string
}

// Options configures a Runtime.
type Options struct {
	Address string
	Logger  *slog.Logger
	// OnExit is told the ID of every container whose task exits.
	OnExit func(id string)
	// LogRotation rotates containers' CRI log files (zero: never).
	LogRotation crilog.Rotation
	// Node is the node whose containers Adopt takes over: those labelled
	// LabelNode=Node, and those without the label. Other agents sharing
	// the containerd copy their own containers' output.
	Node string
}

// Runtime talks to containerd.
type Runtime struct {
	client *containerd.Client
	log    *slog.Logger
	onExit func(string)
	logRot crilog.Rotation
	node   string
	// runCtx (namespaced) lives until Close: what a container's stdio
	// does (closing stdin, resizing) belongs to the Runtime, not to the
	// request that started the task.
	runCtx context.Context

	mu       sync.Mutex
	closed   bool // detached: no new copies
	oom      map[string]bool
	attached map[string]*attachment // by container ID
	// owned are the containers this Runtime started or adopted (until
	// Remove): the subscription sees every exit of the namespace, other
	// agents' and other Runtimes' too, and reports only these.
	owned   map[string]struct{}
	cancel  context.CancelFunc
	wg      sync.WaitGroup // followEvents
	copiers sync.WaitGroup // one per attachment until it is finished
}

// Task exits reach the Runtime through one subscription to containerd's
// events (followEvents), not through a wait call and a goroutine per
// container. An exit must not be lost in between:
//   - Start registers a container's attachment before it starts the task,
//     and Adopt registers first and then looks at the task's status;
//   - the subscription counts only once containerd confirms it (a probe
//     event published on probeTopic comes back through it), and after a
//     resubscription (containerd restarted, the stream broke) every
//     attached container's task is looked at again (reconcileExits);
//   - a container's output copies end by themselves when the shim closes
//     the FIFOs (the process and whatever held its output exited), so the
//     event only bounds the wait for a process whose output a child still
//     holds open (drainAfterExit).
const (
	exitTopic  = "/tasks/exit"
	oomTopic   = "/tasks/oom"
	probeTopic = "/skiff/runtime/subscribed"
	// drainAfterExit is how long the output of an exited task is still
	// copied before the copy is cancelled.
	drainAfterExit = 2 * time.Second
	// copyStopTimeout bounds the wait for a cancelled copy (one stuck
	// writing to an attached client that does not read).
	copyStopTimeout = 10 * time.Second
)

// attachment is a container whose output this Runtime copies into its
// log. It ends (finish) when its copies end, by themselves or cancelled
// after the task exited or the Runtime detached.
type attachment struct {
	id  string
	sio *containerIO
	lw  *crilog.Writer

	mu         sync.Mutex
	tio        *taskIO
	registered bool // in Runtime.attached, counted in copiers
	copied     bool // the copies ended
	stopping   bool // a cancel is scheduled or done
	finished   bool
	timer      *time.Timer
}

// New connects to containerd and starts following task events.
func New(ctx context.Context, opts Options) (*Runtime, error) {
	if opts.Address == "" {
		opts.Address = DefaultAddress
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if opts.OnExit == nil {
		opts.OnExit = func(string) {}
	}
	if _, err := os.Stat(opts.Address); err != nil {
		return nil, fmt.Errorf("containerd socket: %w", err)
	}
	c, err := containerd.New(opts.Address, containerd.WithDefaultNamespace(Namespace), containerd.WithTimeout(5*time.Second))
	if err != nil {
		return nil, fmt.Errorf("connect containerd at %s: %w", opts.Address, err)
	}
	vctx, cancelV := context.WithTimeout(ctx, 5*time.Second)
	defer cancelV()
	if _, err := c.Version(vctx); err != nil {
		c.Close()
		return nil, fmt.Errorf("containerd at %s does not answer: %w", opts.Address, err)
	}
	evCtx, cancel := context.WithCancel(context.Background())
	r := &Runtime{client: c, log: opts.Logger.With("component", "runtime"), onExit: opts.OnExit, logRot: opts.LogRotation,
		node: opts.Node, runCtx: namespaces.WithNamespace(evCtx, Namespace),
		oom: map[string]bool{}, attached: map[string]*attachment{}, owned: map[string]struct{}{}, cancel: cancel}
	live := make(chan struct{})
	r.wg.Add(1)
	go r.followEvents(evCtx, live)
	// Exits are followed from here on: no container is started or
	// adopted before the subscription stands. If containerd does not
	// confirm it in time, the Runtime goes on: once it does, every
	// container attached meanwhile is looked at again.
	t := time.NewTimer(5 * time.Second)
	defer t.Stop()
	select {
	case <-live:
	case <-t.C:
		r.log.Warn("containerd did not confirm the event subscription in time; going on")
	}
	return r, nil
}

// Detach stops copying containers' output; containers keep running.
// Before Detach returns, every copy has stopped and every log file is
// closed (an unfinished line ends in a P record): output the containers
// write from then on waits in their FIFOs until the next Runtime's Adopt
// copies it. No copy of this Runtime competes with the next one's for the
// FIFOs or the log files. Containers started afterwards are not copied
// either. The output of a task that has exited is still drained (for up
// to drainAfterExit). Safe to call more than once.
func (r *Runtime) Detach() {
	r.mu.Lock()
	r.closed = true
	as := make([]*attachment, 0, len(r.attached))
	for _, a := range r.attached {
		as = append(as, a)
	}
	r.mu.Unlock()
	for _, a := range as {
		// Our ends of the FIFOs close: what the copy read is written
		// first; what it did not read stays in the pipe (the shim holds
		// it open) for the next Runtime.
		r.stopCopies(a, 0)
	}
	r.copiers.Wait()
}

// Close detaches (see Detach), stops following events and closes the
// connection. Containers keep running.
func (r *Runtime) Close() error {
	r.Detach()
	r.cancel()
	r.wg.Wait()
	return r.client.Close()
}

// Client is the underlying containerd client.
func (r *Runtime) Client() *containerd.Client { return r.client }

func (r *Runtime) ctx(ctx context.Context) context.Context {
	return namespaces.WithNamespace(ctx, Namespace)
}

// Version is containerd's version, as a node reports containerRuntimeVersion.
func (r *Runtime) Version(ctx context.Context) (string, error) {
	v, err := r.client.Version(r.ctx(ctx))
	if err != nil {
		return "", fmt.Errorf("containerd version: %w", err)
	}
	return "containerd://" + strings.SplitN(v.Version, "~", 2)[0], nil
}

// followEvents is the Runtime's one subscription to containerd's events:
// task exits and OOM kills of its namespace, and its own probe. live is
// closed once the first subscription is confirmed.
func (r *Runtime) followEvents(ctx context.Context, live chan<- struct{}) {
	defer r.wg.Done()
	first := true
	for ctx.Err() == nil {
		if r.subscribe(ctx, first, live) {
			first = false
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Second):
		}
	}
}

// subscribe follows one subscription until it ends, and reports whether
// containerd confirmed it. A confirmed resubscription reconciles the
// exits it may have missed.
func (r *Runtime) subscribe(ctx context.Context, first bool, live chan<- struct{}) (confirmed bool) {
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ns := `namespace=="` + Namespace + `",`
	evs, errs := r.client.Subscribe(sctx, ns+`topic=="`+exitTopic+`"`, ns+`topic=="`+oomTopic+`"`, ns+`topic=="`+probeTopic+`"`)
	var rnd [8]byte
	_, _ = rand.Read(rnd[:])
	token := "probe-" + hex.EncodeToString(rnd[:])
	probe := func() {
		pctx, cancel := context.WithTimeout(sctx, 5*time.Second)
		defer cancel()
		if err := r.client.EventService().Publish(pctx, probeTopic, &eventtypes.TaskExit{ContainerID: token}); err != nil && sctx.Err() == nil {
			r.log.Debug("publish the subscription probe", "err", err)
		}
	}
	// containerd may register the subscription after Subscribe
	// returned: a probe published before that is not seen, so it is
	// published again, more and more rarely, until one comes back.
	go probe()
	wait := 20 * time.Millisecond
	retry := time.NewTimer(wait)
	defer retry.Stop()
	for {
		select {
		case <-ctx.Done():
			return confirmed
		case <-retry.C:
			if !confirmed {
				go probe()
				wait = min(2*wait, 2*time.Second)
				retry.Reset(wait)
			}
		case err := <-errs:
			if err != nil && ctx.Err() == nil {
				r.log.Warn("containerd event stream ended", "err", err)
			}
			return confirmed
		case e := <-evs:
			if e == nil || e.Event == nil {
				continue
			}
			v, err := typeurl.UnmarshalAny(e.Event)
			if err != nil {
				continue
			}
			switch ev := v.(type) {
			case *eventtypes.TaskOOM:
				r.mu.Lock()
				if _, ok := r.owned[ev.ContainerID]; ok {
					r.oom[ev.ContainerID] = true
				}
				r.mu.Unlock()
			case *eventtypes.TaskExit:
				if e.Topic == probeTopic {
					if ev.ContainerID == token && !confirmed {
						confirmed = true
						retry.Stop()
						if first {
							close(live)
						}
						// Containers attached before (a resubscription,
						// or a Runtime that went on without waiting).
						r.reconcileExits(sctx)
					}
					continue
				}
				if ev.ID == ev.ContainerID && r.owns(ev.ContainerID) {
					r.taskExited(ev.ContainerID)
					r.onExit(ev.ContainerID)
				}
			}
		}
	}
}

// reconcileExits looks at the task of every attached container, after a
// resubscription: an exit while no subscription stood was not seen.
func (r *Runtime) reconcileExits(ctx context.Context) {
	r.mu.Lock()
	ids := make([]string, 0, len(r.attached))
	for id := range r.attached {
		ids = append(ids, id)
	}
	r.mu.Unlock()
	for _, id := range ids {
		if r.taskStopped(ctx, id) {
			r.log.Info("a task exited while containerd's events were not followed", "container", id)
			r.taskExited(id)
			r.onExit(id)
		}
	}
}

// own makes container id one whose exits and OOM kills this Runtime
// reports; owns tells whether it is.
func (r *Runtime) own(id string) {
	r.mu.Lock()
	r.owned[id] = struct{}{}
	r.mu.Unlock()
}

func (r *Runtime) owns(id string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	_, ok := r.owned[id]
	return ok
}

// taskStopped reports whether container id's task is known to have
// exited (or to be gone).
func (r *Runtime) taskStopped(ctx context.Context, id string) bool {
	resp, err := r.client.TaskService().Get(ctx, &tasks.GetRequest{ContainerID: id})
	if err != nil {
		return errdefs.IsNotFound(errgrpc.ToNative(err))
	}
	return resp.Process != nil && resp.Process.Status == tasktypes.Status_STOPPED
}

// NormalizeRef turns a pod's image (busybox, nginx:1.27, ...) into the
// fully qualified reference images are stored under.
func NormalizeRef(image string) (string, error) {
	named, err := reference.ParseDockerRef(image)
	if err != nil {
		return "", fmt.Errorf("invalid image reference %q: %w", image, err)
	}
	return named.String(), nil
}

// ImportFile imports a docker-archive or OCI tarball and unpacks its
// images for the overlayfs snapshotter. It returns the imported names.
func (r *Runtime) ImportFile(ctx context.Context, path string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("import: %w", err)
	}
	defer f.Close()
	return r.Import(ctx, f)
}

// Import imports a tarball stream (see ImportFile).
func (r *Runtime) Import(ctx context.Context, rd io.Reader) ([]string, error) {
	ctx = r.ctx(ctx)
	imgs, err := r.client.Import(ctx, rd, containerd.WithSkipDigestRef(func(string) bool { return true }))
	if err != nil {
		return nil, fmt.Errorf("import: %w", err)
	}
	var names []string
	for _, im := range imgs {
		img := containerd.NewImage(r.client, im)
		if err := img.Unpack(ctx, Snapshotter); err != nil {
			return names, fmt.Errorf("unpack %s: %w", im.Name, err)
		}
		names = append(names, im.Name)
	}
	return names, nil
}

// GetImage finds ref (normalised) in the local store.
func (r *Runtime) GetImage(ctx context.Context, ref string) (Image, error) {
	img, err := r.client.GetImage(r.ctx(ctx), ref)
	if errdefs.IsNotFound(err) {
		return Image{}, fmt.Errorf("%s: %w", ref, ErrImageNotFound)
	}
	if err != nil {
		return Image{}, fmt.Errorf("get image %s: %w", ref, err)
	}
	return Image{Ref: ref, ID: imageID(ref, img.Target().Digest.String())}, nil
}

func imageID(ref, digest string) string {
	named, err := reference.ParseNormalizedNamed(ref)
	if err != nil {
		return digest
	}
	return named.Name() + "@" + digest
}

// RemoveImage deletes an image from the store.
func (r *Runtime) RemoveImage(ctx context.Context, ref string) error {
	err := r.client.ImageService().Delete(r.ctx(ctx), ref)
	if err != nil && !errdefs.IsNotFound(err) {
		return fmt.Errorf("remove image %s: %w", ref, err)
	}
	return nil
}

// ContainerConfig describes a container to create.
type ContainerConfig struct {
	ID    string
	Image string // normalised reference present in the store
	// Command replaces the image's entrypoint and Args its cmd, with the
	// Kubernetes rules: Command set → Command+Args; Args only → image
	// entrypoint + Args; neither → the image's entrypoint + cmd.
	Command, Args []string
	Env           []string
	WorkingDir    string
	Hostname      string
	// NetNS is the pod network namespace to join (a path).
	NetNS  string
	Mounts []specs.Mount
	// Labels must include the pod identity labels and LabelLogPath.
	Labels         map[string]string
	Privileged     bool
	ReadOnlyRootfs bool
	// MemoryLimit in bytes (0 = none); CPUShares (0 = default).
	MemoryLimit int64
	CPUShares   uint64
	CPUQuota    int64
	// PidsLimit bounds the container's processes and threads (its pids
	// cgroup; 0 = none).
	PidsLimit int64
	UID, GID  *int64
	// Stdin keeps the main process's stdin open for attach; StdinOnce
	// closes it after the first attached client's stdin ends; TTY gives
	// the process a terminal (output is then logged as stdout).
	Stdin, StdinOnce, TTY bool
	// Security holds capabilities, no_new_privs and extra groups.
	Security *Security
}

// Create creates (does not start) a container.
func (r *Runtime) Create(ctx context.Context, cfg ContainerConfig) error {
	ctx = r.ctx(ctx)
	img, err := r.client.GetImage(ctx, cfg.Image)
	if errdefs.IsNotFound(err) {
		return fmt.Errorf("%s: %w", cfg.Image, ErrImageNotFound)
	}
	if err != nil {
		return fmt.Errorf("get image: %w", err)
	}
	if ok, err := img.IsUnpacked(ctx, Snapshotter); err == nil && !ok {
		if err := img.Unpack(ctx, Snapshotter); err != nil {
			return fmt.Errorf("unpack %s: %w", cfg.Image, err)
		}
	}
	ispec, err := img.Spec(ctx)
	if err != nil {
		return fmt.Errorf("image config: %w", err)
	}
	var argv []string
	switch {
	case len(cfg.Command) > 0:
		argv = append(append(argv, cfg.Command...), cfg.Args...)
	case len(cfg.Args) > 0:
		argv = append(append(argv, ispec.Config.Entrypoint...), cfg.Args...)
	default:
		argv = append(append(argv, ispec.Config.Entrypoint...), ispec.Config.Cmd...)
	}
	if len(argv) == 0 {
		return errors.New("no command specified")
	}
	opts := []oci.SpecOpts{
		oci.WithImageConfig(img),
		oci.WithProcessArgs(argv...),
		oci.WithEnv(cfg.Env),
		oci.WithMounts(cfg.Mounts),
	}
	if cfg.WorkingDir != "" {
		opts = append(opts, oci.WithProcessCwd(cfg.WorkingDir))
	}
	if cfg.Hostname != "" {
		opts = append(opts, oci.WithHostname(cfg.Hostname))
	}
	if cfg.NetNS != "" {
		opts = append(opts, oci.WithLinuxNamespace(specs.LinuxNamespace{Type: specs.NetworkNamespace, Path: cfg.NetNS}))
	}
	switch {
	case cfg.UID != nil && cfg.GID != nil:
		opts = append(opts, oci.WithUIDGID(uint32(*cfg.UID), uint32(*cfg.GID)))
	case cfg.UID != nil:
		// The primary group comes from the image's /etc/passwd (0 when
		// the user is not there), as containerd's CRI plugin does.
		opts = append(opts, oci.WithUserID(uint32(*cfg.UID)))
	case cfg.GID != nil:
		opts = append(opts, withGID(uint32(*cfg.GID)))
	}
	if cfg.Privileged {
		opts = append(opts, oci.WithPrivileged, oci.WithAllDevicesAllowed, oci.WithHostDevices)
	}
	if cfg.ReadOnlyRootfs {
		opts = append(opts, oci.WithRootFSReadonly())
	}
	opts = append(opts, securityOpts(cfg.Security, cfg.Privileged)...)
	if cfg.TTY {
		opts = append(opts, oci.WithTTY)
	}
	if cfg.MemoryLimit > 0 {
		opts = append(opts, oci.WithMemoryLimit(uint64(cfg.MemoryLimit)))
	}
	if cfg.PidsLimit > 0 {
		opts = append(opts, oci.WithPidsLimit(cfg.PidsLimit))
	}
	if cfg.CPUShares > 0 {
		opts = append(opts, oci.WithCPUShares(cfg.CPUShares))
	}
	if cfg.CPUQuota > 0 {
		opts = append(opts, oci.WithCPUCFS(cfg.CPUQuota, 100000))
	}
	labels := map[string]string{LabelImageRef: cfg.Image}
	for k, on := range map[string]bool{labelStdin: cfg.Stdin, labelStdinOnce: cfg.StdinOnce, labelTTY: cfg.TTY} {
		if on {
			labels[k] = "true"
		}
	}
	for k, v := range cfg.Labels {
		labels[k] = v
	}
	_, err = r.client.NewContainer(ctx, cfg.ID,
		containerd.WithImage(img),
		containerd.WithSnapshotter(Snapshotter),
		containerd.WithNewSnapshot(cfg.ID, img),
		containerd.WithRuntime(RuncRuntime, nil),
		containerd.WithContainerLabels(labels),
		containerd.WithImageStopSignal(img, "SIGTERM"),
		containerd.WithNewSpec(opts...),
	)
	if err != nil {
		return fmt.Errorf("create container %s: %w", cfg.ID, err)
	}
	return nil
}

// Start starts a created container: its output is appended to the CRI
// log file named by its LabelLogPath.
//
// A Start runs to its end once begun, whatever ctx: cancelled half way,
// it could leave containerd with a task created or started that nobody
// reads the output of (the container then blocks on a full pipe) and that
// the next Start could not create again. A task that an interrupted Start
// left created but not started (an agent killed half way) is deleted and
// made anew. Its context is never cancelled, not even when Start returns:
// the task's I/O is set up with it and must outlive the call.
func (r *Runtime) Start(ctx context.Context, id string) error {
	ctx = context.WithoutCancel(r.ctx(ctx))
	c, err := r.client.LoadContainer(ctx, id)
	if errdefs.IsNotFound(err) {
		return fmt.Errorf("%s: %w", id, ErrContainerNotFound)
	}
	if err != nil {
		return fmt.Errorf("load container %s: %w", id, err)
	}
	labels, err := c.Labels(ctx)
	if err != nil {
		return fmt.Errorf("labels of %s: %w", id, err)
	}
	lw, err := r.openLog(labels[LabelLogPath])
	if err != nil {
		return err
	}
	r.own(id) // before the task exists: its exit, however soon, is ours
	att := r.newAttachment(id, lw, labels)
	task, err := c.NewTask(ctx, att.stdio())
	if errdefs.IsAlreadyExists(err) && r.deleteUnstartedTask(ctx, c) {
		// Fresh streams: the failed attempt's copies may still hold the
		// first ones.
		att = r.newAttachment(id, lw, labels)
		task, err = c.NewTask(ctx, att.stdio())
	}
	if err != nil {
		lw.Close()
		return fmt.Errorf("create task %s: %w", id, err)
	}
	// The attachment is registered before the task starts, so that its
	// exit, however soon, finds it. The task of a failed start is deleted
	// whatever ctx (see Remove: a delete cancelled half way leaves the
	// shim running), killed first in case it was started; its copies are
	// then cancelled and the log closed.
	tio, _ := task.IO().(*taskIO)
	// Detached meanwhile, the Runtime copies nothing: the task still
	// starts, and its output waits in the FIFOs for the next Adopt.
	_ = r.register(att, tio)
	if err := task.Start(ctx); err != nil {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), removeTimeout)
		defer cancel()
		_, _ = task.Delete(dctx, containerd.WithProcessKill)
		r.stopCopies(att, 0)
		return fmt.Errorf("start task %s: %w", id, err)
	}
	if _, err := c.SetLabels(ctx, map[string]string{labelStartedAt: time.Now().UTC().Format(time.RFC3339Nano)}); err != nil {
		r.log.Warn("record start time", "container", id, "err", err)
	}
	return nil
}

// deleteUnstartedTask deletes c's task if it was created and never
// started (by a Start that did not finish), and reports whether it did.
// A task in any other state is left alone: it is the container's.
func (r *Runtime) deleteUnstartedTask(ctx context.Context, c containerd.Container) bool {
	task, err := c.Task(ctx, nil)
	if err != nil {
		return false
	}
	st, err := task.Status(ctx)
	if err != nil || st.Status != containerd.Created {
		return false
	}
	r.log.Info("deleting a task an earlier start left unstarted", "container", c.ID())
	if _, err := task.Delete(ctx, containerd.WithProcessKill); err != nil {
		r.log.Warn("delete unstarted task", "container", c.ID(), "err", err)
		return false
	}
	return true
}

// newAttachment makes the stdio of container id's task: output to lw
// (and attached clients), stdin from attached clients.
func (r *Runtime) newAttachment(id string, lw *crilog.Writer, labels map[string]string) *attachment {
	a := &attachment{id: id, lw: lw}
	a.sio = newContainerIO(r, id, lw, labels, r.log.With("container", id))
	return a
}

// stdio is the attachment's task stdio: when its output copies end, the
// attachment is finished.
func (a *attachment) stdio() cio.Creator {
	s := a.sio.stdio()
	s.ended = func() { a.copiesEnded() }
	return s.creator()
}

func (a *attachment) attachStdio() cio.Attach {
	s := a.sio.stdio()
	s.ended = func() { a.copiesEnded() }
	return s.attach()
}

// register makes a the copy of its container's output until the task
// exits or the Runtime detaches, and reports whether it did: a detached
// Runtime copies nothing (a's copies are stopped and its log closed).
func (r *Runtime) register(a *attachment, tio *taskIO) bool {
	a.mu.Lock()
	a.tio = tio
	a.mu.Unlock()
	r.mu.Lock()
	closed := r.closed
	if !closed {
		if old := r.attached[a.id]; old != nil && old != a {
			// Not expected (a container has one task): the old copy
			// is stopped, and finishing it leaves a registered.
			defer r.stopCopies(old, 0)
		}
		r.attached[a.id] = a
		r.copiers.Add(1)
	}
	r.mu.Unlock()
	a.mu.Lock()
	a.registered = true
	copied := a.copied
	a.mu.Unlock()
	if closed {
		r.stopCopies(a, 0)
		return false
	}
	if copied || tio == nil {
		r.finish(a)
	}
	return true
}

// copiesEnded is called by the last output copy of a's task to end.
func (a *attachment) copiesEnded() {
	a.mu.Lock()
	a.copied = true
	reg := a.registered
	r := a.sio.rt
	a.mu.Unlock()
	if reg {
		r.finish(a)
	}
}

// taskExited lets the output of container id's exited task be copied
// for up to drainAfterExit (until the shim closes the FIFOs, which ends
// the copies by itself), then cancels the copies.
func (r *Runtime) taskExited(id string) {
	r.mu.Lock()
	a := r.attached[id]
	r.mu.Unlock()
	if a != nil {
		r.stopCopies(a, drainAfterExit)
	}
}

// stopCopies cancels a's copies after the delay (at once when 0), unless
// a stop is already under way. A copy that does not stop within
// copyStopTimeout (stuck writing to an attached client that does not
// read) is given up on, so that Detach and Close cannot hang.
func (r *Runtime) stopCopies(a *attachment, after time.Duration) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.stopping || a.finished {
		return
	}
	a.stopping = true
	cancelNow := func() {
		a.mu.Lock()
		defer a.mu.Unlock()
		if a.finished {
			return
		}
		a.timer = time.AfterFunc(copyStopTimeout, func() {
			r.log.Warn("output copy did not stop", "container", a.id)
			r.finish(a)
		})
		if a.tio != nil {
			// Closing our ends of the FIFOs ends the reads; what a copy
			// read is written first.
			go a.tio.Cancel()
		}
	}
	if after <= 0 {
		a.mu.Unlock()
		cancelNow()
		a.mu.Lock()
		return
	}
	a.timer = time.AfterFunc(after, cancelNow)
}

// finish ends a: its log is closed, attach sessions end, and it leaves
// the Runtime. Once only.
func (r *Runtime) finish(a *attachment) {
	a.mu.Lock()
	if a.finished {
		a.mu.Unlock()
		return
	}
	a.finished = true
	if a.timer != nil {
		a.timer.Stop()
	}
	reg := a.registered
	a.mu.Unlock()
	a.lw.Close()
	a.sio.close()
	if !reg {
		return
	}
	r.mu.Lock()
	if r.attached[a.id] == a {
		delete(r.attached, a.id)
	}
	r.mu.Unlock()
	r.copiers.Done()
}

// Adopt re-attaches log copying to every running container of this node
// that this Runtime does not copy yet (after an agent restart). ctx bounds
// only the adoption itself: the copies last until the task exits or the
// Runtime detaches. Containers of other nodes (LabelNode) are left to
// their own agents.
func (r *Runtime) Adopt(ctx context.Context) error {
	ctx = r.ctx(ctx)
	cs, err := r.client.Containers(ctx)
	if err != nil {
		return fmt.Errorf("list containers: %w", err)
	}
	for _, c := range cs {
		r.mu.Lock()
		done := r.attached[c.ID()] != nil
		r.mu.Unlock()
		if done {
			continue
		}
		labels, err := c.Labels(ctx)
		if err != nil || labels[LabelLogPath] == "" {
			continue
		}
		if n := labels[LabelNode]; n != "" && n != r.node {
			continue // another agent's: it copies that output itself
		}
		if err := r.adopt(ctx, c, labels); err != nil {
			r.log.Warn("adopt container", "container", c.ID(), "err", err)
		}
	}
	return nil
}

func (r *Runtime) adopt(ctx context.Context, c containerd.Container, labels map[string]string) error {
	task, err := c.Task(ctx, nil)
	if errdefs.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("task: %w", err)
	}
	// Only a running task is attached: the FIFOs of an exited one hold
	// nothing any more (the shim closed its ends once the process ended).
	if st, err := task.Status(ctx); err != nil || st.Status != containerd.Running {
		return err
	}
	lw, err := r.openLog(labels[LabelLogPath])
	if err != nil {
		return err
	}
	r.own(c.ID())
	att := r.newAttachment(c.ID(), lw, labels)
	task, err = c.Task(ctx, att.attachStdio())
	if err != nil {
		lw.Close()
		return fmt.Errorf("attach: %w", err)
	}
	tio, _ := task.IO().(*taskIO)
	if !r.register(att, tio) {
		return nil
	}
	// An exit before the attachment was registered sent its event to no
	// one: look again now.
	if r.taskStopped(ctx, c.ID()) {
		r.taskExited(c.ID())
	}
	return nil
}

// Stop signals the container's task with SIGTERM, waits up to grace, then
// SIGKILLs it. A container that is not running is left as it is.
func (r *Runtime) Stop(ctx context.Context, id string, grace time.Duration) error {
	ctx = r.ctx(ctx)
	c, err := r.client.LoadContainer(ctx, id)
	if errdefs.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("load container %s: %w", id, err)
	}
	task, err := c.Task(ctx, nil)
	if errdefs.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("task of %s: %w", id, err)
	}
	st, err := task.Status(ctx)
	if err != nil {
		return fmt.Errorf("task status %s: %w", id, err)
	}
	if st.Status == containerd.Stopped {
		return nil
	}
	exitCh, err := task.Wait(ctx)
	if err != nil {
		return fmt.Errorf("wait task %s: %w", id, err)
	}
	if grace > 0 {
		// The image's STOPSIGNAL (recorded at create), else SIGTERM.
		sig, err := containerd.GetStopSignal(ctx, c, syscall.SIGTERM)
		if err != nil {
			sig = syscall.SIGTERM
		}
		if err := task.Kill(ctx, sig); err != nil && !errdefs.IsNotFound(err) {
			return fmt.Errorf("%v %s: %w", sig, id, err)
		}
		select {
		case <-exitCh:
			return nil
		case <-time.After(grace):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if err := task.Kill(ctx, syscall.SIGKILL, containerd.WithKillAll); err != nil && !errdefs.IsNotFound(err) {
		return fmt.Errorf("SIGKILL %s: %w", id, err)
	}
	select {
	case <-exitCh:
		return nil
	case <-time.After(10 * time.Second):
		return fmt.Errorf("container %s did not exit after SIGKILL", id)
	case <-ctx.Done():
		return ctx.Err()
	}
}

// removeTimeout bounds a removal once it has begun (see Remove).
const removeTimeout = time.Minute

// Remove kills what still runs and deletes the container, its task and
// its snapshot. Once begun, the removal runs to its end even when ctx
// ends meanwhile (within removeTimeout): a task delete cancelled half way
// (the agent stopping while it removes a pod's containers) leaves the
// shim with its container deleted while containerd, whose call was
// cancelled, never asks it to shut down. containerd then lists no such
// task, the container goes next, and the shim runs forever.
func (r *Runtime) Remove(ctx context.Context, id string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.ctx(ctx)), removeTimeout)
	defer cancel()
	c, err := r.client.LoadContainer(ctx, id)
	if errdefs.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("load container %s: %w", id, err)
	}
	if err := r.Stop(ctx, id, 0); err != nil {
		return err
	}
	// Only a task known to be gone lets the container go: deleting the
	// container while its task is merely unreachable (a busy shim timing
	// out) leaves the shim running with nothing left to stop it.
	task, err := c.Task(ctx, nil)
	switch {
	case err == nil:
		if _, err := task.Delete(ctx, containerd.WithProcessKill); err != nil && !errdefs.IsNotFound(err) {
			return fmt.Errorf("delete task %s: %w", id, err)
		}
	case !errdefs.IsNotFound(err):
		return fmt.Errorf("load task %s: %w", id, err)
	}
	// A task "not found" may still be containerd's: after a task delete
	// interrupted earlier (another Runtime's, an agent killed half way),
	// the shim has dropped the container, so containerd lists no task, yet
	// it still holds the shim, which waits for a shutdown. Deleting the
	// task once more through containerd has it shut that shim down (and
	// answers not found).
	if _, err := r.client.TaskService().Delete(ctx, &tasks.DeleteTaskRequest{ContainerID: id}); err != nil {
		if err := errgrpc.ToNative(err); !errdefs.IsNotFound(err) {
			return fmt.Errorf("delete task %s: %w", id, err)
		}
	}
	if err := c.Delete(ctx, containerd.WithSnapshotCleanup); err != nil && !errdefs.IsNotFound(err) {
		return fmt.Errorf("delete container %s: %w", id, err)
	}
	r.mu.Lock()
	delete(r.oom, id)
	delete(r.owned, id)
	r.mu.Unlock()
	return nil
}

// List returns every container in the namespace with its state.
func (r *Runtime) List(ctx context.Context) ([]Container, error) {
	return r.list(ctx)
}

// ListPod describes the containers labelled with pod UID uid. containerd
// filters them, so the cost is the pod's containers, not the node's
// (describing one takes three calls, one of them to its shim).
func (r *Runtime) ListPod(ctx context.Context, uid string) ([]Container, error) {
	return r.list(ctx, fmt.Sprintf("labels.%q==%q", LabelPodUID, uid))
}

func (r *Runtime) list(ctx context.Context, filters ...string) ([]Container, error) {
	ctx = r.ctx(ctx)
	cs, err := r.client.Containers(ctx, filters...)
	if err != nil {
		return nil, fmt.Errorf("list containers: %w", err)
	}
	out := make([]Container, 0, len(cs))
	for _, c := range cs {
		ct, err := r.describe(ctx, c)
		if errdefs.IsNotFound(err) {
			continue
		}
		if err != nil {
			return nil, err
		}
		out = append(out, ct)
	}
	return out, nil
}

// Get describes one container.
func (r *Runtime) Get(ctx context.Context, id string) (Container, error) {
	ctx = r.ctx(ctx)
	c, err := r.client.LoadContainer(ctx, id)
	if errdefs.IsNotFound(err) {
		return Container{}, fmt.Errorf("%s: %w", id, ErrContainerNotFound)
	}
	if err != nil {
		return Container{}, fmt.Errorf("load container %s: %w", id, err)
	}
	return r.describe(ctx, c)
}

func (r *Runtime) describe(ctx context.Context, c containerd.Container) (Container, error) {
	info, err := c.Info(ctx, containerd.WithoutRefreshedMetadata)
	if err != nil {
		return Container{}, err
	}
	ct := Container{ID: c.ID(), Labels: info.Labels, Image: info.Image, CreatedAt: info.CreatedAt, State: StateCreated}
	if ts := info.Labels[labelStartedAt]; ts != "" {
		ct.StartedAt, _ = time.Parse(time.RFC3339Nano, ts)
	}
	task, err := c.Task(ctx, nil)
	if errdefs.IsNotFound(err) {
		if !ct.StartedAt.IsZero() {
			ct.State = StateUnknown
		}
		return ct, nil
	}
	if err != nil {
		return Container{}, fmt.Errorf("task of %s: %w", c.ID(), err)
	}
	st, err := task.Status(ctx)
	if err != nil {
		return Container{}, fmt.Errorf("task status %s: %w", c.ID(), err)
	}
	ct.Pid = task.Pid()
	switch st.Status {
	case containerd.Running, containerd.Paused, containerd.Pausing:
		ct.State = StateRunning
	case containerd.Stopped:
		ct.State = StateExited
		ct.ExitCode = int32(st.ExitStatus)
		ct.FinishedAt = st.ExitTime
		r.mu.Lock()
		ct.OOMKilled = r.oom[c.ID()]
		r.mu.Unlock()
	case containerd.Created:
		ct.State = StateCreated
	default:
		ct.State = StateUnknown
	}
	return ct, nil
}

func (r *Runtime) openLog(path string) (*crilog.Writer, error) {
	if path == "" {
		return nil, errors.New("container has no log path label")
	}
	w, err := crilog.OpenRotating(path, r.logRot)
	if err != nil {
		return nil, err
	}
	return w, nil
}
