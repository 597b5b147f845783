package attribution_test

import (
	"errors"
	"testing"

	"github.com/licenseledger/ledger/domain/ledger"
	"github.com/licenseledger/ledger/projections"
	"github.com/licenseledger/ledger/projections/attribution"
	"github.com/licenseledger/ledger/projections/internal/fixture"
)

// seeded returns the seed story folded, then Ann deleted with her records
// reassigned to Dee: Cy's activities, first reassigned to Ann, follow the
// chain to Dee.
func seeded(t *testing.T, deleteAnn bool) *attribution.Projection {
	t.Helper()
	l := fixture.New()
	if err := fixture.Seed(t.Context(), l); err != nil {
		t.Fatal(err)
	}
	if deleteAnn {
		if _, err := l.Do(t.Context(), "acme", fixture.Operator,
			ledger.DeleteUser{UserID: "ann", Confirm: "ann", ReassignTo: "dee", At: fixture.H(17)}); err != nil {
			t.Fatal(err)
		}
	}
	p := attribution.New()
	for _, d := range l.Live() {
		if err := p.Apply(d); err != nil {
			t.Fatal(err)
		}
	}
	return p
}

func TestAttribution(t *testing.T) {
	type who struct{ user, userName, owner, ownerName string }
	cases := []struct {
		name      string
		deleteAnn bool
		want      map[string]who
	}{
		{"seed story", false, map[string]who{
			"act-1": {"bob", fixture.BobName, "bob", fixture.BobName}, // deactivated: name kept
			"act-2": {"ann", fixture.AnnName, "ann", fixture.AnnName},
			"act-3": {"cy", "", "ann", fixture.AnnName}, // deleted: blank, reassigned
			"act-4": {"cy", "", "ann", fixture.AnnName},
		}},
		{"reassignee deleted in turn", true, map[string]who{
			"act-1": {"bob", fixture.BobName, "bob", fixture.BobName},
			"act-2": {"ann", "", "dee", fixture.DeeName},
			"act-3": {"cy", "", "dee", fixture.DeeName},
			"act-4": {"cy", "", "dee", fixture.DeeName},
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := seeded(t, tc.deleteAnn)
			page, err := p.Activities("acme", 0, 0)
			if err != nil {
				t.Fatal(err)
			}
			if len(page.Activities) != len(tc.want) || page.Next != 0 {
				t.Fatalf("page = %+v, want %d activities and no next", page, len(tc.want))
			}
			for i, a := range page.Activities {
				if a.Seq != i+1 || a.Kind != "note" || a.Ref != "ref-of-"+a.ID || a.At.IsZero() {
					t.Errorf("activity %d = %+v", i, a)
				}
				if got := (who{a.UserID, a.UserName, a.OwnerID, a.OwnerName}); got != tc.want[a.ID] {
					t.Errorf("%s: %+v, want %+v", a.ID, got, tc.want[a.ID])
				}
			}
		})
	}
}

func TestPagination(t *testing.T) {
	p := seeded(t, false)
	cases := []struct {
		after, limit int
		ids          []string
		next         int
	}{
		{0, 2, []string{"act-1", "act-2"}, 2},
		{2, 2, []string{"act-3", "act-4"}, 0},
		{1, 10, []string{"act-2", "act-3", "act-4"}, 0},
		{3, 1, []string{"act-4"}, 0},
		{4, 5, nil, 0},
		{9, 5, nil, 0},
		{-3, 1, []string{"act-1"}, 1},
	}
	for _, tc := range cases {
		page, err := p.Activities("acme", tc.after, tc.limit)
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, a := range page.Activities {
			ids = append(ids, a.ID)
		}
		if len(ids) != len(tc.ids) || page.Next != tc.next {
			t.Errorf("after %d limit %d: %v next %d, want %v next %d", tc.after, tc.limit, ids, page.Next, tc.ids, tc.next)
			continue
		}
		for i := range ids {
			if ids[i] != tc.ids[i] {
				t.Errorf("after %d limit %d: %v, want %v", tc.after, tc.limit, ids, tc.ids)
			}
		}
	}
	if _, err := p.Activities("nope", 0, 1); !errors.Is(err, projections.ErrNotFound) {
		t.Errorf("unknown account: %v", err)
	}
	if o, err := p.Owner("acme", "cy"); err != nil || o != "ann" {
		t.Errorf("Owner(cy) = %q, %v; want ann", o, err)
	}
}

// TestAttributionJoinsCurrentName: a renamed user's activities show the
// new name, before and after; deleting the user blanks it.
func TestAttributionJoinsCurrentName(t *testing.T) {
	ctx := t.Context()
	l := fixture.New()
	if err := fixture.Seed(ctx, l); err != nil {
		t.Fatal(err)
	}
	name := "Robert Renamed"
	do := func(cmd ledger.Command) {
		t.Helper()
		if _, err := l.Do(ctx, "acme", fixture.Operator, cmd); err != nil {
			t.Fatal(err)
		}
	}
	do(ledger.UpdateUser{UserID: "bob", Name: &name, At: fixture.H(17)})
	p := attribution.New()
	fold := func() {
		for _, d := range l.Live() {
			if err := p.Apply(d); err != nil {
				t.Fatal(err)
			}
		}
	}
	fold()
	nameOf := func(id string) (string, string) {
		page, err := p.Activities("acme", 0, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, a := range page.Activities {
			if a.ID == id {
				return a.UserName, a.OwnerName
			}
		}
		t.Fatalf("no activity %s", id)
		return "", ""
	}
	if u, o := nameOf("act-1"); u != name || o != name {
		t.Errorf("act-1 after rename: user %q owner %q, want %q", u, o, name)
	}
	do(ledger.DeleteUser{UserID: "bob", Confirm: "bob", At: fixture.H(18)})
	p = attribution.New()
	fold()
	if u, o := nameOf("act-1"); u != "" || o != "" {
		t.Errorf("act-1 after deletion: user %q owner %q, want blank", u, o)
	}
}
