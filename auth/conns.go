package auth

import (
	"net"
	"sync"
)

// Reasons passed to ConnLimitConfig.OnRefuse.
const (
	ConnRefusedPerClient = "per_client"
	ConnRefusedTotal     = "total"
)

// ConnLimitConfig configures LimitListener.
type ConnLimitConfig struct {
	// PerClient caps the open connections from one client address (keyed as
	// SourceIP keys requests: an IPv4 address, or an IPv6 /64); < 1 means no cap.
	PerClient int
	// Max caps the open connections in all; < 1 means no cap.
	Max int
	// OnRefuse, if set, is called for every connection closed on arrival, with
	// the client key and ConnRefusedPerClient or ConnRefusedTotal. It runs on
	// the accept loop: keep it short.
	OnRefuse func(client, reason string)
}

// ConnLimiter is a net.Listener that caps open connections per client address
// and in all. A connection over a cap is accepted and closed at once with a
// TCP reset (SO_LINGER 0), so it holds no file descriptor and no TIME_WAIT
// slot; the client sees "connection reset". A connection counts until it is
// closed, whoever closes it.
type ConnLimiter struct {
	net.Listener
	cfg ConnLimitConfig

	mu    sync.Mutex
	open  map[string]int
	total int
}

// LimitListener wraps ln.
func LimitListener(ln net.Listener, cfg ConnLimitConfig) *ConnLimiter {
	return &ConnLimiter{Listener: ln, cfg: cfg, open: map[string]int{}}
}

// Accept returns the next connection within the caps, closing those over them.
func (l *ConnLimiter) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		key := clientKey(c.RemoteAddr().String())
		reason := l.admit(key)
		if reason == "" {
			return &limitedConn{Conn: c, l: l, key: key}, nil
		}
		if tc, ok := c.(*net.TCPConn); ok {
			_ = tc.SetLinger(0)
		}
		_ = c.Close()
		if l.cfg.OnRefuse != nil {
			l.cfg.OnRefuse(key, reason)
		}
	}
}

func (l *ConnLimiter) admit(key string) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case l.cfg.Max > 0 && l.total >= l.cfg.Max:
		return ConnRefusedTotal
	case l.cfg.PerClient > 0 && l.open[key] >= l.cfg.PerClient:
		return ConnRefusedPerClient
	}
	l.open[key]++
	l.total++
	return ""
}

func (l *ConnLimiter) release(key string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.total--
	if l.open[key]--; l.open[key] <= 0 {
		delete(l.open, key)
	}
}

// Open returns the number of open connections from client (a SourceIP key),
// and in all.
func (l *ConnLimiter) Open(client string) (fromClient, total int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.open[client], l.total
}

// limitedConn gives its slot back once, on the first Close.
type limitedConn struct {
	net.Conn
	l    *ConnLimiter
	key  string
	once sync.Once
}

func (c *limitedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { c.l.release(c.key) })
	return err
}
