package ui_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/chromedp/cdproto/accessibility"
	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"
)

// Accessibility checks of the page as rendered: the accessibility tree
// chromium builds for screen readers, the keyboard's focus order, text
// contrast in both colour schemes, and layout at 200% zoom.

// controlRoles are the roles a person operates or a screen reader lists as
// a landmark or graphic: each needs an accessible name.
var controlRoles = map[string]bool{
	"button": true, "link": true, "textbox": true, "combobox": true, "checkbox": true, "radio": true,
	"progressbar": true, "image": true, "img": true, "region": true, "dialog": true, "searchbox": true,
	"spinbutton": true, "slider": true, "switch": true, "tab": true, "menuitem": true, "listbox": true,
}

func axString(v *accessibility.Value) string {
	if v == nil {
		return ""
	}
	var s string
	if json.Unmarshal(v.Value, &s) != nil {
		return string(v.Value)
	}
	return s
}

// axTree returns the page's full accessibility tree.
func (b *browser) axTree() []*accessibility.Node {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	nodes, err := chromedp.Run(ctx, chromedp.Action[[]*accessibility.Node](func(ctx context.Context, t *chromedp.Target) ([]*accessibility.Node, error) {
		if _, err := cdp.Call(ctx, t, accessibility.Enable, cdp.Empty{}); err != nil {
			return nil, err
		}
		r, err := cdp.Call(ctx, t, accessibility.GetFullAXTree, accessibility.GetFullAXTreeParams{})
		return r.Nodes, err
	}))
	if err != nil {
		b.t.Fatal(err)
	}
	return nodes
}

// checkNames fails for every control, landmark region or image without an
// accessible name, and returns how many controls of each role it saw.
func (b *browser) checkNames() map[string]int {
	b.t.Helper()
	roles := map[string]int{}
	for _, n := range b.axTree() {
		role := axString(n.Role)
		if n.Ignored || !controlRoles[role] {
			continue
		}
		roles[role]++
		if strings.TrimSpace(axString(n.Name)) == "" {
			b.t.Errorf("a %s has no accessible name (AX node %s, DOM node %d)", role, n.NodeID, n.BackendDOMNodeID)
		}
	}
	return roles
}

// focusables marks every visible, enabled, focusable element with its
// order in the document and returns their descriptions.
const focusables = `(() => {
  const sel = 'a[href], button, input, select, textarea, summary, [tabindex]';
  const visible = (e) => e.getClientRects().length > 0 && getComputedStyle(e).visibility !== 'hidden' &&
    !e.closest('[hidden], dialog:not([open])');
  const all = [...document.querySelectorAll(sel)];
  const positive = all.filter((e) => e.tabIndex > 0).map((e) => e.outerHTML.slice(0, 80));
  const list = all.filter((e) => !e.disabled && e.tabIndex >= 0 && visible(e));
  list.forEach((e, i) => e.setAttribute('data-tabcheck', String(i)));
  return {positive, names: list.map((e) => e.tagName.toLowerCase() + ' ' + (e.getAttribute('aria-label') || e.id || e.textContent.trim().slice(0, 40)))};
})()`

// checkKeyboard presses Tab from the top of the page until focus comes
// back around, and fails unless every focusable element was reached, in
// document order, each with a visible focus indicator.
func (b *browser) checkKeyboard() int {
	b.t.Helper()
	var f struct {
		Positive []string
		Names    []string
	}
	b.mustEval(focusables, &f)
	if len(f.Positive) > 0 {
		b.t.Errorf("positive tabindex breaks the focus order: %v", f.Positive)
	}
	b.mustEval(`document.activeElement && document.activeElement.blur(), window.scrollTo(0, 0), true`, nil)
	var order []int
	for range len(f.Names) + 3 {
		b.do(chromedp.KeyEvent(kb.Tab))
		var at struct {
			Index   string
			Outline string
		}
		b.mustEval(`(() => { const e = document.activeElement; const s = getComputedStyle(e);
			return {index: e.getAttribute('data-tabcheck') || '', outline: s.outlineStyle + ' ' + s.outlineWidth}; })()`, &at)
		if at.Index == "" {
			break // past the last control: focus left the document
		}
		var i int
		fmt.Sscan(at.Index, &i)
		if len(order) > 0 && i == order[0] {
			break
		}
		if strings.HasPrefix(at.Outline, "none") || strings.HasSuffix(at.Outline, " 0px") {
			b.t.Errorf("no visible focus indicator on %q (outline %s)", f.Names[i], at.Outline)
		}
		order = append(order, i)
	}
	for i := range f.Names {
		if i >= len(order) || order[i] != i {
			b.t.Errorf("keyboard focus order %v does not reach every control in document order: %v", order, f.Names)
			break
		}
	}
	return len(order)
}

