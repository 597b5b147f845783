package webhooks_test

import (
	"context"
	"errors"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/licenseledger/ledger/internal/webhooks"
)

func TestPublic(t *testing.T) {
	for _, c := range []struct {
		addr   string
		public bool
	}{
		{"93.184.215.14", true}, {"2606:2800:21f:cb07:6820:80da:af6b:8b2c", true}, {"8.8.8.8", true},
		{"127.0.0.1", false}, {"127.8.9.1", false}, {"10.1.2.3", false}, {"172.16.0.1", false}, {"192.168.1.1", false},
		{"169.254.169.254", false}, {"100.64.0.1", false}, {"0.0.0.0", false}, {"0.1.2.3", false}, {"224.0.0.1", false},
		{"255.255.255.255", false}, {"198.18.0.1", false}, {"192.0.2.1", false}, {"240.0.0.1", false},
		{"::1", false}, {"::", false}, {"fe80::1", false}, {"fc00::1", false}, {"fd12::1", false}, {"ff02::1", false},
		{"::ffff:127.0.0.1", false}, {"::ffff:10.0.0.1", false}, {"::ffff:8.8.8.8", true}, {"::127.0.0.1", false},
		{"64:ff9b::a00:1", false}, {"2002:a00:1::", false}, {"2001:db8::1", false},
	} {
		if got := webhooks.Public(netip.MustParseAddr(c.addr)); got != c.public {
			t.Errorf("Public(%s) = %v, want %v", c.addr, got, c.public)
		}
	}
}

// resolver resolves names from a table.
type resolver map[string][]netip.Addr

func (r resolver) LookupNetIP(_ context.Context, _, host string) ([]netip.Addr, error) {
	if a, ok := r[host]; ok {
		return a, nil
	}
	return nil, errors.New("no such host")
}

// TestURLRulesAtRegistration checks that every URL aimed at a non-public
// address, or not https, is refused with the rule it breaks, and that
// allowing private addresses lifts the address rule and allows http.
func TestURLRulesAtRegistration(t *testing.T) {
	g := webhooks.Guard{Resolver: resolver{
		"hooks.example.com":    {netip.MustParseAddr("93.184.215.14")},
		"internal.example.com": {netip.MustParseAddr("127.0.0.1")},
		"mixed.example.com":    {netip.MustParseAddr("93.184.215.14"), netip.MustParseAddr("10.0.0.7")},
		"mapped.example.com":   {netip.MustParseAddr("::ffff:192.168.0.1")},
	}}
	ctx := context.Background()
	for _, c := range []struct{ url, rule string }{
		{"https://hooks.example.com/ledger", ""},
		{"https://93.184.215.14:8443/x", ""},
		{"http://hooks.example.com/ledger", webhooks.RuleURLNotHTTPS},
		{"ftp://hooks.example.com/ledger", webhooks.RuleURLNotHTTPS},
		{"https://127.0.0.1/x", webhooks.RuleURLPrivate},
		{"https://10.0.0.1/x", webhooks.RuleURLPrivate},
		{"https://169.254.169.254/latest/meta-data", webhooks.RuleURLPrivate},
		{"https://100.64.0.9/x", webhooks.RuleURLPrivate},
		{"https://0.0.0.0/x", webhooks.RuleURLPrivate},
		{"https://[::1]/x", webhooks.RuleURLPrivate},
		{"https://[::ffff:127.0.0.1]/x", webhooks.RuleURLPrivate},
		{"https://[fe80::1%25eth0]/x", webhooks.RuleURLPrivate},
		{"https://localhost/x", webhooks.RuleURLPrivate},
		{"https://a.localhost./x", webhooks.RuleURLPrivate},
		{"https://internal.example.com/x", webhooks.RuleURLPrivate},
		{"https://mixed.example.com/x", webhooks.RuleURLPrivate},
		{"https://mapped.example.com/x", webhooks.RuleURLPrivate},
		{"https://nowhere.example.com/x", webhooks.RuleURLUnresolvable},
		{"https://user:pw@hooks.example.com/x", webhooks.RuleURLInvalid},
		{"https://hooks.example.com/x#frag", webhooks.RuleURLInvalid},
		{"/relative", webhooks.RuleURLInvalid},
		{"https://hooks.example.com:0/x", webhooks.RuleURLInvalid},
		{"https://", webhooks.RuleURLInvalid},
		{"https://" + strings.Repeat("a", 3000), webhooks.RuleURLInvalid},
	} {
		_, err := g.CheckURL(ctx, c.url)
		var re *webhooks.RuleError
		switch {
		case c.rule == "" && err != nil:
			t.Errorf("%s refused: %v", c.url, err)
		case c.rule != "" && (!errors.As(err, &re) || re.Rule != c.rule):
			t.Errorf("%s: %v, want rule %s", c.url, err, c.rule)
		}
	}
	open := webhooks.Guard{AllowPrivate: true}
	for _, u := range []string{"http://127.0.0.1:8080/x", "https://[::1]/x", "http://localhost/x", "https://10.0.0.1/x"} {
		if _, err := open.CheckURL(ctx, u); err != nil {
			t.Errorf("with private addresses allowed, %s: %v", u, err)
		}
	}
	if _, err := open.CheckURL(ctx, "ftp://10.0.0.1/x"); err == nil {
		t.Error("ftp accepted")
	}
}

