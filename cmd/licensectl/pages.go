package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"strconv"
	"text/tabwriter"
	"time"
)

// The API answers lists a page at a time (at most maxPage items), with
// has_more and next_cursor. The listing verbs follow the cursors and show
// every item, or, with --limit N, the first N; --cursor starts where an
// earlier listing stopped.

// maxPage is the most items the API answers in one page.
const maxPage = 1000

// listing is a list to read page by page.
type listing struct {
	req request
	// key is the member that holds the items, e.g. "users".
	key string
	// head is the text output's header line; row writes one item.
	head string
	row  func(w io.Writer, item json.RawMessage) error
}

// page is one answer of a list.
type page struct {
	items  []json.RawMessage
	more   bool
	cursor string
}

func decodePage(r reply, key string) (page, error) {
	var m map[string]json.RawMessage
	if err := decode(r, &m); err != nil {
		return page{}, err
	}
	var p page
	if err := json.Unmarshal(m[key], &p.items); err != nil {
		return page{}, fmt.Errorf("the API answered something unexpected (%s: %w); --output json shows it as is", key, err)
	}
	if v, ok := m["has_more"]; ok {
		if err := json.Unmarshal(v, &p.more); err != nil {
			return page{}, fmt.Errorf("the API answered something unexpected (has_more: %w)", err)
		}
	}
	if v, ok := m["next_cursor"]; ok {
		if err := json.Unmarshal(v, &p.cursor); err != nil {
			return page{}, fmt.Errorf("the API answered something unexpected (next_cursor: %w)", err)
		}
	}
	return p, nil
}

// pageLimit is the limit to ask for when want items are still to read
// (0: every item): LICENSECTL_PAGE_SIZE, 1,000 by default, or fewer.
func (c *cli) pageLimit(want int) int {
	if want <= 0 || want > c.pageSize {
		return c.pageSize
	}
	return want
}

// list reads a list from cursor on, following its cursors, and shows
// up to limit items (all when limit is 0). With --output json a single
// page is printed as the API answered it; several are printed as one
// answer of the same shape, with the last page's has_more and
// next_cursor.
func (c *cli) list(ctx context.Context, l listing, limit int, cursor string) error {
	var (
		first  reply
		items  []json.RawMessage
		last   page
		pages  int
		tw     = tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
		shown  int
		header bool
	)
	for {
		q := url.Values{}
		for k, v := range l.req.query {
			q[k] = v
		}
		q.Set("limit", strconv.Itoa(c.pageLimit(limit-shown)))
		if cursor != "" {
			q.Del("after")
			q.Set("cursor", cursor)
		}
		req := l.req
		req.query = q
		r, err := c.call(ctx, req)
		if err != nil {
			return err
		}
		p, err := decodePage(r, l.key)
		if err != nil {
			return err
		}
		if pages == 0 {
			first = r
		}
		pages++
		if c.json {
			items = append(items, p.items...)
		} else {
			if !header {
				fmt.Fprintln(tw, l.head)
				header = true
			}
			for _, it := range p.items {
				if err := l.row(tw, it); err != nil {
					return err
				}
			}
		}
		shown += len(p.items)
		last = p
		if !p.more || p.cursor == "" || len(p.items) == 0 || (limit > 0 && shown >= limit) {
			break
		}
		cursor = p.cursor
	}
	if c.json {
		if pages == 1 {
			return c.render(first, nil)
		}
		var b bytes.Buffer
		b.WriteString("{")
		k, _ := json.Marshal(l.key)
		b.Write(k)
		b.WriteString(":[")
		for i, it := range items {
			if i > 0 {
				b.WriteByte(',')
			}
			b.Write(it)
		}
		cur, _ := json.Marshal(last.cursor)
		fmt.Fprintf(&b, "],\"has_more\":%t,\"next_cursor\":%s}\n", last.more, cur)
		return c.writeBody(b.Bytes())
	}
	if last.more && last.cursor != "" {
		fmt.Fprintf(tw, "more: --cursor %s\n", last.cursor)
	}
	return tw.Flush()
}