// lowContrast lists the visible texts whose contrast with their background
// is below WCAG AA: 4.5:1, or 3:1 for large text.
const lowContrast = `(() => {
  const parse = (c) => {
    const m = /rgba?\(([^)]+)\)/.exec(c || '');
    if (!m) return null;
    const p = m[1].split(/[\s,\/]+/).filter(Boolean).map(Number);
    return {r: p[0], g: p[1], b: p[2], a: p.length > 3 ? p[3] : 1};
  };
  const blend = (top, base) => ({r: top.r * top.a + base.r * (1 - top.a), g: top.g * top.a + base.g * (1 - top.a),
    b: top.b * top.a + base.b * (1 - top.a), a: 1});
  const background = (e) => {
    const layers = [];
    for (let n = e; n; n = n.parentElement) {
      const c = parse(getComputedStyle(n).backgroundColor);
      if (c && c.a > 0) { layers.push(c); if (c.a >= 1) break; }
    }
    let base = {r: 255, g: 255, b: 255, a: 1};
    for (let i = layers.length - 1; i >= 0; i--) base = blend(layers[i], base);
    return base;
  };
  const lum = (c) => {
    const f = (v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); };
    return 0.2126 * f(c.r) + 0.7152 * f(c.g) + 0.0722 * f(c.b);
  };
  const out = [];
  const seen = new Set();
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  for (let t = walker.nextNode(); t; t = walker.nextNode()) {
    const e = t.parentElement;
    if (!t.nodeValue.trim() || !e || seen.has(e)) continue;
    seen.add(e);
    if (e.getClientRects().length === 0 || e.closest('.visually-hidden, [hidden], dialog:not([open]), title, desc')) continue;
    const s = getComputedStyle(e);
    const bg = background(e instanceof SVGElement ? e.closest('svg').parentElement : e);
    const fg = blend(parse(e instanceof SVGElement ? s.fill : s.color), bg);
    const l1 = lum(fg), l2 = lum(bg);
    const ratio = (Math.max(l1, l2) + 0.05) / (Math.min(l1, l2) + 0.05);
    const size = parseFloat(s.fontSize), bold = Number(s.fontWeight) >= 700;
    const min = size >= 24 || (size >= 18.66 && bold) ? 3 : 4.5;
    if (ratio < min) out.push(ratio.toFixed(2) + ' for "' + t.nodeValue.trim().slice(0, 40) + '" (' + s.color + ' on ' + JSON.stringify(bg) + ')');
  }
  return out;
})()`

// checkContrast checks the text contrast in the light and the dark scheme.
func (b *browser) checkContrast() {
	b.t.Helper()
	for _, scheme := range []string{"dark", "light"} { // light last: it stays for the screenshots
		b.do(chromedp.Action[chromedp.Void](func(ctx context.Context, t *chromedp.Target) (chromedp.Void, error) {
			_, err := cdp.Call(ctx, t, emulation.SetEmulatedMedia, emulation.SetEmulatedMediaParams{
				Features: []*emulation.MediaFeature{{Name: "prefers-color-scheme", Value: scheme}},
			})
			return chromedp.Void{}, err
		}))
		var low []string
		b.mustEval(lowContrast, &low)
		for _, l := range low {
			b.t.Errorf("%s scheme: low contrast %s", scheme, l)
		}
	}
}

// checkZoom lays the page out as at 200% zoom of a 1280 px window (640 CSS
// pixels): the page must not scroll sideways; wide tables scroll in their
// own focusable regions.
func (b *browser) checkZoom() {
	b.t.Helper()
	b.do(chromedp.EmulateViewport(640, 450, chromedp.EmulateScale(2)))
	defer b.do(chromedp.EmulateViewport(1280, 900))
	b.waitFor(10*time.Second, "a layout without sideways scrolling at 640 CSS pixels",
		`document.documentElement.scrollWidth <= window.innerWidth + 1 && window.innerWidth <= 660`)
}
