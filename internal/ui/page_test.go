package ui_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// rows returns the node table as text: name → cells.
const rows = `Object.fromEntries([...document.querySelectorAll('#nodes tbody tr')].map((r) =>
	[r.dataset.node, [...r.cells].map((c) => c.innerText.replace(/\s+/g, ' ').trim())]))`

// actionButtons counts the buttons that change the cluster.
const actionButtons = `document.querySelectorAll(['maint-on', 'maint-off', 'drain', 'undrain', 'rollback']
	.map((a) => 'button[data-action="' + a + '"]').join(', ')).length`

func (b *browser) nodeRows() map[string][]string {
	b.t.Helper()
	var r map[string][]string
	b.mustEval(rows, &r)
	return r
}

func (b *browser) count(js string) int {
	b.t.Helper()
	var n int
	b.mustEval(js, &n)
	return n
}

// signIn gives the API token through the sign-in form.
func (b *browser) signIn(token string) {
	b.t.Helper()
	b.mustEval(`document.getElementById('token').value = '', true`, nil)
	b.do(chromedp.SendKeys(chromedp.ID("token"), token),
		chromedp.Click(chromedp.CSS(`#signin-form button[type="submit"]`)))
}

// confirm clicks an action button, checks the dialog that asks first, and
// confirms.
func (b *browser) confirm(button string, fill ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	b.do(chromedp.Click(chromedp.CSS(button)))
	b.waitFor(10*time.Second, "the confirmation dialog", `document.getElementById('confirm').open`)
	if got := b.str(`document.activeElement.id`); got != "confirm-cancel" {
		b.t.Errorf("focus in the confirmation dialog is on %q, want the Cancel button", got)
	}
	b.do(fill...)
	b.do(chromedp.Click(chromedp.ID("confirm-ok")))
	b.waitFor(15*time.Second, "the dialog closing after the action", `!document.getElementById('confirm').open`)
}

// syncWatch is what the page showed while a sync ran.
type syncWatch struct {
	values    map[string]map[int]bool // progress bar values per operation
	rate, eta bool                    // a rate and a time left were shown
	announced []string
}

// watchSync samples the page every 100 ms until done says the sync is
// over; it calls midway once, when a sync is between 20% and 80% with its
// time left shown.
func (b *browser) watchSync(timeout time.Duration, done func() bool, midway func()) syncWatch {
	b.t.Helper()
	w := syncWatch{values: map[string]map[int]bool{}}
	named := false
	deadline := time.Now().Add(timeout)
	for !done() {
		if time.Now().After(deadline) {
			b.t.Fatalf("sync not over after %s; the page showed %v", timeout, w.values)
		}
		var s struct {
			Bars     map[string]int
			Text     string
			Announce string
		}
		b.mustEval(`({bars: Object.fromEntries([...document.querySelectorAll('progress[data-progress]')].map((p) => [p.dataset.progress, p.value])),
			text: document.getElementById('sync').innerText, announce: document.getElementById('announce').textContent})`, &s)
		for op, v := range s.Bars {
			if w.values[op] == nil {
				w.values[op] = map[int]bool{}
			}
			w.values[op][v] = true
			if !named && strings.HasPrefix(op, "sync ") {
				named = true
				b.checkNames() // progress bars have names too
			}
			if midway != nil && strings.HasPrefix(op, "sync ") && v > 200 && v < 800 && strings.Contains(s.Text, "about ") {
				midway()
				midway = nil
			}
		}
		w.rate = w.rate || strings.Contains(s.Text, "B/s")
		w.eta = w.eta || strings.Contains(s.Text, "about ")
		if s.Announce != "" && (len(w.announced) == 0 || w.announced[len(w.announced)-1] != s.Announce) {
			w.announced = append(w.announced, s.Announce)
		}
		time.Sleep(100 * time.Millisecond) // the sampling period, not a wait for state
	}
	return w
}

// moved reports whether a progress bar showed two different values
// between empty and full: it moved while the sync ran.
func (w syncWatch) moved(op string) bool {
	between := 0
	for v := range w.values[op] {
		if v > 0 && v < 1000 {
			between++
		}
	}
	return between >= 2
}

