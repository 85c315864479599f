package handoff

import (
	"net"
	"testing"
)

func TestServes(t *testing.T) {
	for _, tt := range []struct {
		bound, addr string
		want        bool
	}{
		{"[::]:443", ":443", true},
		{"0.0.0.0:443", ":443", true},
		{"[::]:443", ":8443", false},
		{"127.0.0.1:7948", "127.0.0.1:7948", true},
		{"127.0.0.1:7948", "localhost:7948", true},
		{"127.0.0.1:7948", "0.0.0.0:7948", false},
		{"0.0.0.0:7947", "0.0.0.0:7947", true},
		{"0.0.0.0:7947", "[::]:7947", false},
		{"10.0.0.5:443", ":443", false},
		{"127.0.0.1:41234", "127.0.0.1:0", true},
		{"127.0.0.1:443", "127.0.0.1:https", true},
	} {
		bound, err := net.ResolveTCPAddr("tcp", tt.bound)
		if err != nil {
			t.Fatal(err)
		}
		got, err := serves(bound, tt.addr)
		if err != nil || got != tt.want {
			t.Errorf("socket on %s serves %q: %v, %v; want %v", tt.bound, tt.addr, got, err, tt.want)
		}
	}
	if _, err := serves(&net.TCPAddr{Port: 1}, "no-port"); err == nil {
		t.Error("an address without a port: no error")
	}
}