// TestDeliveryRefusesNonPublicAddresses registers endpoints as if their
// hosts had resolved to public addresses, and checks that deliveries to
// loopback addresses (literal, IPv6, IPv4-mapped, a name resolving to
// 127.0.0.1) and through a redirect to a loopback address never reach a
// receiver, and are logged as refused.
func TestDeliveryRefusesNonPublicAddresses(t *testing.T) {
	srv := startNATS(t)
	js, _ := connect(t, srv)
	ensureEvents(t, js)
	target := newReceiver(t, false, nil)
	port := target.addr().Port()
	// The redirecting receiver is exempted from the rule; the target of its
	// redirect is not.
	redirect := newReceiver(t, false, nil)
	redirect.srv.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, target.url(), http.StatusTemporaryRedirect)
	})
	control := newReceiver(t, true, nil)
	s := openService(t, js, func(c *webhooks.Config) {
		c.RootCAs = control.roots()
		c.Guard.ExemptAddr(redirect.addr())
		c.Guard.ExemptAddr(control.addr())
		c.Retries = []time.Duration{time.Hour}
	})
	ctx := context.Background()
	var ids []string
	urls := []string{
		target.url(),
		"http://localhost:" + itoa(port) + "/x",
		"http://[::ffff:127.0.0.1]:" + itoa(port) + "/x",
		"http://[::1]:" + itoa(port) + "/x",
		redirect.url(),
	}
	for _, u := range urls {
		ep, _, err := s.RegisterUnchecked(ctx, "acme", webhooks.Registration{URL: u})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, ep.ID)
	}
	if _, _, err := s.Register(ctx, "acme", webhooks.Registration{URL: control.url()}); err != nil {
		t.Fatal(err)
	}
	run(t, s)
	publish(t, js, "acme", "UserAdded", added, 1)
	control.waitFor("the control endpoint", atLeast(1))
	for i, id := range ids {
		var log []webhooks.Delivery
		deadline := time.Now().Add(30 * time.Second)
		for len(log) == 0 && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
			var err error
			if log, _, err = s.Deliveries(ctx, "acme", id, 0, 10); err != nil {
				t.Fatal(err)
			}
		}
		if len(log) == 0 || log[0].Outcome != webhooks.OutcomeFailed {
			t.Fatalf("%s: log %+v", urls[i], log)
		}
		d := log[0]
		if i == len(urls)-1 {
			if d.Status != http.StatusTemporaryRedirect || !strings.Contains(d.Error, "redirect") {
				t.Fatalf("redirect: %+v", d)
			}
		} else if !strings.Contains(d.Error, "not public") && !strings.Contains(d.Error, "connection failed") {
			t.Fatalf("%s: %+v", urls[i], d)
		}
	}
	if got := target.receipts(); len(got) != 0 {
		t.Fatalf("the loopback target received %d deliveries", len(got))
	}
	if st := s.Stats(); st.Failed < uint64(len(urls)) || st.Delivered != 1 {
		t.Fatalf("stats %+v", st)
	}
}

func itoa(n uint16) string { return strconv.Itoa(int(n)) }
