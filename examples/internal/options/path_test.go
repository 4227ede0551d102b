package options_test

import (
	"testing"

	"github.com/mqttws/mqttws/examples/internal/options"
)

func TestCheckPathTakesOnlyPathsBothRoutersMatchLiterally(t *testing.T) {
	tests := []struct {
		path string
		ok   bool
	}{
		{path: "/mqtt", ok: true},
		{path: "/", ok: true},
		{path: "/api/v1/mqtt", ok: true},
		{path: "/mqtt-ws_1.0~x", ok: true},
		{path: "/a:b@c;d=e,f+g$h&i", ok: true},
		{path: "mqtt", ok: false},
		{path: "", ok: false},
		{path: "/a b", ok: false},
		{path: "/a\tb", ok: false},
		{path: "/mqtt?x=1", ok: false},
		{path: "/mqtt#top", ok: false},
		{path: "/mqtt/", ok: false},
		{path: "//mqtt", ok: false},
		{path: "/a/../mqtt", ok: false},
		{path: "/./mqtt", ok: false},
		{path: "/{id}", ok: false},
		{path: "/mqtt/*", ok: false},
		{path: "/a%20b", ok: false},
		{path: "/é", ok: false},
	}
	for _, tc := range tests {
		err := options.CheckPath(tc.path)
		if (err == nil) != tc.ok {
			t.Errorf("CheckPath(%q) = %v, want ok %v", tc.path, err, tc.ok)
		}
	}
}
