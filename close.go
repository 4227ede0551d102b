package mqttws

import (
	"errors"
	"fmt"
	"unicode/utf8"

	"github.com/gobwas/ws"
)

// CloseCode is a WebSocket close status code (RFC 6455 section 7.4).
type CloseCode uint16

// Close codes a client of mqttws may see, and why.
const (
	// CloseNormal: the backend ended the stream (the broker closed the
	// connection, or the client sent DISCONNECT).
	CloseNormal CloseCode = 1000
	// CloseGoingAway: the server is shutting down.
	CloseGoingAway CloseCode = 1001
	// CloseProtocolError: the client broke RFC 6455 (unmasked frame, reserved
	// opcode or bits, bad fragmentation, bad close frame).
	CloseProtocolError CloseCode = 1002
	// CloseUnsupportedData: the client sent a text frame (MQTT-6.0.0-1).
	CloseUnsupportedData CloseCode = 1003
	// CloseInvalidPayload: a close reason was not valid UTF-8.
	CloseInvalidPayload CloseCode = 1007
	// ClosePolicyViolation: the connection broke a policy of the handler.
	ClosePolicyViolation CloseCode = 1008
	// CloseMessageTooBig: a frame was longer than Handler.MaxFrameSize.
	CloseMessageTooBig CloseCode = 1009
	// CloseInternalError: the backend failed.
	CloseInternalError CloseCode = 1011
	// CloseServiceRestart: the service behind the backend went away (a
	// broker that crashed, stopped or restarts): reconnect, and be sent to
	// one that is up.
	CloseServiceRestart CloseCode = 1012
	// CloseTryAgainLater: the backend is unavailable for now (for example the
	// upstream broker could not be reached).
	CloseTryAgainLater CloseCode = 1013
)

// maxCloseReason is the longest close reason that fits a control frame
// (125 bytes less the 2-byte code).
const maxCloseReason = ws.MaxControlFramePayloadSize - 2

// CloseError reports how mqttws closed a stream, or asks for a close code.
//
// A Backend returns one (possibly wrapped) to choose the code and reason the
// client sees; Stream.Read returns one when mqttws closed the stream because
// the client broke the protocol. (A close frame from the client, whatever
// its code, ends Read with io.EOF.)
type CloseError struct {
	Code CloseCode
	// Reason is sent to the client in the close frame: keep it short (it is
	// cut to 123 bytes) and free of internals.
	Reason string
	// Err is the cause, for logs only: the client never sees it.
	Err error
}

func (e *CloseError) Error() string {
	msg := fmt.Sprintf("mqttws: WebSocket closed with %d", e.Code)
	if e.Reason != "" {
		msg += ": " + e.Reason
	}
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	return msg
}

// Unwrap returns the cause.
func (e *CloseError) Unwrap() error { return e.Err }

// closeCodeOf picks the close code a backend's result asks for: nil is a
// normal close, a CloseError carries its own code (one a close frame may
// carry), anything else is 1011.
func closeCodeOf(err error) (CloseCode, string) {
	if err == nil {
		return CloseNormal, ""
	}
	var ce *CloseError
	if errors.As(err, &ce) && validCloseCode(ce.Code) {
		return ce.Code, ce.Reason
	}
	return CloseInternalError, "backend error"
}

// truncateReason cuts reason to fit a close frame without splitting a UTF-8
// sequence (ws.NewCloseFrameBody would cut inside one).
func truncateReason(reason string) string {
	if len(reason) <= maxCloseReason {
		return reason
	}
	cut := maxCloseReason
	for cut > 0 && !utf8.RuneStart(reason[cut]) {
		cut--
	}
	return reason[:cut]
}

// validCloseCode reports whether a peer may send code in a close frame: the
// codes RFC 6455 and the IANA registry define for that use, and the 3000-4999
// ranges left to applications. ws.CheckCloseFrameData is not enough: it lets
// codes of 5000 and above through and refuses the registered 1012-1014.
func validCloseCode(code CloseCode) bool {
	switch {
	case code >= 1000 && code <= 1003:
		return true
	case code >= 1007 && code <= 1014:
		return true
	case code >= 3000 && code <= 4999:
		return true
	}
	return false
}

// parseCloseBody validates the body of a close frame received from the
// client. It returns the code to echo (0 for an empty body) or the
// CloseError with which the connection must fail.
func parseCloseBody(body []byte) (CloseCode, string, *CloseError) {
	switch len(body) {
	case 0:
		return 0, "", nil
	case 1:
		return 0, "", &CloseError{Code: CloseProtocolError, Reason: "close frame body of 1 byte"}
	}
	code, reason := ws.ParseCloseFrameDataUnsafe(body)
	if !validCloseCode(CloseCode(code)) {
		return 0, "", &CloseError{Code: CloseProtocolError, Reason: fmt.Sprintf("invalid close code %d", code)}
	}
	if !utf8.ValidString(reason) {
		return 0, "", &CloseError{Code: CloseInvalidPayload, Reason: "close reason is not valid UTF-8"}
	}
	return CloseCode(code), reason, nil
}
