// Package jstest runs an embedded nats-server with JetStream for the tests
// of the JetStream packages: on a directory that outlives it and a port
// kept across restarts, so that a test can stop and restart it.
package jstest

import (
	"net"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Server is an embedded nats-server with JetStream, stopped when the test
// ends.
type Server struct {
	T    testing.TB
	Dir  string // the JetStream store directory
	Srv  *server.Server
	name string
	port int
}

// Start starts a server named name on a new temporary directory and a
// free loopback port.
func Start(t testing.TB, name string) *Server {
	t.Helper()
	s := &Server{T: t, Dir: t.TempDir(), name: name, port: -1}
	s.Start()
	t.Cleanup(s.Stop)
	return s
}

// Start starts the server again on its directory and port.
func (s *Server) Start() {
	s.T.Helper()
	srv, err := server.NewServer(&server.Options{
		ServerName: s.name,
		Host:       "127.0.0.1",
		Port:       s.port,
		JetStream:  true,
		StoreDir:   s.Dir,
		NoSigs:     true,
		NoLog:      true,
	})
	if err != nil {
		s.T.Fatalf("new server: %v", err)
	}
	go srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		srv.Shutdown()
		s.T.Fatal("server not ready")
	}
	s.Srv = srv
	s.port = srv.Addr().(*net.TCPAddr).Port
}

// Stop shuts the server down and waits for it.
func (s *Server) Stop() {
	if s.Srv != nil {
		s.Srv.Shutdown()
		s.Srv.WaitForShutdown()
		s.Srv = nil
	}
}

// Restart stops the server and starts it again on the same directory.
func (s *Server) Restart() {
	s.T.Helper()
	s.Stop()
	s.Start()
}

// Connect returns a JetStream context on a new connection with opts,
// closed when the test ends.
func (s *Server) Connect(opts ...nats.Option) jetstream.JetStream {
	s.T.Helper()
	nc, err := nats.Connect(s.Srv.ClientURL(), opts...)
	if err != nil {
		s.T.Fatalf("connect: %v", err)
	}
	s.T.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		s.T.Fatalf("jetstream: %v", err)
	}
	return js
}
