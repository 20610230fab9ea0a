package server

import (
	"context"
	"fmt"
	"path/filepath"
	"time"

	"github.com/robfig/cron/v3"
	"github.com/skiffhq/skiff/controlplane/etcdclient"
	"github.com/skiffhq/skiff/controlplane/etcdsnapshot"
)

// ScheduledSnapshotPrefix names the server's scheduled snapshots (as k3s).
const ScheduledSnapshotPrefix = "etcd-snapshot"

// recordDatastore writes <data-dir>/db/etcd-client.json so that
// `skiff etcd-snapshot` and `skiff migrate` find this server's etcd.
func (s *Server) recordDatastore(endpoints []string) error {
	info := etcdclient.Info{Endpoints: endpoints, Embedded: s.etcd != nil}
	if s.etcd == nil {
		info.CAFile, info.CertFile, info.KeyFile = s.cfg.DatastoreCAFile, s.cfg.DatastoreCertFile, s.cfg.DatastoreKeyFile
	} else {
		info.CAFile, info.CertFile, info.KeyFile = s.etcdClientFiles.CAFile, s.etcdClientFiles.CertFile, s.etcdClientFiles.KeyFile
	}
	if err := etcdclient.Write(s.cfg.DataDir, info); err != nil {
		return fmt.Errorf("record datastore endpoints: %w", err)
	}
	return nil
}

// snapshotDir is --etcd-snapshot-dir or <data-dir>/snapshots.
func (s *Server) snapshotDir() string {
	if s.cfg.EtcdSnapshotDir != "" {
		return s.cfg.EtcdSnapshotDir
	}
	return filepath.Join(s.cfg.DataDir, etcdsnapshot.DefaultDir)
}

// startSnapshots takes etcd snapshots on --etcd-snapshot-schedule-cron and
// keeps the --etcd-snapshot-retention newest scheduled ones. An empty
// schedule (the zero Config, as in tests) takes none.
func (s *Server) startSnapshots(ctx context.Context) error {
	if s.cfg.EtcdSnapshotScheduleCron == "" || s.disabled("etcd-snapshot") {
		return nil
	}
	sched, err := cron.ParseStandard(s.cfg.EtcdSnapshotScheduleCron)
	if err != nil {
		return fmt.Errorf("--etcd-snapshot-schedule-cron: %w", err)
	}
	keep := s.cfg.EtcdSnapshotRetention
	if keep <= 0 {
		keep = 5
	}
	log := s.log.With("component", "etcd-snapshot")
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			next := sched.Next(time.Now())
			t := time.NewTimer(time.Until(next))
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
			sctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
			snap, err := etcdsnapshot.Save(sctx, s.etcdCli, s.cfg.DataDir, s.snapshotDir(), ScheduledSnapshotPrefix, time.Now())
			cancel()
			if err != nil {
				log.Error("scheduled snapshot failed", "err", err)
				continue
			}
			log.Info("saved scheduled snapshot", "path", snap.Path, "bytes", snap.Size)
			deleted, err := etcdsnapshot.Prune(s.snapshotDir(), ScheduledSnapshotPrefix, keep)
			for _, d := range deleted {
				log.Info("removed old snapshot", "path", d.Path)
			}
			if err != nil {
				log.Error("prune snapshots", "err", err)
			}
		}
	}()
	log.Info("scheduled snapshots", "cron", s.cfg.EtcdSnapshotScheduleCron, "retention", keep, "dir", s.snapshotDir())
	return nil
}
