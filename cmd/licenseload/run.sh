#!/bin/sh
# Measure the ledger's HTTP API on this machine: build licensed and
# licenseload, then run the load once per durability against a fresh
# licensed on free loopback ports with a temporary data dir.
# Extra arguments go to licenseload, e.g. -duration 10s or -json.
set -eu
cd "$(dirname "$0")/../.."
bin=$(mktemp -d)
trap 'rm -rf "$bin"' EXIT
go build -o "$bin/licensed" ./cmd/licensed
go build -o "$bin/licenseload" ./cmd/licenseload
"$bin/licenseload" -spawn "$bin/licensed" -durability fsync,interval "$@"
