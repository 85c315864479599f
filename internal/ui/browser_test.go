package ui_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/nodeagent/nodeagent/internal/testutil"
)

// browser is one tab of a headless Debian chromium, driven over the
// DevTools protocol.
type browser struct {
	t   *testing.T
	ctx context.Context
}

// chromium finds the browser; without it the test is skipped, except in CI
// (CI=true), where it fails: .ci/run installs it.
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("chromium is not installed (apt-get install chromium); CI must run the browser tests")
	}
	t.Skip("chromium is not installed (apt-get install chromium)")
	return ""
}

// newBrowser starts chromium with the flags it needs on this machine (no
// sandbox as root, no GPU, no network of its own) and a new empty profile.
func newBrowser(t *testing.T, extra ...chromedp.ExecAllocatorOption) *browser {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium(t)),
		chromedp.Flag("headless", true),
		chromedp.Flag("no-sandbox", true),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("no-first-run", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("force-color-profile", "srgb"),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 900),
	)
	opts = append(opts, extra...)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() {
		cancel()
		cancelAlloc()
	})
	// Start the browser on ctx itself: a browser started by a call with a
	// shorter context would end with it.
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	return &browser{t: t, ctx: ctx}
}

func (b *browser) do(steps ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, time.Minute)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		b.t.Fatal(err)
	}
}

// eval evaluates a JavaScript expression (awaiting a promise) and decodes
// its JSON value into v.
func (b *browser) eval(js string, v any) error {
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	raw, err := chromedp.Run(ctx, chromedp.Evaluate[[]byte](js, chromedp.EvalAwaitPromise))
	if err != nil {
		return fmt.Errorf("evaluate %q: %w", js, err)
	}
	if v == nil {
		return nil
	}
	return json.Unmarshal(raw, v)
}

func (b *browser) mustEval(js string, v any) {
	b.t.Helper()
	if err := b.eval(js, v); err != nil {
		b.t.Fatal(err)
	}
}

func (b *browser) str(js string) string {
	b.t.Helper()
	var s string
	b.mustEval(js, &s)
	return s
}

// waitFor polls the page until the expression is true.
func (b *browser) waitFor(timeout time.Duration, what, js string) {
	b.t.Helper()
	testutil.Eventually(b.t, timeout, func() error {
		var ok bool
		if err := b.eval("Boolean("+js+")", &ok); err != nil {
			return err
		}
		if !ok {
			return errors.New("page never showed " + what)
		}
		return nil
	})
}

// screenshot saves the whole page as a PNG among the test's artifacts
// (kept with go test -artifacts, under -outputdir) and logs its path.
func (b *browser) screenshot(name string) string {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		b.t.Fatal(err)
	}
	path := filepath.Join(b.t.ArtifactDir(), name)
	if err := os.WriteFile(path, png, 0o644); err != nil {
		b.t.Fatal(err)
	}
	b.t.Logf("screenshot: %s (%d bytes)", path, len(png))
	return path
}
