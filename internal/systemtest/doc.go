// Package systemtest holds the system tests of the license ledger: they
// build cmd/licensed, run the binary as the service runs in production
// (its embedded NATS server, its data directory, signals, a second process
// on the same NATS) and check what clients, downstream services and
// auditors rely on. The package has tests only.
package systemtest