// TestStatusPageOnLocalAPI: on the local API the page reads without a
// token, lists every node, follows a publish and the sync of a larger tree
// without reloading, and acts only after sign-in and a confirmation.
func TestStatusPageOnLocalAPI(t *testing.T) {
	c := newCluster(t, 2, 3<<20) // web nodes download at 3 MB/s
	b := newBrowser(t)
	b.do(chromedp.Navigate("http://" + c.ctl.LocalAddr() + "/ui/"))
	b.waitFor(30*time.Second, "every node", `['controller', 'web-1', 'web-2'].every((n) => document.querySelector('#nodes tr[data-node="' + n + '"]'))`)
	b.mustEval(`window.loadMark = 'first load', true`, nil)

	r := b.nodeRows()
	for name, role := range map[string]string{"controller": "controller", "web-1": "web", "web-2": "web"} {
		if cells := r[name]; len(cells) < 10 || cells[1] != role || cells[2] == "" || !strings.HasPrefix(cells[3], "1 (") {
			t.Errorf("row %s: %q", name, cells)
		}
	}
	for _, w := range []string{"web-1", "web-2"} {
		if r[w][4] != "yes" || !strings.Contains(r[w][7], "pass") {
			t.Errorf("row %s: in sync %q, readiness %q", w, r[w][4], r[w][7])
		}
	}

	// Without the token: read-only, no action possible.
	if n := b.count(actionButtons); n != 0 {
		t.Errorf("%d action buttons without the token", n)
	}
	if s := b.str(`document.getElementById('auth-state').textContent`); !strings.Contains(s, "Read-only") {
		t.Errorf("auth state %q", s)
	}
	code := b.count(`(async () => { const s = await (await fetch('/ui/session')).json();
		const r = await fetch('/v1/maintenance', {method: 'PUT', body: '{"enabled": true}',
			headers: {Authorization: 'Bearer ' + s.read_token, 'Content-Type': 'application/json'}});
		return r.status; })()`)
	if code != 401 || c.ctl.Maintenance().Active {
		t.Errorf("PUT /v1/maintenance with the read token: %d, maintenance %v", code, c.ctl.Maintenance().Active)
	}

	roles := b.checkNames()
	if roles["button"] == 0 || roles["region"] < 2 || roles["image"]+roles["img"] == 0 {
		t.Errorf("accessibility tree roles %v: want buttons, scrollable regions and the chart", roles)
	}
	if n := b.checkKeyboard(); n < 5 {
		t.Errorf("keyboard reached %d controls", n)
	}
	b.checkContrast()
	b.checkZoom()

	// A publish of a larger tree: the page follows it without a reload.
	files := map[string]int{}
	for i := range 300 {
		files[fmt.Sprintf("lib/big/part%03d.bin", i)] = 64 << 10 // 19.7 MB in all
	}
	c.write(files)
	published := make(chan error, 1)
	go func() {
		_, _, err := c.ctl.Publish(context.Background(), "bigger tree")
		published <- err
	}()
	w := b.watchSync(3*time.Minute, func() bool {
		r := b.nodeRows()
		return strings.HasPrefix(r["web-1"][3], "2 (") && strings.HasPrefix(r["web-2"][3], "2 (") && r["web-1"][4] == "yes" && r["web-2"][4] == "yes"
	}, func() { b.screenshot("status-page-sync.png") })
	if err := <-published; err != nil {
		t.Fatal(err)
	}
	if !w.moved("sync web-1") && !w.moved("sync web-2") {
		t.Errorf("the progress bar did not move during the sync: values seen %v", w.values)
	}
	if !w.rate || !w.eta {
		t.Errorf("rate shown %v, time left shown %v", w.rate, w.eta)
	}
	if got := strings.Join(w.announced, " | "); !strings.Contains(got, "Revision 2 is the new cluster target.") {
		t.Errorf("screen reader announcements %q, want the new target", got)
	}
	b.waitFor(30*time.Second, "the end of the sync announced", `document.getElementById('announce').textContent.includes('All 2 web nodes serve revision 2.')`)
	if mark := b.str(`window.loadMark || 'reloaded'`); mark != "first load" {
		t.Fatalf("the page reloaded (%s)", mark)
	}
	b.waitFor(15*time.Second, "revision 2 as the target in the revision table",
		`[...document.querySelectorAll('#revisions tbody tr')].some((r) => r.cells[0].innerText === '2' && r.innerText.includes('target') && r.innerText.includes('bigger tree') && r.innerText.includes('web-1, web-2'))`)
	// The chart: each web node's sync to revision 2, which cannot have
	// taken less than the 6.5 s its 19.7 MB need at 3 MB/s, and the lag.
	b.waitFor(30*time.Second, "both syncs to revision 2 and the lag in the chart", `(() => {
		const rows = [...document.querySelectorAll('#chart details tbody tr')].map((r) => [...r.cells].map((c) => c.textContent));
		const slow = (n) => rows.some((r) => r[0] === n && r[1].startsWith('2 (') && /^([5-9](\.\d)? s|\d\d s|\d+ min)/.test(r[3]));
		return slow('web-1') && slow('web-2') && document.querySelectorAll('#chart circle.dur').length >= 4 &&
			document.querySelector('#chart path.lag') && /largest lag ([5-9]|\d\d)/.test(document.getElementById('chart-summary').textContent);
	})()`)

	// With the token: actions, each confirmed first.
	b.do(chromedp.Click(chromedp.ID("signin-open")))
	b.signIn(testToken)
	b.waitFor(15*time.Second, "the action buttons after sign-in", actionButtons+` >= 4`)
	var stored struct{ Session, Cookie, URL string }
	b.mustEval(`({session: sessionStorage.getItem('nodeagent.token'), cookie: document.cookie, url: location.href})`, &stored)
	if stored.Session != testToken || stored.Cookie != "" || strings.Contains(stored.URL, testToken) {
		t.Errorf("token kept as %+v: want session storage only", stored)
	}
	b.confirm(`button[data-action="maint-on"]`, chromedp.SendKeys(chromedp.ID("maint-message"), "Upgrading Moodle"))
	b.waitFor(15*time.Second, "maintenance on", `document.getElementById('maintenance').innerText.includes('Upgrading Moodle') &&
		document.getElementById('summary').innerText.includes('On')`)
	if m := c.ctl.Maintenance(); !m.Active || m.Message != "Upgrading Moodle" {
		t.Errorf("maintenance after the page turned it on: %+v", m)
	}
	b.checkNames()
	b.screenshot("status-page.png")

	b.confirm(`button[data-action="maint-off"]`)
	b.waitFor(15*time.Second, "maintenance off", `document.querySelector('#maintenance .badge').textContent === 'off'`)
	if c.ctl.Maintenance().Active {
		t.Error("maintenance still on")
	}
}

