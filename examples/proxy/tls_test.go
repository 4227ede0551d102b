package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mqttws/mqttws/examples/internal/exampletest"
	"github.com/mqttws/mqttws/internal/testbroker"
)

// startTLS runs the example in front of an echo server with -tls-cert and
// -tls-key files holding a new self-signed certificate, which it returns,
// with flags added.
func startTLS(t *testing.T, flags ...string) (*exampletest.Process, *exampletest.CertFiles, *testbroker.Cert) {
	t.Helper()
	files, cert := exampletest.NewCertFiles(t)
	p := start(t, append([]string{"-tls-cert", files.Cert, "-tls-key", files.Key}, flags...)...)
	return p, files, cert
}

// echo sends msg on c and expects it back from the echo server behind the
// proxy.
func echo(t *testing.T, c *exampletest.WSS, msg []byte) {
	t.Helper()
	if err := c.Send(msg); err != nil {
		t.Fatalf("send: %v", err)
	}
	got, err := c.Receive(len(msg))
	if err != nil || !bytes.Equal(got, msg) {
		t.Fatalf("echo of %d bytes: got %d bytes (%v)", len(msg), len(got), err)
	}
}

func TestServesWSS(t *testing.T) {
	p, files, cert := startTLS(t)
	if !strings.Contains(p.Line, "wss://"+p.Addr+"/mqtt") {
		t.Errorf("the first line says %q, want the wss:// URL", p.Line)
	}
	c := exampletest.DialWSS(t, "wss://"+p.Addr+"/mqtt", files.Roots)
	if c.Serial.Cmp(exampletest.Serial(cert)) != 0 {
		t.Errorf("the wss connection got serial %X, want %X", c.Serial, exampletest.Serial(cert))
	}
	echo(t, c, testbroker.ConnectPacket("over-tls", 60))
	echo(t, c, testbroker.PublishPacket("t", bytes.Repeat([]byte("x"), 100_000)))

	resp, err := exampletest.HTTPSClient(t, files.Roots).Get("https://" + p.Addr + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.Proto != "HTTP/2.0" {
		t.Errorf("GET /healthz over TLS went over %s, want HTTP/2.0", resp.Proto)
	}
}

func TestANewCertificateIsServedWhileClientsStayConnected(t *testing.T) {
	p, files, first := startTLS(t, "-tls-poll", "100ms")
	old := exampletest.DialWSS(t, "wss://"+p.Addr+"/mqtt", files.Roots)
	echo(t, old, testbroker.ConnectPacket("stays", 60))

	second := testbroker.SelfSignedCert(t)
	files.Install(t, second)
	took := exampletest.WaitServedSerial(t, p.Addr, files.Roots, exampletest.Serial(second), 5*time.Second)
	t.Logf("new handshakes got the new certificate %v after the files changed (-tls-poll 100ms)", took.Round(time.Millisecond))

	echo(t, old, testbroker.PublishPacket("t", []byte("after the change")))
	if old.Serial.Cmp(exampletest.Serial(first)) != 0 {
		t.Fatalf("the first connection had serial %X, want %X", old.Serial, exampletest.Serial(first))
	}
	c := exampletest.DialWSS(t, "wss://"+p.Addr+"/mqtt", files.Roots)
	if c.Serial.Cmp(exampletest.Serial(second)) != 0 {
		t.Errorf("a new wss connection got serial %X, want the new certificate's %X", c.Serial, exampletest.Serial(second))
	}
	echo(t, c, testbroker.ConnectPacket("new", 60))
}

func TestSIGHUPReloadsTheCertificateAndABadPairKeepsTheOld(t *testing.T) {
	p, files, first := startTLS(t, "-tls-poll", "0")
	old := exampletest.DialWSS(t, "wss://"+p.Addr+"/mqtt", files.Roots)

	second := testbroker.SelfSignedCert(t)
	files.Install(t, second)
	time.Sleep(300 * time.Millisecond)
	if got, err := exampletest.ServedSerial(p.Addr, files.Roots); err != nil || got.Cmp(exampletest.Serial(first)) != 0 {
		t.Fatalf("with -tls-poll 0 and no SIGHUP, new handshakes got serial %X (%v), want the first certificate's %X", got, err, exampletest.Serial(first))
	}
	p.Signal(t, syscall.SIGHUP)
	exampletest.WaitServedSerial(t, p.Addr, files.Roots, exampletest.Serial(second), 5*time.Second)

	// The key file gone: the second certificate stays in service.
	if err := os.Remove(files.Key); err != nil {
		t.Fatal(err)
	}
	p.Signal(t, syscall.SIGHUP)
	p.WaitLog(t, "TLS certificate not reloaded", 5*time.Second)
	if got, err := exampletest.ServedSerial(p.Addr, files.Roots); err != nil || got.Cmp(exampletest.Serial(second)) != 0 {
		t.Errorf("after a SIGHUP with the key file gone, new handshakes got serial %X (%v), want the one in service, %X", got, err, exampletest.Serial(second))
	}
	if log := p.Stderr(); !strings.Contains(log, "no such file") {
		t.Errorf("the warning does not say why:\n%s", log)
	}
	echo(t, old, testbroker.ConnectPacket("stays", 60))
}

func TestTLSFileErrorsStopTheProgram(t *testing.T) {
	good := testbroker.SelfSignedCert(t)
	other := testbroker.SelfSignedCert(t)
	missing := filepath.Join(t.TempDir(), "missing.pem")
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
			name:       "a key that does not match",
			cert:       good.CertFile,
			key:        other.KeyFile,
			wantStderr: []string{good.CertFile, other.KeyFile, "private key does not match"},
		},
		{
			name:       "the files switched",
			cert:       good.KeyFile,
			key:        good.CertFile,
			wantStderr: []string{"switched"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, stderr := exampletest.Exit(t, program.Path(t), "-listen", "127.0.0.1:0", "-upstream", "127.0.0.1:1883", "-tls-cert", tc.cert, "-tls-key", tc.key)
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
