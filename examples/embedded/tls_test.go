package main

import (
	"bytes"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mqttws/mqttws/examples/internal/exampletest"
	"github.com/mqttws/mqttws/internal/testbroker"
)

// Packets of the MQTT exchanges below.
var (
	pingreq  = []byte{0xc0, 0x00}
	pingresp = []byte{0xd0, 0x00}
)

// startTLS runs the example with -tls-cert and -tls-key files holding a new
// self-signed certificate, which it returns, with flags added.
func startTLS(t *testing.T, flags ...string) (*exampletest.Process, *exampletest.CertFiles, *testbroker.Cert) {
	t.Helper()
	files, cert := exampletest.NewCertFiles(t)
	p := start(t, append([]string{"-tls-cert", files.Cert, "-tls-key", files.Key}, flags...)...)
	return p, files, cert
}

// connectWSS opens a wss connection to the example and connects an MQTT
// client over it.
func connectWSS(t *testing.T, p *exampletest.Process, files *exampletest.CertFiles, id string) *exampletest.WSS {
	t.Helper()
	c := exampletest.DialWSS(t, "wss://"+p.Addr+"/mqtt", files.Roots)
	if err := c.Send(testbroker.ConnectPacket(id, 60)); err != nil {
		t.Fatal(err)
	}
	expect(t, c, testbroker.ConnackAccepted)
	return c
}

// expect reads len(want) bytes from c, and fails the test unless they are
// want.
func expect(t *testing.T, c *exampletest.WSS, want []byte) {
	t.Helper()
	got, err := c.Receive(len(want))
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("got % x (%v), want % x", got, err, want)
	}
}

// ping sends PINGREQ on c and expects PINGRESP: the broker still serves c.
func ping(t *testing.T, c *exampletest.WSS) {
	t.Helper()
	if err := c.Send(pingreq); err != nil {
		t.Fatalf("PINGREQ: %v", err)
	}
	expect(t, c, pingresp)
}

func TestServesHTTPSAndWSS(t *testing.T) {
	p, files, cert := startTLS(t)
	if !strings.Contains(p.Line, "open https://"+p.Addr+"/") || !strings.Contains(p.Line, "wss://"+p.Addr+"/mqtt") {
		t.Errorf("the first line says %q, want the https:// and wss:// URLs", p.Line)
	}
	c := connectWSS(t, p, files, "over-tls")
	if c.Serial.Cmp(exampletest.Serial(cert)) != 0 {
		t.Errorf("the wss connection got serial %X, want %X", c.Serial, exampletest.Serial(cert))
	}
	ping(t, c)

	client := exampletest.HTTPSClient(t, files.Roots)
	resp, err := client.Get("https://" + p.Addr + "/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Proto != "HTTP/2.0" || !bytes.Contains(body, []byte("mqtt.min.js")) {
		t.Errorf("GET / over TLS: %s %d, %d bytes; want HTTP/2.0 200 and the page", resp.Proto, resp.StatusCode, len(body))
	}
}

func TestANewCertificateIsServedWhileClientsStayConnected(t *testing.T) {
	p, files, first := startTLS(t, "-tls-poll", "100ms")
	old := connectWSS(t, p, files, "stays")

	second := testbroker.SelfSignedCert(t)
	files.Install(t, second)
	took := exampletest.WaitServedSerial(t, p.Addr, files.Roots, exampletest.Serial(second), 5*time.Second)
	t.Logf("new handshakes got the new certificate %v after the files changed (-tls-poll 100ms)", took.Round(time.Millisecond))

	ping(t, old) // made with the first certificate, still served
	if old.Serial.Cmp(exampletest.Serial(first)) != 0 {
		t.Fatalf("the first connection had serial %X, want %X", old.Serial, exampletest.Serial(first))
	}
	if c := connectWSS(t, p, files, "new"); c.Serial.Cmp(exampletest.Serial(second)) != 0 {
		t.Errorf("a new wss connection got serial %X, want the new certificate's %X", c.Serial, exampletest.Serial(second))
	}
	if log := p.Stderr(); !strings.Contains(log, "TLS certificate reloaded") {
		t.Errorf("no reload logged:\n%s", log)
	}
}

func TestSIGHUPReloadsTheCertificateAndABadPairKeepsTheOld(t *testing.T) {
	p, files, first := startTLS(t, "-tls-poll", "0")
	old := connectWSS(t, p, files, "stays")

	second := testbroker.SelfSignedCert(t)
	files.Install(t, second)
	time.Sleep(300 * time.Millisecond)
	if got, err := exampletest.ServedSerial(p.Addr, files.Roots); err != nil || got.Cmp(exampletest.Serial(first)) != 0 {
		t.Fatalf("with -tls-poll 0 and no SIGHUP, new handshakes got serial %X (%v), want the first certificate's %X", got, err, exampletest.Serial(first))
	}
	p.Signal(t, syscall.SIGHUP)
	exampletest.WaitServedSerial(t, p.Addr, files.Roots, exampletest.Serial(second), 5*time.Second)

	// A key that does not match: the second certificate stays in service.
	files.InstallFiles(t, second.CertFile, first.KeyFile)
	p.Signal(t, syscall.SIGHUP)
	p.WaitLog(t, "TLS certificate not reloaded", 5*time.Second)
	if got, err := exampletest.ServedSerial(p.Addr, files.Roots); err != nil || got.Cmp(exampletest.Serial(second)) != 0 {
		t.Errorf("after a SIGHUP with a key that does not match, new handshakes got serial %X (%v), want the one in service, %X", got, err, exampletest.Serial(second))
	}
	if log := p.Stderr(); !strings.Contains(log, "private key does not match") {
		t.Errorf("the warning does not say why:\n%s", log)
	}
	ping(t, old)
}

func TestTLSFileErrorsStopTheProgram(t *testing.T) {
	good := testbroker.SelfSignedCert(t)
	other := testbroker.SelfSignedCert(t)
	missing := filepath.Join(t.TempDir(), "missing.pem")
	empty := filepath.Join(t.TempDir(), "empty.pem")
	if err := os.WriteFile(empty, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name       string
		cert, key  string
		wantStderr []string
	}{
		{
			name:       "missing certificate file",
			cert:       missing,
			key:        good.KeyFile,
			wantStderr: []string{"-tls-cert", missing, "no such file"},
		},
		{
			name:       "missing key file",
			cert:       good.CertFile,
			key:        missing,
			wantStderr: []string{"-tls-key", missing, "no such file"},
		},
		{
			name:       "a key that does not match",
			cert:       good.CertFile,
			key:        other.KeyFile,
			wantStderr: []string{good.CertFile, other.KeyFile, "private key does not match"},
		},
		{
			name:       "an empty certificate file",
			cert:       empty,
			key:        good.KeyFile,
			wantStderr: []string{empty, "PEM"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, stderr := exampletest.Exit(t, program.Path(t), "-listen", "127.0.0.1:0", "-tls-cert", tc.cert, "-tls-key", tc.key)
			if code != 1 {
				t.Errorf("exit status %d, want 1", code)
			}
			for _, want := range tc.wantStderr {
				if !strings.Contains(stderr, want) {
					t.Errorf("stderr without %q:\n%s", want, stderr)
				}
			}
		})
	}
}
