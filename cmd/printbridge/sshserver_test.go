package main

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

// sshServer is an SSH server on a loopback port that runs the command of
// each exec request as OpenSSH's sshd runs it for a user whose login
// shell is /bin/sh: /bin/sh -c COMMAND, with the channel as stdin and
// stdout. Tests use it with the real ssh client.
type sshServer struct {
	port int
	// keyFile is the client's private key in OpenSSH format.
	keyFile string
	// dir is the working directory of the commands.
	dir string

	mu       sync.Mutex // guards commands
	commands []string
}

// startSSHServer starts an sshServer that accepts one new client key and
// stops it when the test ends.
func startSSHServer(t *testing.T) *sshServer {
	t.Helper()
	_, hostKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	hostSigner, err := ssh.NewSignerFromKey(hostKey)
	if err != nil {
		t.Fatal(err)
	}
	clientPublic, clientKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	authorized, err := ssh.NewPublicKey(clientPublic)
	if err != nil {
		t.Fatal(err)
	}
	block, err := ssh.MarshalPrivateKey(clientKey, "printbridge test")
	if err != nil {
		t.Fatal(err)
	}
	s := &sshServer{keyFile: filepath.Join(t.TempDir(), "id_ed25519"), dir: t.TempDir()}
	if err := os.WriteFile(s.keyFile, pem.EncodeToMemory(block), 0o600); err != nil {
		t.Fatal(err)
	}

	config := &ssh.ServerConfig{
		PublicKeyCallback: func(_ ssh.ConnMetadata, key ssh.PublicKey) (*ssh.Permissions, error) {
			if string(key.Marshal()) != string(authorized.Marshal()) {
				return nil, errors.New("unknown key")
			}
			return nil, nil
		},
	}
	config.AddHostKey(hostSigner)
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.port = listener.Addr().(*net.TCPAddr).Port
	var wg sync.WaitGroup
	t.Cleanup(func() {
		_ = listener.Close()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			conn, err := listener.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				s.serve(t, conn, config)
			}()
		}
	}()
	return s
}

// clientCommand returns the ssh client command, without the remote
// command, for a hook's YAML: no user or system ssh config, no host key
// check and no prompts.
func (s *sshServer) clientCommand() string {
	return fmt.Sprintf("ssh -F /dev/null -o BatchMode=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR -o IdentitiesOnly=yes -i %s -p %d printbridge@127.0.0.1",
		s.keyFile, s.port)
}

// executed returns the command lines that the server has run.
func (s *sshServer) executed() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.commands...)
}

func (s *sshServer) serve(t *testing.T, conn net.Conn, config *ssh.ServerConfig) {
	defer conn.Close()
	server, channels, requests, err := ssh.NewServerConn(conn, config)
	if err != nil {
		return
	}
	defer server.Close()
	go ssh.DiscardRequests(requests)
	for newChannel := range channels {
		if newChannel.ChannelType() != "session" {
			_ = newChannel.Reject(ssh.UnknownChannelType, "only sessions")
			continue
		}
		channel, channelRequests, err := newChannel.Accept()
		if err != nil {
			t.Errorf("ssh server: accept session: %v", err)
			return
		}
		s.session(t, channel, channelRequests)
	}
}

// session replies to the requests of one session channel and runs its
// exec request.
func (s *sshServer) session(t *testing.T, channel ssh.Channel, requests <-chan *ssh.Request) {
	defer channel.Close()
	for req := range requests {
		if req.Type != "exec" {
			// env, pty-req and shell are not needed by the tests.
			_ = req.Reply(false, nil)
			continue
		}
		var request struct{ Command string }
		if err := ssh.Unmarshal(req.Payload, &request); err != nil {
			_ = req.Reply(false, nil)
			continue
		}
		_ = req.Reply(true, nil)
		status := s.run(t, channel, request.Command)
		_, _ = channel.SendRequest("exit-status", false, ssh.Marshal(struct{ Status uint32 }{status}))
		return
	}
}

func (s *sshServer) run(t *testing.T, channel ssh.Channel, command string) uint32 {
	s.mu.Lock()
	s.commands = append(s.commands, command)
	s.mu.Unlock()
	cmd := exec.Command("/bin/sh", "-c", command)
	cmd.Dir = s.dir
	cmd.Stdin = channel
	cmd.Stdout = channel
	cmd.Stderr = channel.Stderr()
	cmd.WaitDelay = 5 * time.Second
	err := cmd.Run()
	_ = channel.CloseWrite()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &exit):
		if ws, ok := exit.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return 128 + uint32(ws.Signal())
		}
		return uint32(exit.ExitCode())
	default:
		t.Errorf("ssh server: run %q: %v", command, err)
		return 255
	}
}

// sshClientWorks runs the real ssh client against s once, so that a test
// fails on a broken setup with ssh's own message.
func (s *sshServer) sshClientWorks(t *testing.T) {
	t.Helper()
	args := strings.Fields(s.clientCommand())
	out, err := exec.Command(args[0], append(args[1:], "echo", "ready")...).CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "ready" {
		t.Fatalf("ssh client against the test server: %v, output %q", err, out)
	}
}
