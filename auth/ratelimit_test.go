package auth

import "testing"

// clientKey names one client per IPv4 address and per IPv6 /64, whatever
// the port, and takes an address it cannot parse as it is.
func TestClientKey(t *testing.T) {
	for _, tt := range []struct{ addr, want string }{
		{"127.0.0.1:5000", "127.0.0.1"},
		{"10.1.2.3:1", "10.1.2.3"},
		{"[::ffff:10.1.2.3]:443", "10.1.2.3"},
		{"[2001:db8:1:2:3:4:5:6]:80", "2001:db8:1:2::/64"},
		{"[2001:db8:1:2::9]:81", "2001:db8:1:2::/64"},
		{"[fe80::1%eth0]:80", "fe80::1%eth0"},
		{"unix-socket", "unix-socket"},
		{"010.1.2.3:80", "010.1.2.3"},
	} {
		if got := clientKey(tt.addr); got != tt.want {
			t.Errorf("clientKey(%q) = %q, want %q", tt.addr, got, tt.want)
		}
	}
	if n := testing.AllocsPerRun(100, func() { clientKey("127.0.0.1:5000") }); n != 0 {
		t.Errorf("clientKey of an IPv4 address: %v allocations, want 0", n)
	}
}
