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
	// runCtx (namespaced) lives until Close: task waits belong to the
	// Runtime, not to the request that started the task.
	runCtx context.Context

	// detached is closed by Detach: copies stop.
	detached   chan struct{}
	detachOnce sync.Once

	mu       sync.Mutex
	closed   bool // detached: no new copies
	oom      map[string]bool
	attached map[string]bool
	stdio    map[string]*containerIO
	cancel   context.CancelFunc
	wg       sync.WaitGroup // followEvents
	copiers  sync.WaitGroup // watchIO
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
		node: opts.Node, runCtx: namespaces.WithNamespace(evCtx, Namespace), detached: make(chan struct{}),
		oom: map[string]bool{}, attached: map[string]bool{}, stdio: map[string]*containerIO{}, cancel: cancel}
	r.wg.Add(1)
	go r.followEvents(evCtx)
	return r, nil
}

// Detach stops copying containers' output; containers keep running.
// Before Detach returns, every copy has stopped and every log file is
// closed (an unfinished line ends in a P record): output the containers
// write from then on waits in their FIFOs until the next Runtime's Adopt
// copies it. No copy of this Runtime competes with the next one's for the
// FIFOs or the log files. Containers started afterwards are not copied
// either. Safe to call more than once.
func (r *Runtime) Detach() {
	r.mu.Lock()
	r.closed = true
	r.mu.Unlock()
	r.detachOnce.Do(func() { close(r.detached) })
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

func (r *Runtime) followEvents(ctx context.Context) {
	defer r.wg.Done()
	for ctx.Err() == nil {
		evs, errs := r.client.Subscribe(ctx, `namespace=="`+Namespace+`",topic~="/tasks/"`)
	loop:
		for {
			select {
			case <-ctx.Done():
				return
			case err := <-errs:
				if err != nil && ctx.Err() == nil {
					r.log.Warn("containerd event stream ended", "err", err)
				}
				break loop
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
					r.oom[ev.ContainerID] = true
					r.mu.Unlock()
				case *eventtypes.TaskExit:
					if ev.ID == ev.ContainerID {
						r.onExit(ev.ContainerID)
					}
				}
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Second):
		}
	}
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
	sio := newContainerIO(r.runCtx, lw, labels, r.log.With("container", id))
	task, err := c.NewTask(ctx, sio.stdio().creator())
	if errdefs.IsAlreadyExists(err) && r.deleteUnstartedTask(ctx, c) {
		// Fresh streams: the failed attempt's copies may still hold the
		// first ones.
		sio = newContainerIO(r.runCtx, lw, labels, r.log.With("container", id))
		task, err = c.NewTask(ctx, sio.stdio().creator())
	}
	if err != nil {
		lw.Close()
		return fmt.Errorf("create task %s: %w", id, err)
	}
	// The wait belongs to the Runtime: ending ctx (the caller's request)
	// must not look like the task's exit.
	// The task of a failed start is deleted whatever ctx (see Remove: a
	// delete cancelled half way leaves the shim running), killed first in
	// case it was started.
	undo := func() {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), removeTimeout)
		defer cancel()
		_, _ = task.Delete(dctx, containerd.WithProcessKill)
		lw.Close()
	}
	exitCh, err := task.Wait(r.runCtx)
	if err != nil {
		undo()
		return fmt.Errorf("wait task %s: %w", id, err)
	}
	if err := task.Start(ctx); err != nil {
		undo()
		return fmt.Errorf("start task %s: %w", id, err)
	}
	if _, err := c.SetLabels(ctx, map[string]string{labelStartedAt: time.Now().UTC().Format(time.RFC3339Nano)}); err != nil {
		r.log.Warn("record start time", "container", id, "err", err)
	}
	sio.task = task
	r.watchIO(id, task, exitCh, lw, sio)
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

// watchIO copies the task's output to its log until the task exits (then
// the rest of its output is drained and the log closed) or the Runtime
// detaches (then the copy stops, leaving unread output in the FIFOs for
// the next Runtime's Adopt, and the log is closed).
func (r *Runtime) watchIO(id string, task containerd.Task, exitCh <-chan containerd.ExitStatus, lw *crilog.Writer, sio *containerIO) {
	tio := task.IO()
	r.mu.Lock()
	closed := r.closed
	if !closed {
		r.attached[id] = true
		r.stdio[id] = sio
		r.copiers.Add(1)
	}
	r.mu.Unlock()
	if closed {
		r.stopCopy(id, tio, 0)
		lw.Close()
		sio.close()
		return
	}
	go func() {
		defer r.copiers.Done()
		if r.waitExit(id, task, exitCh) {
			// The rest of the output, until the shim closes the FIFOs.
			r.stopCopy(id, tio, 2*time.Second)
		} else {
			// Detach: close our ends of the FIFOs. What the copy read is
			// written first; what it did not read stays in the pipe (the
			// shim holds it open) for the next Runtime.
			r.stopCopy(id, tio, 0)
		}
		lw.Close()
		sio.close()
		r.mu.Lock()
		delete(r.attached, id)
		if r.stdio[id] == sio {
			delete(r.stdio, id)
		}
		r.mu.Unlock()
	}()
}

// stopCopy lets the copy from the task's FIFOs run for up to drain, then
// cancels it and waits for it to end (its last read written out). A copy
// stuck in a write (an attached client that does not read) is given up on
// after a while, so that Close cannot hang.
func (r *Runtime) stopCopy(id string, tio cio.IO, drain time.Duration) {
	done := make(chan struct{})
	go func() { tio.Wait(); close(done) }()
	if drain > 0 {
		select {
		case <-done:
			return
		case <-time.After(drain):
		}
	}
	tio.Cancel()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		r.log.Warn("output copy did not stop", "container", id)
	}
}

// waitExit reports true once the task has exited, false once the Runtime
// detaches first. A wait that fails without an exit (containerd restarting,
// the connection lost) is retried: only a real exit ends the copy.
func (r *Runtime) waitExit(id string, task containerd.Task, exitCh <-chan containerd.ExitStatus) bool {
	for {
		var st containerd.ExitStatus
		select {
		case <-r.detached:
			select {
			case st = <-exitCh: // an exit that came with Detach is drained
				return st.Error() == nil
			default:
				return false
			}
		case st = <-exitCh:
		}
		if st.Error() == nil {
			return true
		}
		select {
		case <-r.detached:
			return false
		default:
		}
		r.log.Warn("waiting for a task failed; waiting again", "container", id, "err", st.Error())
		select {
		case <-r.detached:
			return false
		case <-time.After(time.Second):
		}
		s, err := task.Status(r.runCtx)
		if errdefs.IsNotFound(err) || err == nil && s.Status == containerd.Stopped {
			return true
		}
		ch, err := task.Wait(r.runCtx)
		if err != nil {
			failed := make(chan containerd.ExitStatus, 1)
			failed <- *containerd.NewExitStatus(containerd.UnknownExitStatus, time.Time{}, err)
			ch = failed
		}
		exitCh = ch
	}
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
		done := r.attached[c.ID()]
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
	sio := newContainerIO(r.runCtx, lw, labels, r.log.With("container", c.ID()))
	task, err = c.Task(ctx, sio.stdio().attach())
	if err != nil {
		lw.Close()
		return fmt.Errorf("attach: %w", err)
	}
	exitCh, err := task.Wait(r.runCtx)
	if err != nil {
		if tio := task.IO(); tio != nil {
			tio.Cancel()
			tio.Wait()
		}
		lw.Close()
		return fmt.Errorf("wait: %w", err)
	}
	sio.task = task
	r.watchIO(c.ID(), task, exitCh, lw, sio)
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
