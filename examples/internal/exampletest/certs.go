package exampletest

import (
	"crypto/x509"
	"math/big"
	"os"
	"path/filepath"
	"testing"

	"github.com/mqttws/mqttws/internal/testbroker"
)

// CertFiles are the -tls-cert and -tls-key files of an example, which a
// test replaces as a certificate renewal would.
type CertFiles struct {
	Cert, Key string
	// Roots trusts every certificate installed so far.
	Roots *x509.CertPool
}

// NewCertFiles writes a new self-signed certificate for 127.0.0.1, and its
// key, to files in the test's temporary directory, and returns the files
// and the certificate.
func NewCertFiles(t testing.TB) (*CertFiles, *testbroker.Cert) {
	t.Helper()
	dir := t.TempDir()
	f := &CertFiles{
		Cert:  filepath.Join(dir, "cert.pem"),
		Key:   filepath.Join(dir, "key.pem"),
		Roots: x509.NewCertPool(),
	}
	c := testbroker.SelfSignedCert(t)
	f.Install(t, c)
	return f, c
}

// Install puts c in the files as a renewal does: each new file written
// beside the old one and renamed over it, the key first, so that a reader
// sees either file whole, old or new.
func (f *CertFiles) Install(t testing.TB, c *testbroker.Cert) {
	t.Helper()
	f.InstallFiles(t, c.CertFile, c.KeyFile)
	f.Roots.AddCert(c.Certificate.Leaf)
}

// InstallFiles puts copies of certFile and keyFile in the files, the key
// first, each renamed over the old one.
func (f *CertFiles) InstallFiles(t testing.TB, certFile, keyFile string) {
	t.Helper()
	for _, cp := range []struct{ from, to string }{{keyFile, f.Key}, {certFile, f.Cert}} {
		b, err := os.ReadFile(cp.from)
		if err != nil {
			t.Fatal(err)
		}
		tmp := cp.to + ".new"
		if err := os.WriteFile(tmp, b, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, cp.to); err != nil {
			t.Fatal(err)
		}
	}
}

// Serial returns the serial number of c.
func Serial(c *testbroker.Cert) *big.Int { return c.Certificate.Leaf.SerialNumber }
