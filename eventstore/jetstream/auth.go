package jetstream

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"text/template"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	"github.com/licenseledger/ledger/internal/contract"
)

// Accounts of a NATS server that requires authentication (see [Auth]).
const (
	// ServiceAccount holds the ledger's streams (events, data keys, API
	// tokens); its only user is the service's own identity.
	ServiceAccount = "LEDGER"
	// DownstreamAccount holds the subscribe-only users of downstream
	// services and their mirror of the event stream.
	DownstreamAccount = "DOWNSTREAM"
)

// Subjects the two accounts of [Auth] share.
const (
	// DownstreamAPIPrefix is the prefix under which the service account
	// reaches the JetStream API of the downstream account, to create and
	// update the mirror ([EnsureDownstreamMirror]).
	DownstreamAPIPrefix = "$JS.downstream.API"
	// ledgerAPIPrefix is the prefix under which the downstream account's
	// mirror reaches the consumer API of the service account.
	ledgerAPIPrefix = "$JS.ledger.API"
	// mirrorDeliverPrefix is where the service account delivers the
	// mirror's messages.
	mirrorDeliverPrefix = "deliver.ledger"
)

// Auth makes an embedded server require authentication, with two nkey
// users in two accounts:
//
//   - the service's own identity, in [ServiceAccount], with every right:
//     it alone can publish events, data keys and API tokens and create,
//     change or delete the streams;
//   - the downstream identity, in [DownstreamAccount], which can only read
//     the published events: through durable or ephemeral consumers on
//     "LEDGER", a mirror, in its own account and kept by the server, of the
//     service account's published stream "EVENTS" ([contract.Stream])
//     with the "events." prefix of its subjects removed, and through plain
//     subscriptions to ledger.>, activity.> and billing.>, on which that
//     mirror republishes every message it stores. Its permissions are
//     [DownstreamPermissions].
//
// Downstream services see only the published stream, never the store's:
// its messages are the envelopes of the published contract, with no
// client's idempotency key and no internal header. The mirror drops the
// publisher's Nats-Expected-* headers, and its republished messages have
// no reply subject (a plain subscription to a subject exported from the
// service account would show the publisher's acknowledgement inbox).
//
// The downstream identity works in an account of its own, not in the
// service's with restricted permissions, because NATS checks a client's
// permissions on the subjects it publishes to, not on the subjects it
// makes the server publish to: a request's reply subject, and a push
// consumer's delivery subject. A client allowed to call the JetStream API
// in the service's account could make the server write API answers, or
// copies of stored events, onto the store's subjects, and deliver events
// into the token bucket or the key stream. Across accounts, replies
// travel on subjects the server makes up, and deliveries stay in the
// downstream account but for the subjects it imports from the service's:
// the one the mirror creates its consumer on, and flow control. So that a
// downstream consumer cannot deliver events into other subjects of the
// service account's consumer API, only that one subject is imported; an
// event delivered there is not a consumer's configuration, and the server
// refuses it. The downstream account's JetStream limits
// ([DefaultDownstreamMaxConsumers], [DownstreamMaxAckPending]) bound what
// the downstream identity can make the server hold.
type Auth struct {
	// Service is the public nkey ("U...") of the service's identity.
	Service string
	// Downstream is the public nkey of the subscribe-only identity.
	Downstream string
	// DownstreamMaxConsumers caps the consumers downstream services may
	// keep on their mirror at once; 0 means [DefaultDownstreamMaxConsumers].
	DownstreamMaxConsumers int
}

