package chaos

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// seqKey is the ConfigMap data key that holds a write's sequence number.
const seqKey = "seq"

// APILoad writes ConfigMaps in one namespace: each worker owns Keys keys
// and creates, updates and deletes them at random, recording every answer
// in the ledger.
type APILoad struct {
	Client    kubernetes.Interface
	Namespace string
	Workers   int
	Keys      int // per worker
	Ledger    *Ledger
	// Retry is how long a worker waits between attempts to read a key
	// back while the server is down.
	Retry time.Duration

	seq atomic.Int64
}

func (a *APILoad) key(w, i int) string { return fmt.Sprintf("chaos-%d-%d", w, i) }

// Run drives the load until ctx ends.
func (a *APILoad) Run(ctx context.Context) {
	done := make(chan struct{}, a.Workers)
	for w := range a.Workers {
		go func() {
			defer func() { done <- struct{}{} }()
			a.worker(ctx, w)
		}()
	}
	for range a.Workers {
		<-done
	}
}

func (a *APILoad) worker(ctx context.Context, w int) {
	rng := rand.New(rand.NewPCG(uint64(w), uint64(time.Now().UnixNano())))
	for ctx.Err() == nil {
		key := a.key(w, rng.IntN(a.Keys))
		if _, pending := a.Ledger.Acked(key); pending {
			a.resolve(ctx, key)
			continue
		}
		a.write(ctx, key, rng)
	}
}

// write does one create, update or delete of key, chosen from its state.
func (a *APILoad) write(ctx context.Context, key string, rng *rand.Rand) {
	cur, _ := a.Ledger.Acked(key)
	seq := a.seq.Add(1)
	cms := a.Client.CoreV1().ConfigMaps(a.Namespace)
	rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	var op Op
	var err error
	var got *corev1.ConfigMap
	switch {
	case !cur.Present:
		op = Op{Kind: "create", Want: State{Present: true, Seq: seq}}
		got, err = cms.Create(rctx, configMap(key, seq, ""), metav1.CreateOptions{})
	case rng.IntN(4) == 0:
		op = Op{Kind: "delete", Want: State{}}
		err = cms.Delete(rctx, key, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{ResourceVersion: &cur.RV}})
	default:
		op = Op{Kind: "update", Want: State{Present: true, Seq: seq}}
		got, err = cms.Update(rctx, configMap(key, seq, cur.RV), metav1.UpdateOptions{})
	}
	switch {
	case err == nil:
		s := op.Want
		if got != nil {
			s.RV = got.ResourceVersion
		}
		a.Ledger.Ack(key, s)
	case ctx.Err() != nil && errors.Is(err, context.Canceled):
		// The run ended under the write: its outcome is unknown.
		a.Ledger.Unknown(key, op)
	case definite(err):
		// The server answered no. With one writer per key, a conflict or
		// an existing/missing object means the ledger and the server
		// disagree.
		if apierrors.IsConflict(err) || apierrors.IsAlreadyExists(err) || apierrors.IsNotFound(err) {
			a.Ledger.Violation("%s %s: %v (the ledger says %s)", op.Kind, key, err, cur)
			a.Ledger.Unknown(key, op) // read it back to resync
		}
	default:
		a.Ledger.Unknown(key, op)
	}
}

// definite reports whether err is an answer from a working server (the
// write surely did not happen) rather than a lost connection, a timeout
// or a server that was going down.
func definite(err error) bool {
	var st apierrors.APIStatus
	if !errors.As(err, &st) {
		return false
	}
	code := st.Status().Code
	return code >= 400 && code < 500 && code != 408 && code != 429
}

// resolve reads key back until the server answers and settles the ledger.
func (a *APILoad) resolve(ctx context.Context, key string) {
	for ctx.Err() == nil {
		s, err := a.read(ctx, key)
		if err == nil {
			a.Ledger.Resolve(key, s)
			return
		}
		select {
		case <-ctx.Done():
		case <-time.After(a.Retry):
		}
	}
}

func (a *APILoad) read(ctx context.Context, key string) (State, error) {
	rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	cm, err := a.Client.CoreV1().ConfigMaps(a.Namespace).Get(rctx, key, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return State{}, nil
	}
	if err != nil {
		return State{}, err
	}
	return stateOf(cm)
}

func stateOf(cm *corev1.ConfigMap) (State, error) {
	n, err := strconv.ParseInt(cm.Data[seqKey], 10, 64)
	if err != nil {
		return State{}, fmt.Errorf("%s: bad %s %q", cm.Name, seqKey, cm.Data[seqKey])
	}
	return State{Present: true, Seq: n, RV: cm.ResourceVersion}, nil
}

func configMap(name string, seq int64, rv string) *corev1.ConfigMap {
	return &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: name, ResourceVersion: rv, Labels: map[string]string{"chaos.skiff.io/load": "api"}},
		Data:       map[string]string{seqKey: strconv.FormatInt(seq, 10)},
	}
}

// Verify lists the namespace once the server answers and checks every key
// against the ledger: each acknowledged state present (or absent when the
// last acknowledged write was a delete), no ConfigMap the load never
// wrote. Pending writes are settled by what the server holds.
func (a *APILoad) Verify(ctx context.Context) error {
	var list *corev1.ConfigMapList
	var err error
	for {
		rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		list, err = a.Client.CoreV1().ConfigMaps(a.Namespace).List(rctx, metav1.ListOptions{LabelSelector: "chaos.skiff.io/load=api"})
		cancel()
		if err == nil {
			break
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("list for verification: %w", err)
		case <-time.After(a.Retry):
		}
	}
	onServer := map[string]State{}
	for i := range list.Items {
		s, err := stateOf(&list.Items[i])
		if err != nil {
			a.Ledger.Violation("%v", err)
			continue
		}
		onServer[list.Items[i].Name] = s
	}
	known := map[string]bool{}
	for _, k := range a.Ledger.Keys() {
		known[k] = true
		a.Ledger.Resolve(k, onServer[k])
	}
	for k := range onServer {
		if !known[k] {
			a.Ledger.Violation("%s exists on the server but the load never wrote it", k)
		}
	}
	return nil
}
