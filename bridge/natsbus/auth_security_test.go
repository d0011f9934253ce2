package natsbus_test

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nkeys"

	"github.com/printbridge/printbridge/bridge"
	"github.com/printbridge/printbridge/bridge/brokertest"
	"github.com/printbridge/printbridge/bridge/natsbus"
)

// lockedBuffer is a log sink that several goroutines write.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

const (
	natsPassword = "n4ts-Pa55word-secret"
	natsToken    = "n4ts-t0ken-secret"
)

// startAuthServer runs an in-process nats-server on a free loopback port
// with opts applied, and returns its nats:// URL.
func startAuthServer(t *testing.T, apply func(*server.Options)) string {
	t.Helper()
	opts := &server.Options{Host: "127.0.0.1", Port: server.RANDOM_PORT, NoSigs: true, NoLog: true}
	apply(opts)
	srv, err := server.NewServer(opts)
	if err != nil {
		t.Fatalf("nats-server options: %v", err)
	}
	srv.Start()
	t.Cleanup(func() {
		srv.Shutdown()
		srv.WaitForShutdown()
	})
	if !srv.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server did not start")
	}
	return srv.ClientURL()
}

// withTLS makes the server require TLS with a client certificate of the
// test CA.
func withTLS(t *testing.T, pki *brokertest.PKI, opts *server.Options) {
	t.Helper()
	tc, err := server.GenTLSConfig(&server.TLSConfigOpts{CertFile: pki.ServerCert, KeyFile: pki.ServerKey, CaFile: pki.CAFile, Verify: true})
	if err != nil {
		t.Fatal(err)
	}
	opts.TLSConfig, opts.TLSVerify, opts.TLSTimeout = tc, true, 5
}

func connectNATS(t *testing.T, cfg natsbus.Config, log *slog.Logger) (*natsbus.Bus, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	cfg.ConnectTimeout = 5 * time.Second
	b, err := natsbus.New(ctx, cfg, log)
	if err == nil {
		t.Cleanup(func() { _ = b.Close() })
	}
	return b, err
}

// roundTrip publishes one event through b and waits for it on b.
func roundTrip(t *testing.T, b *natsbus.Bus) {
	t.Helper()
	got := make(chan struct{}, 1)
	if err := b.SubscribeEvents(context.Background(), "auth-1", "", func(bridge.EventMessage) {
		select {
		case got <- struct{}{}:
		default:
		}
	}); err != nil {
		t.Fatal(err)
	}
	env, data := event(t, "auth-1", 1)
	if err := b.PublishEvent(context.Background(), env, data); err != nil {
		t.Fatal(err)
	}
	select {
	case <-got:
	case <-time.After(waitTimeout):
		t.Fatal("event did not come back")
	}
}

