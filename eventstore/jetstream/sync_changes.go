package jetstream

// changes is what a drain found: the streams whose directories had events
// (the streams directory as ""), those whose watch the kernel dropped (a
// directory removed), and whether events were lost (queue overflow).
//
// blocks tells, of a stream whose only events were writes (IN_MODIFY) to
// one block file of its msgs directory, that block's index; a stream with
// any other event (an entry created, removed or renamed, attributes, a
// write to another file or to two blocks) is in other instead.
type changes struct {
	dirty, lost map[string]bool
	blocks      map[string]uint32
	other       map[string]bool
	overflow    bool
}

func newChanges() changes {
	return changes{dirty: make(map[string]bool), lost: make(map[string]bool),
		blocks: make(map[string]uint32), other: make(map[string]bool)}
}
