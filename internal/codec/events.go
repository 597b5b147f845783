package codec

import (
	"time"

	"github.com/licenseledger/ledger/domain/ledger"
	"github.com/licenseledger/ledger/eventstore"
)

// The registrations of the event types, one each: the stored payload's
// members in the order they are written, which hold personal data sealed,
// the schema version and the upcasts from older versions. Adding an event
// type to the ledger means adding its registration here and its golden
// file in testdata; changing a stored form means a new version and an
// upcast from the previous one.

//go:generate go test -run TestEventsDoc -update

func init() {
	register(spec[ledger.AccountOpened]{
		version: 2, category: eventstore.Ledger,
		doc: "An account was opened with its first seats.",
		fields: []field[ledger.AccountOpened]{
			text("account", "the account's id", func(e *ledger.AccountOpened) *string { return &e.Account }),
			text("name", "the account's display name", func(e *ledger.AccountOpened) *string { return &e.Name }),
			integer("seats", "the seats bought at opening", func(e *ledger.AccountOpened) *int { return &e.Seats }),
			instant("at", "when the account was opened", func(e *ledger.AccountOpened) *time.Time { return &e.At }),
		},
		upcasts: []Upcast{
			// Version 1 called the seats at opening "licenses", the word of
			// the help article; version 2 says "seats" like every other event.
			renameMember(1, "licenses", "seats"),
		},
	})
	register(spec[ledger.SeatsPurchased]{
		version: 1, category: eventstore.Ledger,
		doc: "Seats were added to the account at once.",
		fields: []field[ledger.SeatsPurchased]{
			integer("count", "the seats added", func(e *ledger.SeatsPurchased) *int { return &e.Count }),
			instant("at", "when they were bought", func(e *ledger.SeatsPurchased) *time.Time { return &e.At }),
		},
	})
	register(spec[ledger.SeatReductionScheduled]{
		version: 1, category: eventstore.Ledger,
		doc: "Seats will be removed from the start of the next billing cycle.",
		fields: []field[ledger.SeatReductionScheduled]{
			integer("count", "the seats removed", func(e *ledger.SeatReductionScheduled) *int { return &e.Count }),
			instant("effective_at", "the start of the cycle from which they are removed", func(e *ledger.SeatReductionScheduled) *time.Time { return &e.EffectiveAt }),
			instant("at", "when the reduction was scheduled", func(e *ledger.SeatReductionScheduled) *time.Time { return &e.At }),
		},
	})
	register(spec[ledger.UserAdded]{
		version: 2, category: eventstore.Ledger,
		doc: "A new user took a seat.",
		fields: []field[ledger.UserAdded]{
			text("user_id", "the user's id", func(e *ledger.UserAdded) *string { return &e.UserID }).subject(),
			sealed("name_sealed", "name", "the user's name", func(e *ledger.UserAdded) *string { return &e.Name }),
			sealed("email_sealed", "email", "the user's email", func(e *ledger.UserAdded) *string { return &e.Email }),
			text("role", `"admin" or "member"`, func(e *ledger.UserAdded) *string { return (*string)(&e.Role) }).repeated(),
			sealed("external_id_sealed", "external_id", "the identity provider's identifier of the user (SCIM externalId); absent when none", func(e *ledger.UserAdded) *string { return &e.ExternalID }).omitEmpty(),
			instant("at", "when the user was added", func(e *ledger.UserAdded) *time.Time { return &e.At }),
		},
		upcasts: []Upcast{
			// Version 2 keeps the identity provider's id of the user
			// (SCIM externalId), sealed; version 1 had none.
			addedMember(1, "external_id_sealed"),
		},
	})
	register(spec[ledger.UserDeactivated]{
		version: 1, category: eventstore.Ledger,
		doc: "A user lost access and freed their seat.",
		fields: []field[ledger.UserDeactivated]{
			text("user_id", "the user's id", func(e *ledger.UserDeactivated) *string { return &e.UserID }).subject(),
			sealed("reason_sealed", "reason", "why, free text about the person; absent when none was given", func(e *ledger.UserDeactivated) *string { return &e.Reason }).omitEmpty(),
			instant("at", "when the user was deactivated", func(e *ledger.UserDeactivated) *time.Time { return &e.At }),
		},
	})
	register(spec[ledger.UserActivated]{
		version: 1, category: eventstore.Ledger,
		doc: "A deactivated user took a seat again.",
		fields: []field[ledger.UserActivated]{
			text("user_id", "the user's id", func(e *ledger.UserActivated) *string { return &e.UserID }).subject(),
			instant("at", "when the user was activated", func(e *ledger.UserActivated) *time.Time { return &e.At }),
		},
	})
	register(spec[ledger.UserDeleted]{
		version: 1, category: eventstore.Ledger,
		doc: "A user was removed for good; their personal data becomes unreadable once their key is destroyed.",
		fields: []field[ledger.UserDeleted]{
			text("user_id", "the user's id", func(e *ledger.UserDeleted) *string { return &e.UserID }).subject(),
			text("reassign_to", "the user who owns the deleted user's records from then on; absent when none", func(e *ledger.UserDeleted) *string { return &e.ReassignTo }).repeated().omitEmpty(),
			instant("at", "when the user was deleted", func(e *ledger.UserDeleted) *time.Time { return &e.At }),
		},
	})
	register(spec[ledger.ActivityRecorded]{
		version: 1, category: eventstore.Activity,
		doc: "A user logged an activity.",
		fields: []field[ledger.ActivityRecorded]{
			text("activity_id", "the activity's id", func(e *ledger.ActivityRecorded) *string { return &e.ActivityID }),
			text("user_id", "the user who logged it", func(e *ledger.ActivityRecorded) *string { return &e.UserID }).subject(),
			text("kind", "what kind of activity it is", func(e *ledger.ActivityRecorded) *string { return &e.Kind }).repeated(),
			text("ref", "what it refers to", func(e *ledger.ActivityRecorded) *string { return &e.Ref }),
			instant("at", "when it was recorded", func(e *ledger.ActivityRecorded) *time.Time { return &e.At }),
		},
	})
	register(spec[ledger.UserProfileUpdated]{
		version: 1, category: eventstore.Ledger,
		doc: "A user not deleted got a new name, a new email or both, sealed under the key they were added with; deleting the user erases every name and email they had.",
		fields: []field[ledger.UserProfileUpdated]{
			text("user_id", "the user's id", func(e *ledger.UserProfileUpdated) *string { return &e.UserID }).subject(),
			sealed("name_sealed", "name", "the user's new name, when it changed", func(e *ledger.UserProfileUpdated) *string { return &e.Name }).omitEmpty(),
			sealed("email_sealed", "email", "the user's new email, when it changed", func(e *ledger.UserProfileUpdated) *string { return &e.Email }).omitEmpty(),
			sealed("external_id_sealed", "external_id", "the identity provider's new identifier of the user, when it changed", func(e *ledger.UserProfileUpdated) *string { return &e.ExternalID }).omitEmpty(),
			instant("at", "when the profile was updated", func(e *ledger.UserProfileUpdated) *time.Time { return &e.At }),
		},
	})
	register(spec[ledger.UserRoleChanged]{
		version: 1, category: eventstore.Ledger,
		doc: "A user not deleted became an admin or a member.",
		fields: []field[ledger.UserRoleChanged]{
			text("user_id", "the user's id", func(e *ledger.UserRoleChanged) *string { return &e.UserID }).subject(),
			text("role", `the new role, "admin" or "member"`, func(e *ledger.UserRoleChanged) *string { return (*string)(&e.Role) }).repeated(),
			instant("at", "when the role changed", func(e *ledger.UserRoleChanged) *time.Time { return &e.At }),
		},
	})
}
