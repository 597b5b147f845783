package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"
)

// chromiumPath returns the headless browser the console's browser test
// drives. Without one the test skips, unless LEDGER_REQUIRE_BROWSER=1
// (set in CI, which installs Debian's chromium), when it fails.
func chromiumPath(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("LEDGER_CHROMIUM"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "headless-shell"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("LEDGER_REQUIRE_BROWSER") == "1" {
		t.Fatal("no chromium binary on PATH (or in LEDGER_CHROMIUM) and LEDGER_REQUIRE_BROWSER=1: install Debian's chromium package")
	}
	t.Skip("no chromium binary on PATH (install Debian's chromium package, or set LEDGER_CHROMIUM); set LEDGER_REQUIRE_BROWSER=1 to make this a failure")
	return ""
}

// TestConsoleInABrowser walks the help article's story through the
// console in headless Chromium, against the real wiring: sign in, read
// the counter, deactivate, be refused an activation without a seat, buy a
// seat, activate, delete with reassignment and the typed email, and see
// the name gone from the users and the activities. Screenshots of the
// users page and the delete dialog go to LEDGER_SCREENSHOTS (a
// directory) when it is set.
func TestConsoleInABrowser(t *testing.T) {
	browser := chromiumPath(t)
	st := startConsoleStory(t)
	shots := os.Getenv("LEDGER_SCREENSHOTS")

	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(browser), chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck, chromedp.UserDataDir(t.TempDir()), chromedp.WindowSize(1280, 900),
		chromedp.Flag("disable-background-networking", true), chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true), chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("disable-extensions", true), chromedp.Flag("disable-default-apps", true),
	}
	// A guard against a hung browser, not a measure of speed.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	ctx, cancelAlloc := chromedp.NewExecAllocator(ctx, opts...)
	defer cancelAlloc()
	ctx, cancelBrowser := chromedp.NewContext(ctx)
	defer cancelBrowser()

	do := func(what string, steps ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(ctx, steps...); err != nil {
			page, _ := chromedp.Run(ctx, chromedp.OuterHTML(chromedp.CSS("html")))
			t.Fatalf("%s: %v\npage:\n%s", what, err, page)
		}
	}
	text := func(sel string) string {
		t.Helper()
		return browserValue(t, ctx, "text of "+sel, chromedp.Text(chromedp.CSS(sel)))
	}
	html := func(sel string) string {
		t.Helper()
		return browserValue(t, ctx, "HTML of "+sel, chromedp.OuterHTML(chromedp.CSS(sel)))
	}
	has := func(sel, attr string) bool {
		t.Helper()
		return browserValue(t, ctx, attr+" of "+sel, chromedp.AttributeValue(chromedp.CSS(sel), attr)).Exists
	}
	screenshot := func(name, sel string) {
		t.Helper()
		if shots == "" {
			return
		}
		png := browserValue(t, ctx, "screenshot "+name, chromedp.Screenshot(chromedp.CSS(sel)))
		if err := os.WriteFile(filepath.Join(shots, name), png, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	row := func(user string) string { return "#user-" + user }
	base := st.svc.base

	// Sign in with the admin token and read the counter.
	do("sign in",
		chromedp.Navigate(base+"/console/"),
		chromedp.WaitVisible(chromedp.CSS("#token")),
		chromedp.SendKeys(chromedp.CSS("#token"), st.admin),
		chromedp.Click(chromedp.CSS(`form.signin button[type="submit"]`)),
		chromedp.WaitVisible(chromedp.CSS("#license-count")),
	)
	if got := text("#license-count"); got != "2 of 2 licenses in use" {
		t.Fatalf("counter %q, want 2 of 2 licenses in use", got)
	}
	cookies := browserValue(t, ctx, "cookies", func(ctx context.Context, tg *chromedp.Target) (network.GetCookiesResult, error) {
		return cdp.Call(ctx, tg, network.GetCookies, network.GetCookiesParams{})
	}).Cookies
	if len(cookies) != 1 || !cookies[0].HTTPOnly || cookies[0].SameSite != network.CookieSameSiteStrict || cookies[0].Session || cookies[0].Expires <= 0 {
		t.Fatalf("cookies in the browser: %+v, want one HttpOnly, SameSite=Strict, expiring session cookie", cookies)
	}
	if script := browserValue(t, ctx, "document.cookie", chromedp.Evaluate[string](`document.cookie`)); script != "" {
		t.Fatalf("page script reads cookies %q", script)
	}
	if loc := browserValue(t, ctx, "location", chromedp.Location()); loc != base+"/console/users" {
		t.Fatalf("after sign-in the browser is at %q", loc)
	}

	// Bob is deactivated: his license is free.
	do("deactivate Bob",
		chromedp.SendKeys(chromedp.CSS("#reason-"+st.bob), "moved to another team"),
		chromedp.Click(chromedp.CSS(row(st.bob)+` button[value="deactivate"]`)),
		chromedp.WaitVisible(chromedp.CSS(row(st.bob)+`[data-status="deactivated"]`)),
	)
	if got := text("#license-count"); got != "1 of 2 licenses in use" {
		t.Fatalf("counter after deactivating Bob %q", got)
	}

	// Cy takes the free seat; Bob's Activate is then disabled, with why.
	cy := st.svc.expect(201, st.admin, "POST", "/v1/accounts/acme/users", map[string]any{"name": "Cy Quill", "email": "cy@acme.test", "role": "member"}).body["id"].(string)
	st.svc.expect(201, st.admin, "POST", "/v1/accounts/acme/activities", map[string]any{"user_id": cy, "kind": "note", "ref": "candidate-17"})
	do("reload", chromedp.Reload(), chromedp.WaitVisible(chromedp.CSS(row(cy))))
	hint := text("#noseat-" + st.bob)
	if !has(row(st.bob)+` button[value="activate"]`, "disabled") || !strings.Contains(hint, "No free seat: 2 of 2 licenses in use") {
		t.Fatalf("Bob's Activate without a seat: hint %q", hint)
	}
	screenshot("console-users.png", "body")

	// Buying a seat enables it; Bob is active again.
	do("buy a seat and activate Bob",
		chromedp.SetValue(chromedp.CSS("#seat-count"), "1"),
		chromedp.Click(chromedp.CSS(`#buy-seats button[type="submit"]`)),
		chromedp.WaitVisible(chromedp.CSS(`#license-count[data-seats="3"]`)),
		chromedp.Click(chromedp.CSS(row(st.bob)+` button[value="activate"]:not([disabled])`)),
		chromedp.WaitVisible(chromedp.CSS(row(st.bob)+`[data-status="active"]`)),
	)
	if got := text("#license-count"); got != "3 of 3 licenses in use" {
		t.Fatalf("counter after activating Bob %q", got)
	}

	// Cy is deleted from the dialog: its button stays disabled until the
	// email is typed; the records go to Ada.
	dialog := "#delete-" + cy
	// By keyboard: Enter on Delete opens the dialog, Escape closes it and
	// gives the focus back to the button.
	do("open and close the dialog by keyboard",
		chromedp.Focus(chromedp.CSS(row(cy)+` button[data-dialog]`)),
		chromedp.KeyEvent(kb.Enter),
		chromedp.WaitVisible(chromedp.CSS(dialog)),
		chromedp.KeyEvent(kb.Escape),
		chromedp.WaitNotVisible(chromedp.CSS(dialog)),
	)
	if back := browserValue(t, ctx, "focus", chromedp.Evaluate[string](`document.activeElement.dataset.dialog || ""`)); back != "delete-"+cy {
		t.Fatalf("after Escape the focus is not on the Delete button (%q)", back)
	}
	do("open the delete dialog",
		chromedp.Click(chromedp.CSS(row(cy)+` button[data-dialog]`)),
		chromedp.WaitVisible(chromedp.CSS(dialog)),
	)
	warnings := text(dialog + " .warnings")
	for _, w := range []string{"permanent", "frees their license", "records stay", "name is removed", "cannot be undone", "deactivate them instead"} {
		if !strings.Contains(warnings, w) {
			t.Fatalf("the delete dialog does not say %q: %q", w, warnings)
		}
	}
	if !has(dialog+" [data-confirm-submit]", "disabled") {
		t.Fatal("the delete button is enabled before the email is typed")
	}
	do("fill the delete dialog",
		chromedp.SetValue(chromedp.CSS("#reassign-"+cy), st.ada),
		chromedp.SendKeys(chromedp.CSS("#confirm-"+cy), "cy@acme.test"),
		chromedp.WaitEnabled(chromedp.CSS(dialog+" [data-confirm-submit]")),
	)
	focused := browserValue(t, ctx, "focus", chromedp.Evaluate[string](`(document.activeElement.closest("dialog") || {id: ""}).id`))
	if focused != "delete-"+cy {
		t.Fatalf("focus is outside the open dialog (in %q)", focused)
	}
	screenshot("console-delete-dialog.png", dialog)
	do("delete Cy",
		chromedp.Click(chromedp.CSS(dialog+" [data-confirm-submit]")),
		chromedp.WaitVisible(chromedp.CSS(row(cy)+`[data-status="deleted"]`)),
	)
	page := html("main")
	if got := text("#license-count"); got != "2 of 3 licenses in use" || strings.Contains(page, "Quill") || strings.Contains(page, "cy@acme.test") {
		t.Fatalf("after deleting Cy: counter %q, name or email still on the page: %v", got, strings.Contains(page, "Quill"))
	}
	do("activities",
		chromedp.Click(chromedp.CSS(`a[href="/console/activities"]`)),
		chromedp.WaitVisible(chromedp.CSS("table.activities tbody tr td:nth-child(4)")),
	)
	logged, owner := text("table.activities tbody tr td:nth-child(4)"), text("table.activities tbody tr td:nth-child(5)")
	if logged != "(deleted user)" || owner != "Ada Lovelace" || strings.Contains(html("main"), "Quill") {
		t.Fatalf("activity after the deletion: logged by %q, owned by %q", logged, owner)
	}
}

// browserValue runs one browser action and returns its value.
func browserValue[T any](t *testing.T, ctx context.Context, what string, a chromedp.Action[T]) T {
	t.Helper()
	v, err := chromedp.Run(ctx, a)
	if err != nil {
		page, _ := chromedp.Run(ctx, chromedp.OuterHTML(chromedp.CSS("html")))
		t.Fatalf("%s: %v\npage:\n%s", what, err, page)
	}
	return v
}
