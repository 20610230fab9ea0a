package main

import (
	"testing"

	"k8s.io/client-go/rest"
)

func TestSetContentType(t *testing.T) {
	for _, tc := range []struct {
		name, ct, accept   string
		wantCT, wantAccept string
		wantErr            bool
	}{
		{name: "upstream default is protobuf with JSON fallback", wantCT: protobufContentType, wantAccept: protobufAcceptContentType},
		{name: "json", ct: "application/json", wantCT: "application/json", wantAccept: "application/json"},
		{name: "explicit accept kept", ct: protobufContentType, accept: "application/json", wantCT: protobufContentType, wantAccept: "application/json"},
		{name: "unknown type refused", ct: "application/yaml", wantErr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rc := &rest.Config{}
			err := setContentType(rc, tc.ct, tc.accept)
			if tc.wantErr {
				if err == nil {
					t.Fatalf("setContentType(%q) = nil, want an error", tc.ct)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if rc.ContentType != tc.wantCT || rc.AcceptContentTypes != tc.wantAccept {
				t.Fatalf("got %q / %q, want %q / %q", rc.ContentType, rc.AcceptContentTypes, tc.wantCT, tc.wantAccept)
			}
		})
	}
}
