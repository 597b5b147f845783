package ledger

// Evolve returns the state after event e. It trusts e: events are facts
// that Decide accepted, so Evolve checks no rule. An event that cannot
// apply to s (a second opening, a user id added again, a status change from
// the wrong status) changes nothing but Version and LastAt, so a deleted
// user stays deleted and the counters always agree with Users. It reuses
// s's maps and slices (see [State]).
func Evolve(s State, e Event) State {
	if at := e.OccurredAt().UTC(); at.After(s.LastAt) {
		s.LastAt = at
	}
	if IsActivity(e) {
		return s
	}
	s.Version++
	switch e := e.(type) {
	case AccountOpened:
		if s.Opened() {
			return s // an account is opened once
		}
		s.Account, s.Name, s.OpenedAt, s.Seats = e.Account, e.Name, e.At.UTC(), e.Seats
		if s.Users == nil {
			s.Users = make(map[string]User)
		}
		if s.emails == nil {
			s.emails = emailIndex(s.Users)
		}
	case SeatsPurchased:
		s.Seats += e.Count
	case SeatReductionScheduled:
		s.Reductions = append(s.Reductions, Reduction{Count: e.Count, ScheduledAt: e.At.UTC(), EffectiveAt: e.EffectiveAt.UTC()})
	case UserAdded:
		if _, ok := s.Users[e.UserID]; ok {
			return s // a user id is used once: a deleted user stays deleted
		}
		if s.Users == nil {
			s.Users = make(map[string]User)
		}
		if s.emails == nil {
			s.emails = emailIndex(s.Users)
		}
		at := e.At.UTC()
		s.Users[e.UserID] = User{ID: e.UserID, Name: e.Name, Email: e.Email, Role: e.Role,
			ExternalID: e.ExternalID, Status: StatusActive, AddedAt: at, ChangedAt: at}
		s.Order = append(s.Order, e.UserID)
		if e.Email != "" {
			s.emails[foldEmail(e.Email)] = e.UserID
		}
		s = s.countActive(e.Role, 1)
	case UserDeactivated:
		u, ok := s.Users[e.UserID]
		if !ok || u.Status != StatusActive {
			return s
		}
		u.Status, u.Reason, u.ChangedAt = StatusDeactivated, e.Reason, e.At.UTC()
		s.Users[u.ID] = u
		s.Deactivated++
		s = s.countActive(u.Role, -1)
	case UserActivated:
		u, ok := s.Users[e.UserID]
		if !ok || u.Status != StatusDeactivated {
			return s
		}
		u.Status, u.ChangedAt = StatusActive, e.At.UTC()
		s.Users[u.ID] = u
		s.Deactivated--
		s = s.countActive(u.Role, 1)
	case UserDeleted:
		u, ok := s.Users[e.UserID]
		if !ok || u.Status == StatusDeleted {
			return s
		}
		switch u.Status {
		case StatusActive:
			s = s.countActive(u.Role, -1)
		case StatusDeactivated:
			s.Deactivated--
		}
		if id, ok := s.emails[foldEmail(u.Email)]; ok && id == u.ID {
			delete(s.emails, foldEmail(u.Email))
		}
		u.Status, u.ChangedAt, u.ReassignTo = StatusDeleted, e.At.UTC(), e.ReassignTo
		u.Name, u.Email, u.Reason, u.ExternalID = "", "", "", ""
		s.Users[u.ID] = u
		s.Deleted++
	case UserProfileUpdated:
		u, ok := s.Users[e.UserID]
		if !ok || u.Status == StatusDeleted {
			return s
		}
		if e.Name != "" {
			u.Name = e.Name
		}
		if e.ExternalID != "" {
			u.ExternalID = e.ExternalID
		}
		if e.Email != "" && e.Email != u.Email {
			if s.emails == nil {
				s.emails = emailIndex(s.Users)
			}
			if id, ok := s.emails[foldEmail(u.Email)]; ok && id == u.ID {
				delete(s.emails, foldEmail(u.Email))
			}
			u.Email = e.Email
			s.emails[foldEmail(e.Email)] = u.ID
		}
		s.Users[u.ID] = u
	case UserRoleChanged:
		u, ok := s.Users[e.UserID]
		if !ok || u.Status == StatusDeleted || !e.Role.Valid() || u.Role == e.Role {
			return s
		}
		if u.Status == StatusActive {
			if u.Role == RoleAdmin {
				s.ActiveAdmins--
			}
			if e.Role == RoleAdmin {
				s.ActiveAdmins++
			}
		}
		u.Role = e.Role
		s.Users[u.ID] = u
	}
	return s
}

func (s State) countActive(role Role, d int) State {
	s.Active += d
	if role == RoleAdmin {
		s.ActiveAdmins += d
	}
	if s.Active > s.PeakActive {
		s.PeakActive = s.Active
	}
	return s
}

// Fold applies events to s in order.
func Fold(s State, events ...Event) State {
	for _, e := range events {
		s = Evolve(s, e)
	}
	return s
}
