package brokertest

import (
	"bytes"
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
	// cutPattern, when not nil, is the client data that makes the proxy
	// cut that connection, once; cutDone is closed after the cut.
	cutPattern []byte
	cutDone    chan struct{}
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

// CutWhenClientSends makes the proxy cut the first connection whose
// client sends pattern, before the read that completes pattern reaches
// the target, as if the network failed right then. Later connections are
// forwarded as usual. The returned channel is closed after the cut.
// Bytes of pattern read before that read have gone through already.
func (p *Proxy) CutWhenClientSends(pattern []byte) <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(pattern) == 0 {
		panic("brokertest: CutWhenClientSends needs a non-empty pattern")
	}
	p.cutPattern = bytes.Clone(pattern)
	p.cutDone = make(chan struct{})
	return p.cutDone
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
		go p.pipeFromClient(server, client)
	}
}

// pipeFromClient is pipe for the client's side, which also looks for the
// pattern of CutWhenClientSends while one is armed.
func (p *Proxy) pipeFromClient(server, client net.Conn) {
	defer p.finish(server, client)
	buf := make([]byte, 32<<10)
	// seen keeps the last bytes read, so that a pattern split between
	// two reads is found.
	var seen []byte
	for {
		n, err := client.Read(buf)
		if n > 0 {
			if done := p.takeCut(&seen, buf[:n]); done != nil {
				_ = client.Close()
				_ = server.Close()
				close(done)
				return
			}
			if _, werr := server.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// takeCut appends data to seen and, when seen then contains the armed
// pattern, disarms it and returns the channel to close after the cut.
func (p *Proxy) takeCut(seen *[]byte, data []byte) chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cutPattern == nil {
		return nil
	}
	*seen = append(*seen, data...)
	if !bytes.Contains(*seen, p.cutPattern) {
		if keep := len(p.cutPattern) - 1; len(*seen) > keep {
			*seen = append((*seen)[:0], (*seen)[len(*seen)-keep:]...)
		}
		return nil
	}
	done := p.cutDone
	p.cutPattern, p.cutDone = nil, nil
	*seen = nil
	return done
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
	_, _ = io.Copy(dst, src)
	p.finish(dst, src)
}

// finish closes and forgets both ends of a connection when one of its
// pipes ends.
func (p *Proxy) finish(dst, src net.Conn) {
	defer p.wg.Done()
	_ = dst.Close()
	_ = src.Close()
	p.mu.Lock()
	delete(p.conns, dst)
	delete(p.conns, src)
	p.mu.Unlock()
}
