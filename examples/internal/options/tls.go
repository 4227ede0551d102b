package options

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultTLSPoll is the default of -tls-poll: how often the certificate
// files are checked for a change. Two stat calls every few seconds cost
// nothing, and a renewed certificate is in service within seconds of being
// written.
const DefaultTLSPoll = 5 * time.Second

// certSource serves the certificate of -tls-cert and -tls-key to TLS
// handshakes (tls.Config.GetCertificate), and loads the files again when
// they change. Connections keep the certificate they were made with: only
// new handshakes see a new one, so a reload drops nothing. A pair that does
// not load (a missing file, a key that does not match, files caught half
// written during a renewal) leaves the certificate in service, with a
// warning; the files are tried again once they change again.
type certSource struct {
	certFile, keyFile string
	log               *slog.Logger

	cert atomic.Pointer[tls.Certificate]

	mu   sync.Mutex     // one reload at a time
	seen [2]os.FileInfo // the files as they were last loaded or tried (nil: missing)
}

// newCertSource loads the certificate files, or says which one is wrong and
// why.
func newCertSource(certFile, keyFile string, log *slog.Logger) (*certSource, error) {
	s := &certSource{certFile: certFile, keyFile: keyFile, log: log}
	s.seen = s.stat()
	cert, err := loadCert(certFile, keyFile)
	if err != nil {
		return nil, err
	}
	s.cert.Store(cert)
	s.logLoaded("TLS certificate loaded", cert)
	return s, nil
}

// loadCert reads a certificate (with its chain) and its private key from
// PEM files.
func loadCert(certFile, keyFile string) (*tls.Certificate, error) {
	certPEM, err := os.ReadFile(certFile)
	if err != nil {
		return nil, fmt.Errorf("-tls-cert: %w", err)
	}
	keyPEM, err := os.ReadFile(keyFile)
	if err != nil {
		return nil, fmt.Errorf("-tls-key: %w", err)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("-tls-cert %s with -tls-key %s: %w", certFile, keyFile, err)
	}
	if cert.Leaf == nil { // set by X509KeyPair unless GODEBUG=x509keypairleaf=0
		if cert.Leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			return nil, fmt.Errorf("-tls-cert %s: %w", certFile, err)
		}
	}
	return &cert, nil
}

// getCertificate is the tls.Config.GetCertificate of the public listener.
func (s *certSource) getCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return s.cert.Load(), nil
}

// stat returns what the files are now.
func (s *certSource) stat() [2]os.FileInfo {
	var fi [2]os.FileInfo
	for i, name := range []string{s.certFile, s.keyFile} {
		fi[i], _ = os.Stat(name) // a missing file is a change too
	}
	return fi
}

// sameFile reports whether a and b, from os.Stat, are the same file with
// the same contents as far as the file system tells: a renewal that
// rewrites a file changes its time and usually its size; one that renames a
// new file (or switches a symbolic link, as certbot does) over it changes
// the file.
func sameFile(a, b os.FileInfo) bool {
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	return os.SameFile(a, b) && a.ModTime().Equal(b.ModTime()) && a.Size() == b.Size()
}

// reload loads the files again: always when asked by a signal, on a poll
// only if either file changed since last time.
func (s *certSource) reload(why string, always bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.stat()
	if !always && sameFile(now[0], s.seen[0]) && sameFile(now[1], s.seen[1]) {
		return
	}
	s.seen = now
	cert, err := loadCert(s.certFile, s.keyFile)
	if err != nil {
		old := s.cert.Load()
		s.log.Warn("TLS certificate not reloaded: the one in service stays", "why", why, "err", err,
			"serial", serialOf(old), "not_after", old.Leaf.NotAfter.UTC().Format(time.RFC3339))
		return
	}
	s.cert.Store(cert)
	s.logLoaded("TLS certificate reloaded", cert, "why", why)
}

// watch reloads the files every poll when they changed (never for a poll of
// 0), and at once on each value of hup, until ctx is done.
func (s *certSource) watch(ctx context.Context, poll time.Duration, hup <-chan os.Signal) {
	var tick <-chan time.Time
	if poll > 0 {
		t := time.NewTicker(poll)
		defer t.Stop()
		tick = t.C
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
			s.reload("SIGHUP", true)
		case <-tick:
			s.reload("the files changed", false)
		}
	}
}

// logLoaded logs what a certificate is for and until when, and warns when
// it is not valid now: clients will refuse it.
func (s *certSource) logLoaded(msg string, cert *tls.Certificate, attrs ...any) {
	leaf := cert.Leaf
	names := append([]string(nil), leaf.DNSNames...)
	for _, ip := range leaf.IPAddresses {
		names = append(names, ip.String())
	}
	attrs = append(attrs,
		"cert", s.certFile,
		"names", strings.Join(names, ","),
		"serial", serialOf(cert),
		"not_after", leaf.NotAfter.UTC().Format(time.RFC3339))
	s.log.Info(msg, attrs...)
	switch now := time.Now(); {
	case now.After(leaf.NotAfter):
		s.log.Warn("the TLS certificate has expired: clients will refuse it", "cert", s.certFile, "not_after", leaf.NotAfter.UTC().Format(time.RFC3339))
	case now.Before(leaf.NotBefore):
		s.log.Warn("the TLS certificate is not valid yet: clients will refuse it", "cert", s.certFile, "not_before", leaf.NotBefore.UTC().Format(time.RFC3339))
	}
}

// serialOf returns the serial number of a certificate in hexadecimal, as
// openssl x509 -serial prints it.
func serialOf(cert *tls.Certificate) string {
	return fmt.Sprintf("%X", cert.Leaf.SerialNumber)
}
