package brokertest

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// debianNATSServer is the path of the binary of Debian's nats-server package.
const debianNATSServer = "/usr/sbin/nats-server"

// FindNATSServer returns the path of the machine's nats-server binary, from
// PATH or Debian's package, and fails the test when there is none.
func FindNATSServer(tb testing.TB) string {
	tb.Helper()
	if bin, err := exec.LookPath("nats-server"); err == nil {
		return bin
	}
	if _, err := os.Stat(debianNATSServer); err != nil {
		tb.Fatalf("nats-server not found in PATH or at %s: install Debian's nats-server package, which `make test` does", debianNATSServer)
	}
	return debianNATSServer
}

// StartNATSProcess runs the nats-server binary of the machine (Debian's
// package, which `make test` installs) with JetStream on a free loopback
// port, and returns its URL and its version, such as "2.9.10". Unlike the
// embedded server it is the version a user's distribution ships. It stops
// when the test ends.
func StartNATSProcess(tb testing.TB) (url, version string) {
	tb.Helper()
	bin := FindNATSServer(tb)
	out, err := exec.Command(bin, "--version").Output()
	if err != nil {
		tb.Fatalf("%s --version: %v", bin, err)
	}
	// The output reads "nats-server: v2.9.10".
	version = strings.TrimPrefix(strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(string(out)), "nats-server:")), "v")

	dir := tb.TempDir()
	port := FreePort(tb)
	cmd := exec.Command(bin, "-a", "127.0.0.1", "-p", strconv.Itoa(port), "-js", "-sd", filepath.Join(dir, "store"))
	logFile, err := os.Create(filepath.Join(dir, "nats-server.log"))
	if err != nil {
		tb.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		tb.Fatalf("start %s: %v", bin, err)
	}
	tb.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		_ = logFile.Close()
	})
	addr := "127.0.0.1:" + strconv.Itoa(port)
	deadline := time.Now().Add(readyTimeout)
	for {
		conn, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			_ = conn.Close()
			return "nats://" + addr, version
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(logFile.Name())
			tb.Fatalf("nats-server on %s did not accept connections within %s: %v\n%s", addr, readyTimeout, err, log)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
