package agent

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
)

// Image garbage collection defaults, as the kubelet's.
const (
	DefaultImageGCHighThresholdPercent = 85
	DefaultImageGCLowThresholdPercent  = 80
	DefaultImageMinimumGCAge           = 2 * time.Minute
	DefaultImageGCPeriod               = 5 * time.Minute
)

// ImageGCPolicy is the kubelet's image garbage collection policy
// (--image-gc-high-threshold, --image-gc-low-threshold,
// --image-minimum-gc-age): when the image filesystem's usage reaches
// HighThresholdPercent, unused images that are not pinned and were first
// seen at least MinAge ago are deleted, least recently used first, until
// the usage would be below LowThresholdPercent.
type ImageGCPolicy struct {
	// HighThresholdPercent (default 85; 100 disables image GC) and
	// LowThresholdPercent (default 80) are percents of the image
	// filesystem's capacity.
	HighThresholdPercent, LowThresholdPercent int
	// MinAge is how long an image must have been known unused before it
	// may be deleted (default 2m).
	MinAge time.Duration
	// Period is how often usage is checked (default 5m, the kubelet's
	// ImageGCPeriod).
	Period time.Duration
	// FsUsage reads the image filesystem's capacity and available bytes.
	// Default: statfs of containerd's root (/var/lib/containerd).
	FsUsage func(ctx context.Context) (capacity, available uint64, err error)
}

func (p *ImageGCPolicy) defaults() error {
	if p.HighThresholdPercent == 0 {
		p.HighThresholdPercent = DefaultImageGCHighThresholdPercent
	}
	if p.LowThresholdPercent == 0 {
		p.LowThresholdPercent = DefaultImageGCLowThresholdPercent
	}
	if p.MinAge == 0 {
		p.MinAge = DefaultImageMinimumGCAge
	}
	if p.Period <= 0 {
		p.Period = DefaultImageGCPeriod
	}
	if p.FsUsage == nil {
		p.FsUsage = statfsUsage(containerdRoot)
	}
	switch {
	case p.HighThresholdPercent < 0 || p.HighThresholdPercent > 100:
		return fmt.Errorf("agent: image GC high threshold %d%% is not in [0, 100]", p.HighThresholdPercent)
	case p.LowThresholdPercent < 0 || p.LowThresholdPercent > 100:
		return fmt.Errorf("agent: image GC low threshold %d%% is not in [0, 100]", p.LowThresholdPercent)
	case p.LowThresholdPercent > p.HighThresholdPercent:
		return fmt.Errorf("agent: image GC low threshold %d%% is above the high threshold %d%%", p.LowThresholdPercent, p.HighThresholdPercent)
	case p.MinAge < 0:
		return fmt.Errorf("agent: image minimum GC age %v is negative", p.MinAge)
	}
	return nil
}

func statfsUsage(path string) func(context.Context) (uint64, uint64, error) {
	return func(context.Context) (uint64, uint64, error) {
		var st syscall.Statfs_t
		if err := syscall.Statfs(path, &st); err != nil {
			return 0, 0, fmt.Errorf("statfs %s: %w", path, err)
		}
		return st.Blocks * uint64(st.Bsize), st.Bavail * uint64(st.Bsize), nil
	}
}

// imageRecord is what the agent knows about one image (its digest).
type imageRecord struct {
	refs          []string
	size          int64
	pinned        bool
	firstDetected time.Time
	lastUsed      time.Time // zero: never seen in use
}

// imageGC tracks the images of the store (first seen, last used) and
// deletes unused ones when the image filesystem fills up.
type imageGC struct {
	policy ImageGCPolicy

	gcMu    sync.Mutex // one collection at a time
	mu      sync.Mutex
	records map[string]*imageRecord // by digest
	total   int64                   // bytes of all images at the last detection
	failed  bool                    // the last collection failed
}

func newImageGC(p ImageGCPolicy) *imageGC {
	return &imageGC{policy: p, records: map[string]*imageRecord{}}
}

