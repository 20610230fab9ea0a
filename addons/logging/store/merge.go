package store

import "sort"

// Merge combines the results of one search run on several stores (the
// servers of an HA cluster, each holding the logs its agents shipped to
// it) into the answer one store holding every document would give, as
// Elasticsearch reduces shard results:
//   - totals are summed; past the request's tracking limit the total is
//     the limit and inexact;
//   - hits are ordered by their sort values (stable: ties keep the order
//     of results, so the caller lists the stores in a fixed order), or
//     concatenated when the request is not sorted (every score is 1), and
//     the page [From, From+Size) is cut from them;
//   - aggregations are reduced bucket by bucket with the single-store
//     rules: date histograms summed per key and their empty buckets filled,
//     terms summed per key, ordered by count and cut to size with the rest
//     in sum_other_doc_count, sub-aggregations merged within their bucket.
//
// Each result must have been searched with From 0 and Size From+Size of
// req, so that every hit of the merged page is among them. Buckets under a
// min_doc_count > 0 on every store alone are missing from the merge, as
// Elasticsearch's with its shard_min_doc_count.
func Merge(req SearchRequest, results []*SearchResult) *SearchResult {
	out := &SearchResult{TotalExact: true}
	type ranked struct {
		h   Hit
		src int
	}
	var hits []ranked
	for i, r := range results {
		if r == nil {
			continue
		}
		out.Total += r.Total
		out.TotalExact = out.TotalExact && r.TotalExact
		for _, h := range r.Hits {
			hits = append(hits, ranked{h, i})
		}
	}
	if track := req.TrackTotalHits; track >= 0 {
		if track == 0 {
			track = 10000
		}
		if out.Total > int64(track) {
			out.Total, out.TotalExact = int64(track), false
		}
	}
	if n := len(req.Sort); n > 0 {
		desc := make([]bool, n)
		for i, f := range req.Sort {
			desc[i] = f.Desc
		}
		sort.SliceStable(hits, func(i, j int) bool {
			a, b := hits[i].h.Sort, hits[j].h.Sort
			if len(a) < n || len(b) < n {
				return len(a) > len(b) // hits without sort values last
			}
			return compareKeys(a[:n], b[:n], desc) < 0
		})
	}
	from := min(req.From, len(hits))
	end := min(from+max(req.Size, 0), len(hits))
	for _, r := range hits[from:end] {
		out.Hits = append(out.Hits, r.h)
	}
	aggs := newAggregators(req.Aggs)
	for _, r := range results {
		if r == nil {
			continue
		}
		mergeAggs(aggs, r.Aggs)
	}
	for _, a := range aggs {
		out.Aggs = append(out.Aggs, a.result())
	}
	return out
}

// mergeAggs adds results (in request order, as a store answers them) into
// the aggregators made for the same requests.
func mergeAggs(aggs []aggregator, results []AggResult) {
	for i, a := range aggs {
		if i >= len(results) {
			return
		}
		r := results[i]
		switch a := a.(type) {
		case *dateAgg:
			for _, b := range r.Buckets {
				ab := a.buckets[b.Key*1e6]
				if ab == nil {
					ab = &aggBucket{sub: newAggregators(a.req.Aggs)}
					a.buckets[b.Key*1e6] = ab
				}
				ab.count += b.Count
				mergeAggs(ab.sub, b.Aggs)
			}
		case *termsAgg:
			a.other += r.SumOther
			for _, b := range r.Buckets {
				ab := a.buckets[b.KeyString]
				if ab == nil {
					ab = &aggBucket{raw: b.KeyRaw, sub: newAggregators(a.req.Aggs)}
					a.buckets[b.KeyString] = ab
				}
				ab.count += b.Count
				mergeAggs(ab.sub, b.Aggs)
			}
		}
	}
}
