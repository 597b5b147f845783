package codec_test

import (
	"slices"
	"testing"

	"github.com/licenseledger/ledger/domain/ledger"
	"github.com/licenseledger/ledger/eventstore"
	"github.com/licenseledger/ledger/internal/codec"
)

// The catalogue registers every event type of the domain, and only those.
func TestCatalogueCoversDomain(t *testing.T) {
	var registered []string
	for _, info := range codec.Events() {
		registered = append(registered, info.Type)
	}
	if !slices.Equal(registered, ledger.EventTypes) {
		t.Errorf("registered event types %v, the domain's %v", registered, ledger.EventTypes)
	}
	for _, typ := range ledger.EventTypes {
		info, ok := codec.Lookup(typ)
		if !ok || info.Type != typ || info.Version < 1 || codec.Versions[typ] != info.Version {
			t.Errorf("Lookup(%s) = %+v, %v; Versions %d", typ, info, ok, codec.Versions[typ])
		}
	}
	if _, ok := codec.Lookup("UserRenamed"); ok {
		t.Error("Lookup of an unknown type succeeded")
	}
}

// What the registrations say agrees with the domain: the subject member
// holds the user the event is about and the category is the stream the
// event is appended to.
func TestCatalogueAgreesWithDomain(t *testing.T) {
	c, _ := newCodec(t, user)
	for _, info := range codec.Events() {
		e := sampleEvent(info.Type, user)
		d, err := c.Decode(t.Context(), record(encode(t, c, e, sampleMeta())))
		if err != nil {
			t.Fatal(err)
		}
		if d.Meta.Subject != ledger.UserOf(e) || (info.SubjectMember() == "") != (ledger.UserOf(e) == "") {
			t.Errorf("%s: subject %q (member %q), the domain says %q", info.Type, d.Meta.Subject, info.SubjectMember(), ledger.UserOf(e))
		}
		want := eventstore.Ledger
		if ledger.IsActivity(e) {
			want = eventstore.Activity
		}
		if info.Category != want {
			t.Errorf("%s: category %s, appended to %s streams", info.Type, info.Category, want)
		}
	}
}

func TestEventInfo(t *testing.T) {
	added, _ := codec.Lookup(ledger.TypeUserAdded)
	if got := added.Sealed(); !slices.Equal(got, []string{"name", "email", "external_id"}) {
		t.Errorf("UserAdded sealed %v", got)
	}
	if got := added.NATSSubject("acme"); got != "ledger.acme.UserAdded" {
		t.Errorf("UserAdded subject %q", got)
	}
	act, _ := codec.Lookup(ledger.TypeActivityRecorded)
	if got := act.NATSSubject("acme"); got != "activity.acme.ActivityRecorded" {
		t.Errorf("ActivityRecorded subject %q", got)
	}
	if got := act.Sealed(); got != nil {
		t.Errorf("ActivityRecorded sealed %v", got)
	}
	opened, _ := codec.Lookup(ledger.TypeAccountOpened)
	if opened.Version != 2 || len(opened.Upcasts) != 1 || opened.Upcasts[0].From != 1 {
		t.Errorf("AccountOpened: version %d, upcasts %+v", opened.Version, opened.Upcasts)
	}
	// What Lookup returns is a copy: changing it changes no registration.
	added.Fields[0].Name = "changed"
	if again, _ := codec.Lookup(ledger.TypeUserAdded); again.Fields[0].Name != "user_id" {
		t.Errorf("Lookup shares its fields: %+v", again.Fields[0])
	}
}