// detectImages lists the store's images and the containers' images and
// updates the records: an image in use now is last used now; an image
// seen for the first time is first detected now. It returns the digests
// in use.
func (a *Agent) detectImages(ctx context.Context, now time.Time) (map[string]bool, error) {
	g := a.imageGC
	imgs, err := a.rt.ListImages(ctx)
	if err != nil {
		return nil, err
	}
	usedRefs, err := a.rt.ImagesInUse(ctx)
	if err != nil {
		return nil, err
	}
	byDigest := map[string]*imageRecord{}
	inUse := map[string]bool{}
	var total int64
	for _, im := range imgs {
		r := byDigest[im.Digest]
		if r == nil {
			r = &imageRecord{size: im.Size}
			byDigest[im.Digest] = r
			total += im.Size
		}
		r.refs = append(r.refs, im.Ref)
		r.pinned = r.pinned || im.Pinned
		if usedRefs[im.Ref] {
			inUse[im.Digest] = true
		}
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	for d, r := range byDigest {
		if old := g.records[d]; old != nil {
			r.firstDetected, r.lastUsed = old.firstDetected, old.lastUsed
		} else {
			r.firstDetected = now
		}
		if inUse[d] {
			r.lastUsed = now
		}
	}
	g.records, g.total = byDigest, total
	return inUse, nil
}

// imagesBytes is the content size of every image at the last detection
// (-1 before the first).
func (g *imageGC) imagesBytes() int64 {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.records == nil {
		return -1
	}
	return g.total
}

// gcCandidate is an image that may be deleted.
type gcCandidate struct {
	digest string
	imageRecord
}

// sortCandidates orders images as the kubelet does: least recently used
// first, then the earliest detected.
func sortCandidates(cs []gcCandidate) {
	sort.SliceStable(cs, func(i, j int) bool {
		if !cs[i].lastUsed.Equal(cs[j].lastUsed) {
			return cs[i].lastUsed.Before(cs[j].lastUsed)
		}
		return cs[i].firstDetected.Before(cs[j].firstDetected)
	})
}

// errFreeDiskSpace is a collection that could not free enough.
var errFreeDiskSpace = errors.New("failed to garbage collect required amount of images")

// GarbageCollectImages runs one image garbage collection now (the agent
// also runs it every ImageGCPolicy.Period): when the image filesystem's
// usage is at or above the high threshold, unused, unpinned images older
// than the minimum age are deleted, least recently used first, until the
// usage would be below the low threshold. Not freeing enough is an error
// and a FreeDiskSpaceFailed event on the Node, as upstream.
func (a *Agent) GarbageCollectImages(ctx context.Context) error {
	g := a.imageGC
	g.gcMu.Lock()
	defer g.gcMu.Unlock()
	p := g.policy
	now := time.Now()
	inUse, err := a.detectImages(ctx, now)
	if err != nil {
		return fmt.Errorf("image gc: detect images: %w", err)
	}
	if p.HighThresholdPercent >= 100 {
		return nil
	}
	capacity, available, err := p.FsUsage(ctx)
	if err != nil {
		return fmt.Errorf("image gc: image filesystem usage: %w", err)
	}
	if capacity == 0 {
		return errors.New("image gc: image filesystem has zero capacity")
	}
	if available > capacity {
		available = capacity
	}
	usagePercent := 100 - int(available*100/capacity)
	if usagePercent < p.HighThresholdPercent {
		return nil
	}
	amountToFree := int64(capacity)*int64(100-p.LowThresholdPercent)/100 - int64(available)
	a.log.Info("image filesystem usage is over the high threshold, trying to free bytes down to the low threshold",
		"usage", usagePercent, "highThreshold", p.HighThresholdPercent, "amountToFree", amountToFree, "lowThreshold", p.LowThresholdPercent)
	freed, err := a.freeImageSpace(ctx, amountToFree, inUse, now)
	if err != nil {
		return err
	}
	if freed < amountToFree {
		err := fmt.Errorf("%w: attempted to free %d bytes, but only found %d bytes eligible to free", errFreeDiskSpace, amountToFree, freed)
		a.nodeEvent(corev1.EventTypeWarning, "FreeDiskSpaceFailed",
			"Failed to garbage collect required amount of images. Attempted to free %d bytes, but only found %d bytes eligible to free.", amountToFree, freed)
		return err
	}
	return nil
}

// freeImageSpace deletes eligible images until bytesToFree are freed.
func (a *Agent) freeImageSpace(ctx context.Context, bytesToFree int64, inUse map[string]bool, now time.Time) (int64, error) {
	g := a.imageGC
	g.mu.Lock()
	var cands []gcCandidate
	for d, r := range g.records {
		if inUse[d] || r.pinned {
			continue
		}
		cands = append(cands, gcCandidate{digest: d, imageRecord: *r})
	}
	g.mu.Unlock()
	sortCandidates(cands)
	var freed int64
	var errs []error
	for _, c := range cands {
		if freed >= bytesToFree {
			break
		}
		if age := now.Sub(c.firstDetected); age < g.policy.MinAge {
			a.log.Debug("image gc: image is younger than the minimum GC age", "image", c.refs, "age", age, "minAge", g.policy.MinAge)
			continue
		}
		a.log.Info("image gc: removing image to free bytes", "image", c.refs, "digest", c.digest, "size", c.size, "lastUsed", c.lastUsed)
		var err error
		for _, ref := range c.refs {
			if err = a.rt.DeleteImage(ctx, ref); err != nil {
				break
			}
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		g.mu.Lock()
		delete(g.records, c.digest)
		g.total -= c.size
		g.mu.Unlock()
		freed += c.size
	}
	if len(errs) > 0 {
		return freed, fmt.Errorf("image gc: wanted to free %d bytes, but freed %d bytes space with errors in image deletion: %w", bytesToFree, freed, errors.Join(errs...))
	}
	return freed, nil
}

// imageGCLoop detects the images at start and collects every period. A
// failure is logged; two in a row also give an ImageGCFailed event on the
// Node, as upstream.
func (a *Agent) imageGCLoop(ctx context.Context) {
	if _, err := a.detectImages(ctx, time.Now()); err != nil && ctx.Err() == nil {
		a.log.Warn("image gc: detect images", "err", err)
	}
	t := time.NewTicker(a.imageGC.policy.Period)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		err := a.GarbageCollectImages(ctx)
		if ctx.Err() != nil {
			return
		}
		g := a.imageGC
		if err != nil {
			if g.failed {
				a.log.Error("image garbage collection failed multiple times in a row", "err", err)
				a.nodeEvent(corev1.EventTypeWarning, "ImageGCFailed", "%s", err.Error())
			} else {
				a.log.Warn("image garbage collection failed once; stats initialization may not have completed yet", "err", err)
			}
		}
		g.failed = err != nil
	}
}

// nodeEvent records an event on this node's Node (upstream's node
// reference: kind Node, uid = name).
func (a *Agent) nodeEvent(typ, reason, msgFmt string, args ...any) {
	if a.rec == nil {
		return
	}
	ref := &corev1.ObjectReference{Kind: "Node", Name: a.opts.NodeName, UID: types.UID(a.opts.NodeName)}
	a.rec.Eventf(ref, typ, reason, msgFmt, args...)
}