// TestStatusPageOnClusterAPI: on the cluster API the page shows nothing
// and asks nothing of the API until the token is given; the token is asked
// once per browser session; an operator drains another node from it.
func TestStatusPageOnClusterAPI(t *testing.T) {
	c := newCluster(t, 2, 0)
	b := newBrowser(t, chromedp.Flag("ignore-certificate-errors", true)) // the cluster's own CA
	url := "https://" + c.ctl.ClusterAddr() + "/ui/"
	b.do(chromedp.Navigate(url))
	b.waitFor(20*time.Second, "the sign-in form", `!document.getElementById('signin').hidden && document.getElementById('conn').textContent.includes('Waiting for the API token')`)
	if n := b.count(`document.querySelectorAll('#nodes tbody tr').length + (document.getElementById('main').hidden ? 0 : 1000)`); n != 0 {
		t.Fatalf("the page shows the cluster without a token (%d)", n)
	}
	if n := b.count(actionButtons); n != 0 {
		t.Fatalf("%d action buttons without a token", n)
	}
	if n := b.count(`performance.getEntriesByType('resource').filter((e) => e.name.includes('/v1/')).length`); n != 0 {
		t.Fatalf("the page called the API %d times without a token", n)
	}
	b.checkNames()

	b.signIn("not-the-token")
	b.waitFor(15*time.Second, "the refusal", `document.getElementById('signin-error').textContent.includes('not accepted')`)
	if n := b.count(`document.querySelectorAll('#nodes tbody tr').length`); n != 0 || b.str(`sessionStorage.getItem('nodeagent.token') || ''`) != "" {
		t.Fatal("a wrong token opened the page or was kept")
	}

	b.signIn(testToken)
	b.waitFor(20*time.Second, "every node after sign-in", `document.querySelectorAll('#nodes tbody tr').length === 3`)
	b.do(chromedp.Navigate(url)) // a new page in the same session: no second sign-in
	b.waitFor(20*time.Second, "every node without a second sign-in", `document.querySelectorAll('#nodes tbody tr').length === 3 && document.getElementById('signin').hidden`)

	b.confirm(`tr[data-node="web-2"] button[data-action="drain"]`)
	b.waitFor(15*time.Second, "web-2 drained", `document.querySelector('tr[data-node="web-2"]').innerText.includes('drained')`)
	if !c.webs[1].Status().Drained || c.webs[0].Status().Drained {
		t.Fatalf("drained: web-1 %v, web-2 %v; want web-2 only", c.webs[0].Status().Drained, c.webs[1].Status().Drained)
	}

	b.do(chromedp.Click(chromedp.ID("signout")))
	b.waitFor(10*time.Second, "the sign-in form, and nothing of the cluster, after sign-out", `document.getElementById('main').hidden &&
		!document.getElementById('signin').hidden && document.querySelectorAll('#nodes tbody tr').length === 0`)
	if s := b.str(`sessionStorage.getItem('nodeagent.token') || ''`); s != "" {
		t.Fatalf("token kept after sign-out: %q", s)
	}
}
