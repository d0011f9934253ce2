package natsbus

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/nats-io/nats.go"
)

// TLSOptions configures TLS to the server. Setting any of them turns TLS
// on, also for a nats:// URL; a tls:// URL turns it on with the system's
// root certificates.
type TLSOptions struct {
	// CAFile is a PEM file of the certificate authorities that sign the
	// server's certificate, in place of the system's roots.
	CAFile string
	// CertFile and KeyFile are the PEM client certificate and its key,
	// for servers that verify clients (tls { verify: true }).
	CertFile string
	KeyFile  string
	// ServerName is the name the server's certificate must carry, when
	// it differs from the URL's host.
	ServerName string
}

func (o TLSOptions) isZero() bool { return o == TLSOptions{} }

// authOptions returns the nats.go options for the credentials and TLS of
// cfg. It reads the NKey seed file at once, so a missing or invalid file
// fails New instead of every reconnect. Errors name files, never secrets.
func (cfg Config) authOptions() ([]nats.Option, error) {
	var methods []string
	if cfg.User != "" {
		methods = append(methods, "user")
	}
	if cfg.Token != "" {
		methods = append(methods, "token")
	}
	if cfg.NKeySeedFile != "" {
		methods = append(methods, "NKey seed file")
	}
	if cfg.CredsFile != "" {
		methods = append(methods, "credentials file")
	}
	if len(methods) > 1 {
		return nil, fmt.Errorf("NATS config: %s are set, but a connection authenticates one way: keep one of them", strings.Join(methods, ", "))
	}
	if cfg.Password != "" && cfg.User == "" {
		return nil, errors.New("NATS config: a password is set without a user: set the user too")
	}

	var opts []nats.Option
	switch {
	case cfg.User != "":
		opts = append(opts, nats.UserInfo(cfg.User, cfg.Password))
	case cfg.Token != "":
		opts = append(opts, nats.Token(cfg.Token))
	case cfg.NKeySeedFile != "":
		opt, err := nats.NkeyOptionFromSeed(cfg.NKeySeedFile)
		if err != nil {
			return nil, fmt.Errorf("NATS config: load NKey seed file %s: %w (give a file with one seed, as written by nsc or nk -gen user)", cfg.NKeySeedFile, err)
		}
		opts = append(opts, opt)
	case cfg.CredsFile != "":
		// nats.go reads the file again on every connect, so that a
		// rotated credentials file takes effect on the next reconnect.
		if _, err := os.Stat(cfg.CredsFile); err != nil {
			return nil, fmt.Errorf("NATS config: credentials file: %w", err)
		}
		opts = append(opts, nats.UserCredentials(cfg.CredsFile))
	}

	if cfg.TLS.isZero() {
		return opts, nil
	}
	tc, err := cfg.TLS.tlsConfig()
	if err != nil {
		return nil, err
	}
	return append(opts, nats.Secure(tc)), nil
}

func (o TLSOptions) tlsConfig() (*tls.Config, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: o.ServerName}
	if o.CAFile != "" {
		data, err := os.ReadFile(o.CAFile)
		if err != nil {
			return nil, fmt.Errorf("NATS TLS: read CA file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(data) {
			return nil, fmt.Errorf("NATS TLS: CA file %s has no PEM certificate; give the server CA's certificate in PEM form", o.CAFile)
		}
		tc.RootCAs = pool
	}
	if (o.CertFile == "") != (o.KeyFile == "") {
		return nil, errors.New("NATS TLS: a client certificate needs both a certificate file and a key file")
	}
	if o.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(o.CertFile, o.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("NATS TLS: load client certificate %s with key %s: %w", o.CertFile, o.KeyFile, err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}
