package brokertest

import (
	"errors"
	"io"
	"net"
	"sync"
	"testing"
)

// Proxy forwards TCP connections from a loopback port to a target, so a
// test can cut a client's connection without the client or the broker
// closing it. The broker then gets no MQTT DISCONNECT before the
// connection ends, as after a crash or a network failure.
type Proxy struct {
	ln     net.Listener
	target string

	mu      sync.Mutex
	conns   map[net.Conn]struct{}
	down    bool
	wg      sync.WaitGroup
	stopped bool
}

// StartProxy listens on a free 127.0.0.1 port and forwards every accepted
// connection to target (host:port). It stops when the test ends.
func StartProxy(tb testing.TB, target string) *Proxy {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("listen for proxy to %s: %v", target, err)
	}
	p := &Proxy{ln: ln, target: target, conns: make(map[net.Conn]struct{})}
	p.wg.Add(1)
	go p.accept()
	tb.Cleanup(p.Close)
	return p
}

// Addr returns 127.0.0.1:<port> of the proxy.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// URL returns tcp://<Addr>, the form MQTT clients take.
func (p *Proxy) URL() string { return "tcp://" + p.Addr() }

// Cut closes every forwarded connection on both sides. The proxy goes on
// forwarding new connections unless it is down.
func (p *Proxy) Cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closeAll()
}

// SetDown(true) cuts every connection and closes new ones right after
// accepting them, as if the target were unreachable. SetDown(false)
// forwards new connections again.
func (p *Proxy) SetDown(down bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = down
	if down {
		p.closeAll()
	}
}

// closeAll closes every forwarded connection. The caller holds p.mu.
func (p *Proxy) closeAll() {
	for c := range p.conns {
		_ = c.Close()
	}
}

// Close stops listening, cuts every connection and waits for the
// forwarding goroutines.
func (p *Proxy) Close() {
	p.mu.Lock()
	p.stopped = true
	p.mu.Unlock()
	_ = p.ln.Close()
	p.Cut()
	p.wg.Wait()
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		client, err := p.ln.Accept()
		if errors.Is(err, net.ErrClosed) {
			return
		}
		if err != nil {
			continue
		}
		p.mu.Lock()
		if p.down || p.stopped {
			p.mu.Unlock()
			_ = client.Close()
			continue
		}
		p.mu.Unlock()

		server, err := net.Dial("tcp", p.target)
		if err != nil {
			_ = client.Close()
			continue
		}
		if !p.track(client, server) {
			continue
		}
		p.wg.Add(2)
		go p.pipe(client, server)
		go p.pipe(server, client)
	}
}

// track records both ends, or closes them when Close has begun.
func (p *Proxy) track(conns ...net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stopped {
		for _, c := range conns {
			_ = c.Close()
		}
		return false
	}
	for _, c := range conns {
		p.conns[c] = struct{}{}
	}
	return true
}

// pipe copies until either side fails, then closes both, so a cut of one
// end ends the other at once.
func (p *Proxy) pipe(dst, src net.Conn) {
	defer p.wg.Done()
	_, _ = io.Copy(dst, src)
	_ = dst.Close()
	_ = src.Close()
	p.mu.Lock()
	delete(p.conns, dst)
	delete(p.conns, src)
	p.mu.Unlock()
}
