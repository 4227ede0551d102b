package testbroker

import (
	"fmt"
	"sync/atomic"
)

var clientSeq atomic.Int64

// ClientID returns a client id unique in the test binary, with role in it
// for the broker's logs.
func ClientID(role string) string {
	return fmt.Sprintf("mqttws-%s-%d", role, clientSeq.Add(1))
}
