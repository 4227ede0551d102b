package load

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
)

// clientReadBuffer is the read buffer of TCP clients: the size gorilla's
// client (which paho uses for ws:// URLs) reads WebSocket connections with.
// paho itself reads a plain TCP connection unbuffered, one byte at a time
// for the fixed header, which would make the TCP client, not the broker,
// the bound on small messages.
const clientReadBuffer = 4096

// ClientOptions are the options of the benchmarks' paho clients: MQTT
// 3.1.1, a clean session, no reconnects, messages handled in order.
func ClientOptions(brokerURL, id string) *paho.ClientOptions {
	return paho.NewClientOptions().
		AddBroker(brokerURL).
		SetClientID(id).
		SetProtocolVersion(4).
		SetCleanSession(true).
		SetAutoReconnect(false).
		SetConnectRetry(false).
		SetKeepAlive(60 * time.Second).
		SetConnectTimeout(10 * time.Second).
		SetOrderMatters(true)
}

// connect connects a paho client with ClientOptions.
func connect(brokerURL, id string) (paho.Client, error) {
	o := ClientOptions(brokerURL, id).
		SetWebsocketOptions(&paho.WebsocketOptions{
			Proxy: func(*http.Request) (*url.URL, error) { return nil, nil },
		}).
		SetCustomOpenConnectionFn(openConnection)
	c := paho.NewClient(o)
	t := c.Connect()
	if !t.WaitTimeout(15*time.Second) || t.Error() != nil {
		return nil, fmt.Errorf("load: connect %s to %s: %v", id, brokerURL, t.Error())
	}
	return c, nil
}

// openConnection gives tcp:// clients a buffered reader and leaves ws://
// to paho.
func openConnection(uri *url.URL, o paho.ClientOptions) (net.Conn, error) {
	switch uri.Scheme {
	case "tcp", "mqtt":
		c, err := net.DialTimeout("tcp", uri.Host, o.ConnectTimeout)
		if err != nil {
			return nil, err
		}
		return &bufferedConn{Conn: c, r: bufio.NewReaderSize(c, clientReadBuffer)}, nil
	case "ws":
		return paho.NewWebsocket(uri.String(), nil, o.ConnectTimeout, o.HTTPHeaders, o.WebsocketOptions)
	}
	return nil, fmt.Errorf("load: unsupported scheme %q", uri.Scheme)
}

// bufferedConn reads through a bufio.Reader.
type bufferedConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *bufferedConn) Read(p []byte) (int, error) { return c.r.Read(p) }
