package webhooks

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Rules an endpoint's URL may break, each the slug of the problem the API
// answers with.
const (
	RuleURLInvalid       = "webhook-url-invalid"         // not an absolute URL with a host, or with credentials or a fragment
	RuleURLNotHTTPS      = "webhook-url-not-https"       // a scheme other than https
	RuleURLPrivate       = "webhook-url-private-address" // the host is or resolves to an address that is not public
	RuleURLUnresolvable  = "webhook-url-unresolvable"    // the host name does not resolve
	RuleEventTypeUnknown = "webhook-event-type-unknown"  // a filter names no published event type
	RuleInvalid          = "webhook-invalid"             // another field of a registration or replay is wrong
)

// RuleError is a registration, replay or URL refused for breaking a rule.
type RuleError struct {
	Rule   string
	Detail string
}

func (e *RuleError) Error() string { return e.Detail }

func refuse(rule, format string, args ...any) error {
	return &RuleError{Rule: rule, Detail: fmt.Sprintf(format, args...)}
}

// ErrAddressRefused is the error of a connection refused because it would
// reach an address that is not public.
var ErrAddressRefused = errors.New("webhooks: the address is not public")

// notPublic are the ranges, beside those netip classifies, that never
// reach a public service: "this network", shared address space (CGNAT),
// IETF protocol assignments, documentation and benchmarking ranges,
// reserved space and broadcast; NAT64, 6to4 and Teredo, which embed an
// IPv4 address that may be private; IPv4-compatible IPv6; documentation.
var notPublic = func() []netip.Prefix {
	var ps []netip.Prefix
	for _, s := range []string{
		"0.0.0.0/8", "100.64.0.0/10", "192.0.0.0/24", "192.0.2.0/24", "198.18.0.0/15",
		"198.51.100.0/24", "203.0.113.0/24", "240.0.0.0/4", "255.255.255.255/32",
		"::/96", "64:ff9b::/96", "64:ff9b:1::/48", "100::/64", "2001::/32", "2001:db8::/32", "2002::/16",
	} {
		ps = append(ps, netip.MustParsePrefix(s))
	}
	return ps
}()

// Public reports whether a is a public unicast address: not loopback,
// private, link-local, unspecified, multicast, shared (CGNAT) or
// reserved. An IPv4-mapped IPv6 address is judged as its IPv4 address.
func Public(a netip.Addr) bool {
	a = a.Unmap()
	if !a.IsValid() || a.IsLoopback() || a.IsPrivate() || a.IsUnspecified() || a.IsMulticast() ||
		a.IsLinkLocalUnicast() || a.IsLinkLocalMulticast() || a.IsInterfaceLocalMulticast() || a.Zone() != "" {
		return false
	}
	for _, p := range notPublic {
		if p.Contains(a) {
			return false
		}
	}
	return true
}

// Resolver resolves a host name to addresses; *net.Resolver is one.
type Resolver interface {
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

// Guard is the address policy of endpoints: at registration and at every
// connection a delivery opens.
type Guard struct {
	// AllowPrivate lifts the address rule and allows http: for tests and
	// private deployments whose receivers are on internal networks.
	AllowPrivate bool
	// Resolver resolves host names at registration; net.DefaultResolver
	// when nil.
	Resolver Resolver
	// allowAddr, set by tests only, exempts an address from the rule.
	allowAddr func(netip.AddrPort) bool
}

// CheckURL parses raw and checks it against the rules: an absolute https
// URL (http too when private addresses are allowed) with a host, no
// credentials and no fragment, whose host is a public address or resolves
// only to public addresses. It returns the URL as it will be called.
func (g *Guard) CheckURL(ctx context.Context, raw string) (*url.URL, error) {
	if len(raw) > 2048 {
		return nil, refuse(RuleURLInvalid, "the url is longer than 2048 characters")
	}
	u, err := url.Parse(raw)
	if err != nil || !u.IsAbs() || u.Host == "" || u.Opaque != "" {
		return nil, refuse(RuleURLInvalid, "the url must be an absolute URL with a host, such as https://hooks.example.com/ledger")
	}
	if u.User != nil {
		return nil, refuse(RuleURLInvalid, "the url must not carry credentials: authenticate deliveries by their signature")
	}
	if u.Fragment != "" || strings.Contains(raw, "#") {
		return nil, refuse(RuleURLInvalid, "the url must not have a fragment")
	}
	switch u.Scheme {
	case "https":
	case "http":
		if !g.AllowPrivate {
			return nil, refuse(RuleURLNotHTTPS, "the url must be https: deliveries carry signed events and are sent over TLS only")
		}
	default:
		return nil, refuse(RuleURLNotHTTPS, "the url must be https")
	}
	host := u.Hostname()
	port := uint16(443)
	if u.Scheme == "http" {
		port = 80
	}
	if p := u.Port(); p != "" {
		n, err := strconv.ParseUint(p, 10, 16)
		if err != nil || n == 0 {
			return nil, refuse(RuleURLInvalid, "the url's port %q is not a port number", p)
		}
		port = uint16(n)
	}
	if a, err := netip.ParseAddr(host); err == nil {
		if !g.AllowPrivate && !g.allowed(netip.AddrPortFrom(a, port)) {
			return nil, refuse(RuleURLPrivate, "the url's address %s is not a public address (loopback, private, link-local, shared, multicast or reserved): deliveries go to public addresses only", a)
		}
		return u, nil
	}
	if g.AllowPrivate {
		return u, nil
	}
	lower := strings.ToLower(strings.TrimSuffix(host, "."))
	if lower == "localhost" || strings.HasSuffix(lower, ".localhost") {
		return nil, refuse(RuleURLPrivate, "the url's host %s names this machine: deliveries go to public addresses only", host)
	}
	var r Resolver = net.DefaultResolver
	if g.Resolver != nil {
		r = g.Resolver
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	addrs, err := r.LookupNetIP(ctx, "ip", host)
	if err != nil || len(addrs) == 0 {
		return nil, refuse(RuleURLUnresolvable, "the url's host %s does not resolve", host)
	}
	for _, a := range addrs {
		if !g.allowed(netip.AddrPortFrom(a, port)) {
			return nil, refuse(RuleURLPrivate, "the url's host %s resolves to %s, which is not a public address: deliveries go to public addresses only", host, a.Unmap())
		}
	}
	return u, nil
}

func (g *Guard) allowed(ap netip.AddrPort) bool {
	if g.allowAddr != nil && g.allowAddr(ap) {
		return true
	}
	return Public(ap.Addr())
}

// control is the net.Dialer Control hook of deliveries: it runs on the
// address actually dialled, after name resolution, for every connection
// (a redirect, were it followed, and a name that resolves differently at
// delivery than at registration alike).
func (g *Guard) control(network, address string, _ syscall.RawConn) error {
	if g.AllowPrivate {
		return nil
	}
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return fmt.Errorf("%w: %s", ErrAddressRefused, address)
	}
	if !g.allowed(ap) {
		return fmt.Errorf("%w: %s", ErrAddressRefused, ap.Addr().Unmap())
	}
	return nil
}