// JetStream limits of [DownstreamAccount]. Whoever holds the downstream
// credential could otherwise exhaust the server: thousands of consumers,
// consumers holding unbounded numbers of unacknowledged messages, or
// streams of its own in memory.
//
// The account's file storage is not capped: its only stream is the mirror,
// as large as the service's event stream, and a cap below that would stop
// the mirror. Its size is bounded by the service's stream instead, and
// max_streams 1 leaves room for nothing else (the downstream identity
// cannot create streams anyway). Memory storage is 0: the mirror is on
// disk and nothing else may hold memory-backed streams.
const (
	// DefaultDownstreamMaxConsumers is the default of
	// [Auth.DownstreamMaxConsumers].
	DefaultDownstreamMaxConsumers = 1000
	// DownstreamMaxAckPending caps the unacknowledged messages a downstream
	// consumer may ask to hold: a consumer asking for more is refused. It
	// is the bound nats.go's legacy JetStream API asks for by default (its
	// subscription channel's length), so that its pull and push
	// subscriptions work unchanged; a consumer that does not say gets
	// JetStream's default of 1,000.
	DownstreamMaxAckPending = 64 * 1024
)

// DownstreamPermissions are what the downstream identity may do in its
// account, nothing else:
//
// Publish (JetStream API requests and acknowledgements, all on the mirror
// "LEDGER" of its account):
//
//	$JS.API.INFO                          account information
//	$JS.API.STREAM.INFO.LEDGER            the stream's information
//	$JS.API.CONSUMER.CREATE.LEDGER        create a consumer (legacy ephemeral)
//	$JS.API.CONSUMER.CREATE.LEDGER.>      create or update a consumer (with its name, and filter)
//	$JS.API.CONSUMER.DURABLE.CREATE.LEDGER.*  create a durable consumer (legacy)
//	$JS.API.CONSUMER.INFO.LEDGER.*        a consumer's information
//	$JS.API.CONSUMER.DELETE.LEDGER.*      delete a consumer
//	$JS.API.CONSUMER.NAMES.LEDGER         list consumers
//	$JS.API.CONSUMER.LIST.LEDGER          list consumers with their information
//	$JS.API.CONSUMER.MSG.NEXT.LEDGER.*    pull messages
//	$JS.ACK.LEDGER.>                      acknowledge messages
//	$JS.FC.LEDGER.>                       answer a push consumer's flow control
//
// Subscribe: ledger.>, activity.>, billing.> (the mirror's republished
// messages), and _INBOX.> (API answers, pulled messages, push deliveries
// to an inbox).
//
// Everything else is refused: publishing on ledger.>, activity.>,
// billing.>, keys.>
// or $KV.>, creating, changing, purging or deleting a stream, deleting or
// reading single messages, and any subject of the service account.
func DownstreamPermissions() (publish, subscribe []string) {
	return []string{
			"$JS.API.INFO",
			"$JS.API.STREAM.INFO.LEDGER",
			"$JS.API.CONSUMER.CREATE.LEDGER",
			"$JS.API.CONSUMER.CREATE.LEDGER.>",
			"$JS.API.CONSUMER.DURABLE.CREATE.LEDGER.*",
			"$JS.API.CONSUMER.INFO.LEDGER.*",
			"$JS.API.CONSUMER.DELETE.LEDGER.*",
			"$JS.API.CONSUMER.NAMES.LEDGER",
			"$JS.API.CONSUMER.LIST.LEDGER",
			"$JS.API.CONSUMER.MSG.NEXT.LEDGER.*",
			"$JS.ACK.LEDGER.>",
			"$JS.FC.LEDGER.>",
		}, []string{
			"ledger.>",
			"activity.>",
			"billing.>",
			"_INBOX.>",
		}
}

