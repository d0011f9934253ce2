package main

import (
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"

	"github.com/printbridge/printbridge/bridge/mqtt"
	"github.com/printbridge/printbridge/bridge/natsbus"
)

// secretOptions are the broker credential files and TLS settings of a
// process. Every flag can also come from PRINTBRIDGE_<FLAG> or the --config
// file (see parseFlags), so a password can stay out of the command line,
// which every local user can read in /proc.
type secretOptions struct {
	// fs is the flag set the options were registered on, to tell which
	// secrets came from the command line.
	fs *flag.FlagSet
	// resolved is set once the files are read, so that a second call
	// does not take the password read from a file for a second source.
	resolved bool

	mqttPasswordFile       string
	mqttCAFile             string
	mqttCertFile           string
	mqttKeyFile            string
	mqttServerName         string
	mqttInsecureSkipVerify bool

	natsPasswordFile string
	natsTokenFile    string
	natsNKeyFile     string
	natsCredsFile    string
	natsCAFile       string
	natsCertFile     string
	natsKeyFile      string
	natsServerName   string
}

// commandLineSecretFlags are flags whose value is a secret itself.
var commandLineSecretFlags = []string{"mqtt-password", "nats-password", "nats-token"}

func (s *secretOptions) register(fs *flag.FlagSet) {
	s.fs = fs
	fs.StringVar(&s.mqttPasswordFile, "mqtt-password-file", "", "file whose first line is the MQTT password (instead of --mqtt-password)")
	fs.StringVar(&s.mqttCAFile, "mqtt-ca-file", "", "PEM file of the CA that signed the MQTT broker's certificate (ssl:// URLs; default: the system's roots)")
	fs.StringVar(&s.mqttCertFile, "mqtt-cert-file", "", "PEM client certificate for MQTT brokers that require one (with --mqtt-key-file)")
	fs.StringVar(&s.mqttKeyFile, "mqtt-key-file", "", "PEM private key of --mqtt-cert-file")
	fs.StringVar(&s.mqttServerName, "mqtt-server-name", "", "name the MQTT broker's certificate must carry, when it differs from the URL's host")
	fs.BoolVar(&s.mqttInsecureSkipVerify, "mqtt-insecure-skip-verify", false, "accept any MQTT broker certificate: for tests only, it exposes the password and every message")
	fs.StringVar(&s.natsPasswordFile, "nats-password-file", "", "file whose first line is the NATS password (instead of --nats-password)")
	fs.StringVar(&s.natsTokenFile, "nats-token-file", "", "file whose first line is the NATS token (instead of --nats-token)")
	fs.StringVar(&s.natsNKeyFile, "nats-nkey", "", "file with the NATS user's NKey seed")
	fs.StringVar(&s.natsCredsFile, "nats-creds", "", "NATS .creds file (user JWT and seed) for servers in operator mode")
	fs.StringVar(&s.natsCAFile, "nats-ca-file", "", "PEM file of the CA that signed the NATS server's certificate; setting a TLS flag turns TLS on")
	fs.StringVar(&s.natsCertFile, "nats-cert-file", "", "PEM client certificate for NATS servers that verify clients (with --nats-key-file)")
	fs.StringVar(&s.natsKeyFile, "nats-key-file", "", "PEM private key of --nats-cert-file")
	fs.StringVar(&s.natsServerName, "nats-server-name", "", "name the NATS server's certificate must carry, when it differs from the URL's host")
}

// resolveSecrets reads the secret files into o, rejects a secret given
// twice, and warns about secrets on the command line and secret files that
// every local user can read. Errors and logs name files, never contents.
func (o *busOptions) resolveSecrets(log *slog.Logger) error {
	s := &o.secrets
	if s.resolved {
		return nil
	}
	if err := o.readSecretFiles(log); err != nil {
		return err
	}
	if err := s.checkFiles(log); err != nil {
		return err
	}
	s.warnCommandLineSecrets(log)
	s.resolved = true
	return nil
}

func (o *busOptions) readSecretFiles(log *slog.Logger) error {
	s := &o.secrets
	files := []struct {
		flag, file, valueFlag string
		value                 *string
	}{
		{"mqtt-password-file", s.mqttPasswordFile, "mqtt-password", &o.mqttPassword},
		{"nats-password-file", s.natsPasswordFile, "nats-password", &o.natsPassword},
		{"nats-token-file", s.natsTokenFile, "nats-token", &o.natsToken},
	}
	for _, f := range files {
		if f.file == "" {
			continue
		}
		if *f.value != "" {
			return fmt.Errorf("both --%s and --%s are set (perhaps through PRINTBRIDGE_%s): keep one", f.flag, f.valueFlag, envName(f.valueFlag))
		}
		secret, err := readSecretFile(f.file, log)
		if err != nil {
			return fmt.Errorf("--%s: %w", f.flag, err)
		}
		*f.value = secret
	}
	return nil
}

