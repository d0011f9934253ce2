package mqtt

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"

	"github.com/printbridge/printbridge/bridge/lazy"
)

// TLSOptions configures the TLS connection to the broker. The zero value
// uses the system's root certificates for an ssl:// URL.
type TLSOptions struct {
	// CAFile is a PEM file of the certificate authorities that sign the
	// broker's certificate, in place of the system's roots.
	CAFile string
	// CertFile and KeyFile are the PEM client certificate and its private
	// key, for brokers that authenticate clients by certificate
	// (mosquitto's require_certificate).
	CertFile string
	KeyFile  string
	// ServerName is the name the broker's certificate must carry, when it
	// differs from the URL's host (such as a broker reached by IP).
	ServerName string
	// InsecureSkipVerify accepts any broker certificate. Anyone on the
	// network path can then read and change every message and the
	// password, so it is for tests only, and New logs a warning.
	InsecureSkipVerify bool
}

// isZero reports whether no TLS option is set.
func (o TLSOptions) isZero() bool { return o == TLSOptions{} }

// tlsSchemes are the URL schemes on which paho 1.5 dials TLS.
var tlsSchemes = lazy.Map[string, bool]{Build: func() map[string]bool {
	return map[string]bool{"ssl": true, "tls": true, "mqtts": true, "mqtt+ssl": true, "tcps": true, "wss": true}
}}

// tlsConfig builds the tls.Config for broker, or nil when the URL is not
// a TLS one and no option is set. Errors name the files, never their
// contents.
func (o TLSOptions) tlsConfig(broker *url.URL, log *slog.Logger) (*tls.Config, error) {
	if !tlsSchemes.Get()[broker.Scheme] {
		if o.isZero() {
			return nil, nil
		}
		return nil, fmt.Errorf("MQTT TLS options are set but the broker URL scheme is %s://, which paho dials without TLS: use ssl://host:8883", broker.Scheme)
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: o.ServerName}
	if o.CAFile != "" {
		pool, err := loadCAFile(o.CAFile)
		if err != nil {
			return nil, err
		}
		cfg.RootCAs = pool
	}
	if (o.CertFile == "") != (o.KeyFile == "") {
		return nil, errors.New("MQTT TLS: a client certificate needs both a certificate file and a key file")
	}
	if o.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(o.CertFile, o.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("MQTT TLS: load client certificate %s with key %s: %w", o.CertFile, o.KeyFile, err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	if o.InsecureSkipVerify {
		cfg.InsecureSkipVerify = true
		log.Warn("TLS certificate verification of the MQTT broker is OFF: anyone on the network path can read and change every message and the password; give the broker's CA file instead",
			"broker", broker.Redacted())
	}
	return cfg, nil
}

// loadCAFile reads a PEM bundle of CA certificates.
func loadCAFile(path string) (*x509.CertPool, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("MQTT TLS: read CA file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(data) {
		return nil, fmt.Errorf("MQTT TLS: CA file %s has no PEM certificate; give the broker CA's certificate in PEM form", path)
	}
	return pool, nil
}