// accountsTemplate is the accounts block of the server's configuration.
// The service account's published stream is "EVENTS"; the downstream
// account's mirror of it is "LEDGER".
var accountsTemplate = template.Must(template.New("accounts").Parse(`accounts {
  LEDGER {
    jetstream: enabled
    users: [
      { nkey: {{.Service}} }
    ]
    exports: [
      # The downstream account's mirror of the published stream: it
      # creates its consumer, filtered by its subject transforms, on this
      # one subject.
      { service: "$JS.API.CONSUMER.CREATE.EVENTS", accounts: [DOWNSTREAM] }
      { service: "$JS.FC.EVENTS.>", accounts: [DOWNSTREAM] }
      { stream: "deliver.ledger.>", accounts: [DOWNSTREAM] }
    ]
    imports: [
      # The service creates and updates that mirror, and replaces it
      # when its source changes.
      { service: { account: DOWNSTREAM, subject: "$JS.API.STREAM.INFO.LEDGER" }, to: "$JS.downstream.API.STREAM.INFO.LEDGER" }
      { service: { account: DOWNSTREAM, subject: "$JS.API.STREAM.CREATE.LEDGER" }, to: "$JS.downstream.API.STREAM.CREATE.LEDGER" }
      { service: { account: DOWNSTREAM, subject: "$JS.API.STREAM.UPDATE.LEDGER" }, to: "$JS.downstream.API.STREAM.UPDATE.LEDGER" }
      { service: { account: DOWNSTREAM, subject: "$JS.API.STREAM.DELETE.LEDGER" }, to: "$JS.downstream.API.STREAM.DELETE.LEDGER" }
    ]
  }
  DOWNSTREAM {
    # The mirror on disk, unbounded but for the published stream's size;
    # nothing in memory; no other stream; bounded consumers.
    jetstream: {
      max_file: -1
      max_mem: 0
      max_streams: 1
      max_consumers: {{.MaxConsumers}}
      max_ack_pending: {{.MaxAckPending}}
    }
    users: [
      {
        nkey: {{.Downstream}}
        permissions: {
          publish: { allow: [{{range $i, $s := .Publish}}{{if $i}}, {{end}}"{{$s}}"{{end}}] }
          subscribe: { allow: [{{range $i, $s := .Subscribe}}{{if $i}}, {{end}}"{{$s}}"{{end}}] }
        }
      }
    ]
    exports: [
      { service: "$JS.API.STREAM.INFO.LEDGER", accounts: [LEDGER] }
      { service: "$JS.API.STREAM.CREATE.LEDGER", accounts: [LEDGER] }
      { service: "$JS.API.STREAM.UPDATE.LEDGER", accounts: [LEDGER] }
      { service: "$JS.API.STREAM.DELETE.LEDGER", accounts: [LEDGER] }
    ]
    imports: [
      { service: { account: LEDGER, subject: "$JS.API.CONSUMER.CREATE.EVENTS" }, to: "$JS.ledger.API.CONSUMER.CREATE.EVENTS" }
      { service: { account: LEDGER, subject: "$JS.FC.EVENTS.>" } }
      { stream: { account: LEDGER, subject: "deliver.ledger.>" } }
    ]
  }
}
`))

// AccountsConfig returns the accounts block of a nats-server
// configuration file that sets up a as [Auth] describes. The same text
// configures an external server (docs/deploy.md); its nkeys may be given
// as "$VARIABLE" references to the server's environment.
func AccountsConfig(a Auth) (string, error) {
	for _, k := range []string{a.Service, a.Downstream} {
		if !strings.HasPrefix(k, "$") && !nkeys.IsValidPublicUserKey(k) {
			return "", fmt.Errorf("jetstream: %q is not a public user nkey", k)
		}
	}
	if a.Service == a.Downstream {
		return "", errors.New("jetstream: the service and downstream identities must differ")
	}
	maxConsumers := a.DownstreamMaxConsumers
	switch {
	case maxConsumers == 0:
		maxConsumers = DefaultDownstreamMaxConsumers
	case maxConsumers < 0:
		return "", fmt.Errorf("jetstream: downstream consumer limit %d below 0", maxConsumers)
	}
	pub, sub := DownstreamPermissions()
	var b bytes.Buffer
	err := accountsTemplate.Execute(&b, struct {
		Service, Downstream         string
		Publish, Subscribe          []string
		MaxConsumers, MaxAckPending int
	}{a.Service, a.Downstream, pub, sub, maxConsumers, DownstreamMaxAckPending})
	return b.String(), err
}

