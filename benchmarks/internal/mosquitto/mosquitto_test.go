package mosquitto

import (
	"strings"
	"testing"
)

func TestWebSocketConfigKeepsAPlainListener(t *testing.T) {
	conf := Config(1883, 9001)
	for _, line := range []string{
		"listener 1883 127.0.0.1",
		"protocol mqtt",
		"listener 9001 127.0.0.1",
		"protocol websockets",
		"socket_domain ipv4",
		"set_tcp_nodelay true",
	} {
		if !strings.Contains(conf, line+"\n") {
			t.Errorf("config lacks %q:\n%s", line, conf)
		}
	}
	if strings.Contains(Config(1883, 0), "websockets") {
		t.Error("a TCP broker with a WebSocket listener")
	}
}