func writeFile(t *testing.T, name, content string, mode os.FileMode) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestNATSPasswordOverTLS(t *testing.T) {
	pki := brokertest.NewPKI(t)
	url := startAuthServer(t, func(o *server.Options) {
		withTLS(t, pki, o)
		o.Username, o.Password = "edge", natsPassword
	})
	logs := &lockedBuffer{}
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	tlsOpts := natsbus.TLSOptions{CAFile: pki.CAFile, CertFile: pki.ClientCert, KeyFile: pki.ClientKey, ServerName: "broker.test"}
	b, err := connectNATS(t, natsbus.Config{URL: url, User: "edge", Password: natsPassword, TLS: tlsOpts, Topics: topics}, log)
	if err != nil {
		t.Fatalf("connect with password over TLS: %v", err)
	}
	if !b.Conn().TLSRequired() {
		t.Error("the connection does not use TLS")
	}
	roundTrip(t, b)

	failures := []struct {
		name string
		cfg  natsbus.Config
		want string
	}{
		{"wrong password", natsbus.Config{URL: url, User: "edge", Password: "wrong-" + natsPassword, TLS: tlsOpts}, "Authorization Violation"},
		{"unknown CA", natsbus.Config{URL: url, User: "edge", Password: natsPassword,
			TLS: natsbus.TLSOptions{CAFile: pki.OtherCAFile, CertFile: pki.ClientCert, KeyFile: pki.ClientKey, ServerName: "broker.test"}}, "unknown authority"},
		{"wrong server name", natsbus.Config{URL: url, User: "edge", Password: natsPassword,
			TLS: natsbus.TLSOptions{CAFile: pki.CAFile, CertFile: pki.ClientCert, KeyFile: pki.ClientKey}}, "certificate"},
		// nats.go upgrades to TLS when the server requires it, and then
		// fails to verify the certificate with the system's roots.
		{"no TLS options", natsbus.Config{URL: url, User: "edge", Password: natsPassword}, "certificate"},
	}
	for _, f := range failures {
		_, err := connectNATS(t, f.cfg, log)
		if err == nil {
			t.Errorf("%s: connect succeeded, want a failure", f.name)
			continue
		}
		t.Logf("%s: %v", f.name, err)
		if !strings.Contains(err.Error(), f.want) {
			t.Errorf("%s: error %q does not mention %q", f.name, err, f.want)
		}
		if strings.Contains(err.Error(), natsPassword) {
			t.Errorf("%s: the password appears in the error %q", f.name, err)
		}
	}
	if strings.Contains(logs.String(), natsPassword) {
		t.Errorf("the password appears in the log:\n%s", logs.String())
	}
}

func TestNATSTokenAuth(t *testing.T) {
	url := startAuthServer(t, func(o *server.Options) { o.Authorization = natsToken })
	logs := &lockedBuffer{}
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	b, err := connectNATS(t, natsbus.Config{URL: url, Token: natsToken, Topics: topics}, log)
	if err != nil {
		t.Fatalf("connect with token: %v", err)
	}
	roundTrip(t, b)
	_, err = connectNATS(t, natsbus.Config{URL: url, Token: "wrong-" + natsToken, Topics: topics}, log)
	if err == nil || strings.Contains(err.Error(), natsToken) {
		t.Errorf("wrong token: err = %v, want a failure that does not show the token", err)
	}
	// A token in the URL is redacted from the log too.
	tokenURL := strings.Replace(url, "nats://", "nats://"+natsToken+"@", 1)
	b2, err := connectNATS(t, natsbus.Config{URL: tokenURL, Topics: topics}, log)
	if err != nil {
		t.Fatalf("connect with the token in the URL: %v", err)
	}
	roundTrip(t, b2)
	if strings.Contains(logs.String(), natsToken) {
		t.Errorf("the token appears in the log:\n%s", logs.String())
	}
}

func TestNATSNKeySeedFile(t *testing.T) {
	user, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	public, _ := user.PublicKey()
	seed, _ := user.Seed()
	url := startAuthServer(t, func(o *server.Options) { o.Nkeys = []*server.NkeyUser{{Nkey: public}} })
	seedFile := writeFile(t, "edge.nk", string(seed)+"\n", 0o600)
	logs := &lockedBuffer{}
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	b, err := connectNATS(t, natsbus.Config{URL: url, NKeySeedFile: seedFile, Topics: topics}, log)
	if err != nil {
		t.Fatalf("connect with NKey seed file: %v", err)
	}
	roundTrip(t, b)

	other, _ := nkeys.CreateUser()
	otherSeed, _ := other.Seed()
	otherFile := writeFile(t, "other.nk", string(otherSeed), 0o600)
	_, err = connectNATS(t, natsbus.Config{URL: url, NKeySeedFile: otherFile, Topics: topics}, log)
	if err == nil || strings.Contains(err.Error(), string(otherSeed)) {
		t.Errorf("unknown NKey: err = %v, want a failure that does not show the seed", err)
	}
	if strings.Contains(logs.String(), string(seed)) || strings.Contains(logs.String(), string(otherSeed)) {
		t.Errorf("a seed appears in the log:\n%s", logs.String())
	}
}