// DownstreamStream is the name of the downstream account's mirror of the
// published stream: the stream downstream consumers read.
const DownstreamStream = "LEDGER"

// MirrorConfig returns the configuration of the downstream account's
// mirror of the service account's published stream ([contract.Stream]):
// the stream downstream consumers read. Its subject transforms remove the
// "events." prefix (events.ledger.> becomes ledger.>, events.activity.>
// activity.>, events.billing.> billing.>) and mirror nothing else; it
// republishes every message it stores on its subject, without reply
// subject, for plain subscriptions. replicas is its replica count;
// compress has the server compress its blocks once full (see
// [Config.Compress]: its readers, consumers, read it in order).
func MirrorConfig(replicas int, compress bool) jetstream.StreamConfig {
	if replicas <= 0 {
		replicas = 1
	}
	var transforms []jetstream.SubjectTransformConfig
	for _, cat := range []string{"ledger", "activity", "billing"} {
		transforms = append(transforms, jetstream.SubjectTransformConfig{Source: contract.SubjectPrefix + cat + ".>", Destination: cat + ".>"})
	}
	return jetstream.StreamConfig{
		Name:        DownstreamStream,
		Description: "License ledger events for downstream services (contract v2): a mirror of the published stream EVENTS without the events. prefix",
		Storage:     jetstream.FileStorage,
		Retention:   jetstream.LimitsPolicy,
		Replicas:    replicas,
		Compression: compression(compress),
		Mirror: &jetstream.StreamSource{
			Name:              contract.Stream,
			SubjectTransforms: transforms,
			External: &jetstream.ExternalStream{
				APIPrefix:     ledgerAPIPrefix,
				DeliverPrefix: mirrorDeliverPrefix,
			},
		},
		RePublish: &jetstream.RePublish{Source: ">", Destination: ">"},
	}
}

// EnsureDownstreamMirror creates or updates, over a connection of the
// service's identity, the mirror downstream consumers read (see [Auth]).
// A mirror of another source (the store's stream, before the published
// stream existed) is deleted and created again: a mirror's source cannot
// change, and its consumers go with it. On a server without the
// downstream account it fails with [nats.ErrNoResponders] or a timeout.
func EnsureDownstreamMirror(ctx context.Context, nc *nats.Conn, replicas int, compress bool) error {
	js, err := jetstream.NewWithAPIPrefix(nc, DownstreamAPIPrefix)
	if err != nil {
		return fmt.Errorf("jetstream: downstream mirror: %w", err)
	}
	cfg := MirrorConfig(replicas, compress)
	for {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err = replaceStaleMirror(cctx, js, cfg)
		if err == nil {
			_, err = EnsureStream(cctx, js, cfg)
		}
		cancel()
		if err == nil || !transient(err) || errors.Is(err, nats.ErrNoResponders) || ctx.Err() != nil {
			break
		}
		select {
		case <-ctx.Done():
		case <-time.After(100 * time.Millisecond):
		}
	}
	if err != nil {
		return fmt.Errorf("jetstream: downstream mirror: %w", err)
	}
	return nil
}

// replaceStaleMirror deletes the downstream mirror when it mirrors another
// stream, or the same without the subject transforms of cfg.
func replaceStaleMirror(ctx context.Context, js jetstream.JetStream, cfg jetstream.StreamConfig) error {
	st, err := js.Stream(ctx, cfg.Name)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	have := st.CachedInfo().Config.Mirror
	if have != nil && have.Name == cfg.Mirror.Name && slices.Equal(have.SubjectTransforms, cfg.Mirror.SubjectTransforms) {
		return nil
	}
	if err := js.DeleteStream(ctx, cfg.Name); err != nil && !errors.Is(err, jetstream.ErrStreamNotFound) {
		return fmt.Errorf("delete the mirror of another stream: %w", err)
	}
	return nil
}

