//go:build go1.27

package metrics

import (
	"encoding/json/jsontext"
	"encoding/json/v2"
	"fmt"
	"io"
	"time"
)

// decodeSummary decodes a summary with encoding/json/v2 (Go 1.27), which
// takes about half of v1's CPU for a summary; decode_json1.go is the v1
// fallback for older toolchains.
func decodeSummary(r io.Reader) (*Summary, error) {
	var s Summary
	if err := json.UnmarshalRead(r, &s); err != nil {
		return nil, err
	}
	return &s, nil
}

// UnmarshalJSONFrom implements json.UnmarshalerFrom (v2): the string is
// read without an intermediate copy.
func (t *Time) UnmarshalJSONFrom(d *jsontext.Decoder) error {
	tok, err := d.ReadToken()
	if err != nil {
		return err
	}
	switch tok.Kind() {
	case 'n':
		t.Time = time.Time{}
		return nil
	case '"':
		v, err := time.Parse(time.RFC3339Nano, tok.String())
		if err != nil {
			return err
		}
		t.Time = v
		return nil
	}
	return fmt.Errorf("time: not a string: %v", tok.Kind())
}
