//go:build !go1.27

package metrics

import (
	"encoding/json"
	"io"
)

// decodeSummary decodes a summary with encoding/json (see decode_json2.go).
func decodeSummary(r io.Reader) (*Summary, error) {
	var s Summary
	if err := json.NewDecoder(r).Decode(&s); err != nil {
		return nil, err
	}
	return &s, nil
}
