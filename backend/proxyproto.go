package backend

import (
	"fmt"
	"io"
	"net"

	"github.com/pires/go-proxyproto"
)

// writeProxyHeader announces the client of stream to the broker with a
// PROXY protocol header of the given version (1: text, 2: binary).
func writeProxyHeader(broker io.Writer, version int, stream net.Conn) error {
	h := proxyproto.HeaderProxyFromAddrs(byte(version), stream.RemoteAddr(), stream.LocalAddr())
	if _, err := h.WriteTo(broker); err != nil {
		return fmt.Errorf("backend: PROXY protocol v%d header: %w", version, err)
	}
	return nil
}