// export copies a JSON Lines answer to stdout as it arrives: the whole
// selection in one answer without a limit, or, with one, answers of at
// most maxPage lines following the cursor of each answer's trailer.
//
// On a terminal, stderr shows how many lines (what: "events", "entries")
// and bytes have come so far, and at what rate.
func (c *cli) export(ctx context.Context, req request, limit int, cursor string, what string) (err error) {
	shown := 0
	var prog *progress
	if c.progress {
		prog = &progress{w: c.stderr, what: what, now: time.Now}
		prog.start = prog.now()
		defer func() { prog.done(err) }()
	}
	for {
		q := url.Values{}
		for k, v := range req.query {
			q[k] = v
		}
		if limit > 0 {
			q.Set("limit", strconv.Itoa(c.pageLimit(limit-shown)))
		}
		if cursor != "" {
			q.Set("cursor", cursor)
		}
		r := req
		r.query = q
		resp, err := c.send(ctx, r)
		if err != nil {
			return err
		}
		lc := &lineCounter{w: c.stdout, prog: prog}
		_, err = io.Copy(lc, resp.Body)
		resp.Body.Close()
		if err != nil {
			return fmt.Errorf("the export was cut after %d lines: %w", shown+lc.n, err)
		}
		shown += lc.n
		next, more := resp.Trailer.Get("Ledger-Next-Cursor"), resp.Trailer.Get("Ledger-Has-More") == "true"
		if !more || next == "" || lc.n == 0 {
			return nil
		}
		if limit > 0 && shown >= limit {
			fmt.Fprintf(c.stderr, "licensectl: more follow: --cursor %s\n", next)
			return nil
		}
		cursor = next
	}
}

// lineCounter counts the lines written through it, and tells prog when
// there is one.
type lineCounter struct {
	w    io.Writer
	n    int
	prog *progress
}

func (l *lineCounter) Write(p []byte) (int, error) {
	n, err := l.w.Write(p)
	lines := bytes.Count(p[:n], []byte("\n"))
	l.n += lines
	if l.prog != nil {
		l.prog.add(lines, n)
	}
	return n, err
}

// progressEvery is how often the progress line is redrawn at most.
const progressEvery = 200 * time.Millisecond

// progress is the line an export keeps up to date on a terminal's stderr.
type progress struct {
	w           io.Writer
	what        string
	now         func() time.Time
	start, last time.Time
	lines       int
	bytes       int64
}

func (p *progress) add(lines, n int) {
	p.lines += lines
	p.bytes += int64(n)
	if t := p.now(); t.Sub(p.last) >= progressEvery {
		p.last = t
		p.draw("")
	}
}

// draw rewrites the line in place: carriage return, then erase to its end.
func (p *progress) draw(end string) {
	secs := p.now().Sub(p.start).Seconds()
	rate := "-"
	if secs > 0 {
		rate = strconv.FormatFloat(float64(p.lines)/secs, 'f', 0, 64)
	}
	fmt.Fprintf(p.w, "\r\x1b[Klicensectl: %d %s, %s, %s %s/s%s", p.lines, p.what, byteSize(p.bytes), rate, p.what, end)
}

// done leaves the last count on its own line, saying whether the export
// ended or was cut.
func (p *progress) done(err error) {
	end := " (done)\n"
	if err != nil {
		end = " (cut)\n"
	}
	p.draw(end)
}

// byteSize is n in B, KiB, MiB or GiB, one decimal past B.
func byteSize(n int64) string {
	const unit = 1024
	if n < unit {
		return strconv.FormatInt(n, 10) + " B"
	}
	f, i := float64(n)/unit, 0
	for f >= unit && i < 2 {
		f /= unit
		i++
	}
	return strconv.FormatFloat(f, 'f', 1, 64) + " " + [...]string{"KiB", "MiB", "GiB"}[i]
}