// CredentialOption returns the connect option for the credential in the
// file at path: a NATS user credentials file (a user JWT and its nkey
// seed, "*.creds") or a file holding an nkey seed, told apart by content.
func CredentialOption(path string) (nats.Option, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("jetstream: credentials: %w", err)
	}
	defer clear(b)
	if bytes.Contains(b, []byte("BEGIN NATS USER JWT")) {
		return nats.UserCredentials(path), nil
	}
	kp, err := nkeys.ParseDecoratedNKey(b)
	if err != nil {
		return nil, fmt.Errorf("jetstream: credentials %s: neither a .creds file nor an nkey seed", path)
	}
	defer kp.Wipe()
	if _, err := kp.Seed(); err != nil {
		return nil, fmt.Errorf("jetstream: credentials %s: no seed: %w", path, err)
	}
	opt, err := nats.NkeyOptionFromSeed(path)
	if err != nil {
		return nil, fmt.Errorf("jetstream: credentials %s: %w", path, err)
	}
	return opt, nil
}

// UserSeed reads the nkey user seed kept in the file at path, or creates
// one there (mode 0600) when there is no file. It returns the public key;
// the seed stays in the file. A file of looser mode is made 0600.
func UserSeed(path string) (public string, created bool, err error) {
	b, err := os.ReadFile(path)
	switch {
	case err == nil:
		defer clear(b)
		kp, err := nkeys.ParseDecoratedNKey(b)
		if err != nil {
			return "", false, fmt.Errorf("jetstream: nkey seed %s: %w", path, err)
		}
		defer kp.Wipe()
		if _, err := kp.Seed(); err != nil {
			return "", false, fmt.Errorf("jetstream: nkey seed %s: %w", path, err)
		}
		pub, err := kp.PublicKey()
		if err != nil || !nkeys.IsValidPublicUserKey(pub) {
			return "", false, fmt.Errorf("jetstream: nkey seed %s: not a user seed", path)
		}
		if fi, err := os.Stat(path); err == nil && fi.Mode().Perm() != 0o600 {
			if err := os.Chmod(path, 0o600); err != nil {
				return "", false, fmt.Errorf("jetstream: nkey seed %s: %w", path, err)
			}
		}
		return pub, false, nil
	case !errors.Is(err, os.ErrNotExist):
		return "", false, fmt.Errorf("jetstream: nkey seed: %w", err)
	}
	kp, err := nkeys.CreateUser()
	if err != nil {
		return "", false, fmt.Errorf("jetstream: new nkey: %w", err)
	}
	defer kp.Wipe()
	seed, err := kp.Seed()
	if err != nil {
		return "", false, err
	}
	defer clear(seed)
	pub, err := kp.PublicKey()
	if err != nil {
		return "", false, err
	}
	// Written to a temporary file first, so that a crash leaves no
	// half-written seed under the final name.
	tmp, err := os.CreateTemp(filepath.Dir(path), ".nkey-*")
	if err != nil {
		return "", false, fmt.Errorf("jetstream: nkey seed: %w", err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return "", false, fmt.Errorf("jetstream: nkey seed: %w", err)
	}
	_, werr := tmp.Write(append(seed, '\n'))
	if werr == nil {
		werr = tmp.Sync()
	}
	if cerr := tmp.Close(); werr == nil {
		werr = cerr
	}
	if werr != nil {
		return "", false, fmt.Errorf("jetstream: nkey seed: %w", werr)
	}
	// Link, not rename: a process that created the file first wins, and
	// both then use its seed.
	if err := os.Link(tmp.Name(), path); err != nil {
		if errors.Is(err, os.ErrExist) {
			return UserSeed(path)
		}
		return "", false, fmt.Errorf("jetstream: nkey seed: %w", err)
	}
	return pub, true, nil
}