// checkFiles opens the TLS and NATS key files, which the bus adapters read
// on every connect, so that a wrong path fails at start and not in the
// connect retry loop.
func (s *secretOptions) checkFiles(log *slog.Logger) error {
	for _, path := range []string{s.mqttCAFile, s.mqttCertFile, s.natsCAFile, s.natsCertFile} {
		if err := checkReadable(path); err != nil {
			return err
		}
	}
	for _, path := range []string{s.natsNKeyFile, s.natsCredsFile, s.mqttKeyFile, s.natsKeyFile} {
		if err := checkReadable(path); err != nil {
			return err
		}
		if path != "" {
			warnIfWorldReadable(log, path)
		}
	}
	return nil
}

// warnCommandLineSecrets warns about each secret flag given on the command
// line. parseFlags sets values from the environment and the config file
// with Value.Set, which fs.Visit does not list, so only the command line
// counts here.
func (s *secretOptions) warnCommandLineSecrets(log *slog.Logger) {
	if s.fs == nil {
		return
	}
	s.fs.Visit(func(f *flag.Flag) {
		for _, name := range commandLineSecretFlags {
			if f.Name == name {
				log.Warn("secret given on the command line, where every local user can read it; use the -file flag or the environment variable instead",
					"flag", "--"+name, "env", "PRINTBRIDGE_"+envName(name))
			}
		}
	})
}

func checkReadable(path string) error {
	if path == "" {
		return nil
	}
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("broker credentials or TLS file: %w", err)
	}
	return f.Close()
}

// readSecretFile returns the first line of path without its line ending.
func readSecretFile(path string, log *slog.Logger) (string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("read secret file: %w", err)
	}
	warnIfWorldReadable(log, path)
	secret, _, _ := strings.Cut(string(data), "\n")
	secret = strings.TrimSuffix(secret, "\r")
	if secret == "" {
		return "", fmt.Errorf("secret file %s is empty: write the secret on its first line", path)
	}
	return secret, nil
}

func warnIfWorldReadable(log *slog.Logger, path string) {
	fi, err := os.Stat(path)
	if err == nil && fi.Mode().Perm()&0o004 != 0 {
		log.Warn("secret file is readable by every local user; restrict it with chmod 600, or 640 with the service's group", "path", path)
	}
}

func envName(flagName string) string {
	return strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

func (s *secretOptions) mqttTLS() mqtt.TLSOptions {
	return mqtt.TLSOptions{CAFile: s.mqttCAFile, CertFile: s.mqttCertFile, KeyFile: s.mqttKeyFile,
		ServerName: s.mqttServerName, InsecureSkipVerify: s.mqttInsecureSkipVerify}
}

func (s *secretOptions) natsTLS() natsbus.TLSOptions {
	return natsbus.TLSOptions{CAFile: s.natsCAFile, CertFile: s.natsCertFile, KeyFile: s.natsKeyFile, ServerName: s.natsServerName}
}

// warnIfNotLoopback logs a warning when a listener of the process accepts
// connections from other hosts, because the metrics and other HTTP
// endpoints have no authentication.
func warnIfNotLoopback(log *slog.Logger, what string, addr net.Addr) {
	tcp, ok := addr.(*net.TCPAddr)
	if !ok || tcp.IP.IsLoopback() {
		return
	}
	log.Warn(what+" endpoint listens beyond loopback and has no authentication; anyone who reaches "+tcp.String()+" can read it, so bind it to 127.0.0.1 or firewall the port",
		"address", tcp.String())
}

// warnIfRoot logs one warning when the worker runs as root, because every
// system hook of the OctoPrint config then runs as root too, and any event
// payload (a file name, a message from the printer) is input to it. euid
// is os.Geteuid(), a parameter so that tests can pass both cases.
func warnIfRoot(log *slog.Logger, euid int) {
	if euid != 0 {
		return
	}
	log.Warn("the worker runs as root, so every system hook runs as root: a hook or a crafted event payload could change anything on this host; run it as a dedicated user (see docs/security.md and deploy/systemd/printbridge-worker.service)",
		"euid", euid)
}
