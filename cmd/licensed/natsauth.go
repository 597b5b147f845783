package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"

	"github.com/licenseledger/ledger/eventstore/jetstream"
)

// accountsFile is the file "licensed nats-auth" writes next to the seeds:
// the accounts block of an external nats-server's configuration.
const accountsFile = "accounts.conf"

// natsAuth is the "licensed nats-auth [--downstream-consumers N] DIR"
// command: it prepares the authentication of an external NATS server as
// the embedded one has it. In dir it creates, unless they exist, the nkey
// seeds of licensed's identity (licensed.nk) and of the subscribe-only
// downstream identity (downstream.nk), both mode 0600, and writes
// accounts.conf, the accounts block naming their public keys and the
// downstream account's limits, for the server's configuration to include.
// It prints the paths, never a seed.
func natsAuth(args []string, out io.Writer) error {
	const usage = "usage: licensed nats-auth [--downstream-consumers N] DIR"
	fs := flag.NewFlagSet("nats-auth", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	def := strconv.Itoa(jetstream.DefaultDownstreamMaxConsumers)
	if v := os.Getenv("LICENSED_DOWNSTREAM_CONSUMERS"); v != "" {
		def = v
	}
	consumers := fs.String("downstream-consumers", def, "")
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("%s: %w", usage, err)
	}
	if fs.NArg() != 1 || fs.Arg(0) == "" || fs.Arg(0)[0] == '-' {
		return errors.New(usage)
	}
	maxConsumers, err := parseDownstreamConsumers(*consumers)
	if err != nil {
		return err
	}
	dir := fs.Arg(0)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	svc, _, err := jetstream.UserSeed(filepath.Join(dir, serviceSeedFile))
	if err != nil {
		return err
	}
	down, _, err := jetstream.UserSeed(filepath.Join(dir, downstreamSeedFile))
	if err != nil {
		return err
	}
	conf, err := jetstream.AccountsConfig(jetstream.Auth{Service: svc, Downstream: down, DownstreamMaxConsumers: maxConsumers})
	if err != nil {
		return err
	}
	conf = "# Written by licensed nats-auth: the accounts of the license ledger.\n" +
		"# Public keys only; the seeds are in " + serviceSeedFile + " and " + downstreamSeedFile + ".\n" + conf
	path := filepath.Join(dir, accountsFile)
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(conf), 0o644); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	fmt.Fprintf(out, "nats-server accounts: %s\nlicensed (--nats-creds): %s\ndownstream services (nats --nkey): %s\n",
		path, filepath.Join(dir, serviceSeedFile), filepath.Join(dir, downstreamSeedFile))
	return nil
}
