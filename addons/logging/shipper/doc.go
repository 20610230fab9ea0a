// Package shipper is the log shipper that runs in every node agent: it
// tails the CRI log files the agent writes under its pod log folder
// (rotation-safe, by inode), reassembles partial (P/F) records, adds the
// pod's Kubernetes metadata (Fluent Bit's kubernetes.* names), lifts JSON
// bodies into fields and ships the records through go-elasticsearch's bulk
// indexer with create actions and deterministic document IDs to an
// Elasticsearch-compatible sink (the embedded store at <server>/logs by
// default).
//
// Delivery is at least once: a file's offset is checkpointed only after
// every record up to it was acknowledged (201, or 409 for a document the
// sink already has), so a killed agent re-ships from its last checkpoint
// and the sink drops the duplicates by ID. When the sink is down the
// shipper stops reading: the log files are the buffer, and rotation keeps
// files the shipper has not finished up to a hard limit (crilog.Retainer);
// what that limit forces out is counted in skiff_logs_dropped_lines_total
// and reported as a LogsDropped event, never dropped silently.
package shipper