func TestNATSCredsFile(t *testing.T) {
	operator, _ := nkeys.CreateOperator()
	operatorPublic, _ := operator.PublicKey()
	operatorClaims := jwt.NewOperatorClaims(operatorPublic)
	operatorJWT, err := operatorClaims.Encode(operator)
	if err != nil {
		t.Fatal(err)
	}
	account, _ := nkeys.CreateAccount()
	accountPublic, _ := account.PublicKey()
	accountClaims := jwt.NewAccountClaims(accountPublic)
	accountJWT, err := accountClaims.Encode(operator)
	if err != nil {
		t.Fatal(err)
	}
	user, _ := nkeys.CreateUser()
	userPublic, _ := user.PublicKey()
	userSeed, _ := user.Seed()
	userClaims := jwt.NewUserClaims(userPublic)
	userClaims.IssuerAccount = accountPublic
	userJWT, err := userClaims.Encode(account)
	if err != nil {
		t.Fatal(err)
	}
	creds, err := jwt.FormatUserConfig(userJWT, userSeed)
	if err != nil {
		t.Fatal(err)
	}
	credsFile := writeFile(t, "edge.creds", string(creds), 0o600)

	opClaims, err := jwt.DecodeOperatorClaims(operatorJWT)
	if err != nil {
		t.Fatal(err)
	}
	resolver := &server.MemAccResolver{}
	url := startAuthServer(t, func(o *server.Options) {
		o.TrustedOperators = []*jwt.OperatorClaims{opClaims}
		o.AccountResolver = resolver
	})
	if err := resolver.Store(accountPublic, accountJWT); err != nil {
		t.Fatal(err)
	}
	logs := &lockedBuffer{}
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	b, err := connectNATS(t, natsbus.Config{URL: url, CredsFile: credsFile, Topics: topics}, log)
	if err != nil {
		t.Fatalf("connect with credentials file: %v", err)
	}
	roundTrip(t, b)
	if _, err := connectNATS(t, natsbus.Config{URL: url, Topics: topics}, log); err == nil {
		t.Error("connect without credentials to an operator-mode server succeeded")
	}
	if strings.Contains(logs.String(), string(userSeed)) || strings.Contains(logs.String(), userJWT) {
		t.Errorf("the credentials appear in the log:\n%s", logs.String())
	}
}

func TestNATSAuthConfigErrors(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "missing")
	notSeed := writeFile(t, "bad.nk", "not a seed\n", 0o600)
	cases := []struct {
		name string
		cfg  natsbus.Config
		want string
	}{
		{"user and token", natsbus.Config{User: "a", Password: natsPassword, Token: natsToken}, "one way"},
		{"token and creds", natsbus.Config{Token: natsToken, CredsFile: missing}, "one way"},
		{"password without user", natsbus.Config{Password: natsPassword}, "without a user"},
		{"missing seed file", natsbus.Config{NKeySeedFile: missing}, missing},
		{"invalid seed file", natsbus.Config{NKeySeedFile: notSeed}, notSeed},
		{"missing creds file", natsbus.Config{CredsFile: missing}, missing},
		{"missing CA file", natsbus.Config{TLS: natsbus.TLSOptions{CAFile: missing}}, missing},
		{"certificate without key", natsbus.Config{TLS: natsbus.TLSOptions{CertFile: missing}}, "key file"},
	}
	for _, c := range cases {
		c.cfg.URL = "nats://127.0.0.1:1"
		_, err := natsbus.New(context.Background(), c.cfg, slog.New(slog.DiscardHandler))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: err = %v, want one naming %q", c.name, err, c.want)
			continue
		}
		if strings.Contains(err.Error(), natsPassword) || strings.Contains(err.Error(), natsToken) {
			t.Errorf("%s: a secret appears in the error %q", c.name, err)
		}
	}
}
