package main

import (
	"fmt"
	"strings"
)

// report is the markdown section the command prints.
type report struct {
	machine machine
	command string
	agent   string // nodeagent version output
	opts    options
	scales  []*scaleResult
	loadEnd string
}

// Targets of issue 13 (the wire cost of a change is issue 2's).
const (
	targetPublishRatio    = 0.5
	targetPublishCPURatio = 0.7
	targetRepublish       = 0.1 // s
	targetSyncRatio       = 0.9
	targetSyncWireRatio   = 0.45 // realistic corpus
	targetServeMedian     = 0.4  // s
	targetServeP95        = 0.8  // s
	targetWireBytes       = 64 << 10
	targetPeakRSS         = 100e6
	targetIdleRSS         = 40e6
)

type row struct{ metric, value, anchor, ratio, target, met string }

func (r *report) markdown() string {
	var b strings.Builder
	m := r.machine
	fmt.Fprintf(&b, "## Mirror benchmark, %s\n\n", m.date)
	fmt.Fprintf(&b, "- Machine: %d CPUs (%s), %s RAM, Linux %s; work dir on %s; %s; %s\n",
		m.nproc, m.cpu, m.memory, m.kernel, m.fs, m.goVersion, m.rsync)
	fmt.Fprintf(&b, "- Load average (1 min): %s at the start, %s at the end\n", m.loadStart, r.loadEnd)
	fmt.Fprintf(&b, "- Command: `%s` (%s)\n", r.command, r.agent)
	fmt.Fprintf(&b, "- Medians of %d cold runs (rows 1, 3, 6) and %d 1-file changes (rows 2, 4, 5; the first change "+
		"follows the initial sync as soon as both web nodes are idle: synced, and their warm spare made); "+
		"the anchors run in the same loops. Page cache warm for everything (the tree is read once "+
		"before the first timing, caches are never dropped). Row 3: the web agent is already running, "+
		"joined and empty when the cold publish starts; the sync is timed from the first `/v1/status` "+
		"(polled every 5 ms) that shows the new target until the first that says in_sync. "+
		"MB = 10^6 bytes, KiB = 1024 bytes.\n", r.opts.runs, r.opts.changes)
	for _, s := range r.scales {
		s.markdown(&b, r.opts)
	}
	if len(r.scales) > 1 {
		var parts []string
		var wire samples
		for _, s := range r.scales {
			parts = append(parts, fmt.Sprintf("%dx %s %s", s.scale, s.corpus, kib(s.wireExtra.median())))
			wire.add(s.wireExtra.median())
		}
		verdict := "flat: it does not grow with the tree"
		if wire.max() > 1.5*wire.min()+1024 {
			verdict = "it grows with the tree"
		}
		fmt.Fprintf(&b, "Wire cost of a 1-file change beyond the file, by scale: %s (%s).\n\n",
			strings.Join(parts, ", "), verdict)
	}
	return b.String()
}

func (s *scaleResult) markdown(b *strings.Builder, o options) {
	name := "the Moodle 3.5 tree"
	if s.scale > 1 {
		name = fmt.Sprintf("the synthetic %dx tree", s.scale)
	}
	content := "pseudo-random bytes"
	if s.corpus == corpusReal {
		content = "real PHP/JS/CSS/images of Debian's php-* packages"
	}
	fmt.Fprintf(b, "\n### Scale %d, %s corpus: %s, %s (%d files, %.1f MB; zstd -1 of its tar stream %.2fx)\n\n",
		s.scale, s.corpus, name, content, s.files, float64(s.bytes)/1e6, ratioOf(float64(s.zstdBytes), float64(s.bytes)))
	b.WriteString("| metric | nodeagent | anchor | ratio | target | met? |\n|---|---|---|---|---|---|\n")
	for _, r := range s.rows(o) {
		fmt.Fprintf(b, "| %s | %s | %s | %s | %s | %s |\n", r.metric, r.value, r.anchor, r.ratio, r.target, r.met)
	}
	b.WriteString("\n")
	for _, d := range s.details() {
		fmt.Fprintf(b, "- %s\n", d)
	}
	b.WriteString("\n")
}

func (s *scaleResult) rows(o options) []row {
	wireRatio := s.syncWire.median() / float64(s.bytes)
	wireTarget, wireMet := "(≤ 0.45 on the real corpus)", "—"
	if s.corpus == corpusReal {
		wireTarget, wireMet = "≤ 0.45", met(wireRatio <= targetSyncWireRatio)
	}
	return []row{
		ratioRow("1. Cold publish (CLI wall time)", s.publishWall, "`sha256sum` of the tree", s.hashAnchor, targetPublishRatio),
		ratioRow("1. Cold publish, CPU time of the controller", s.publishCPU, "`sha256sum` CPU", s.hashCPU, targetPublishCPURatio),
		{metric: "2. Re-publish after a 1-file change", value: seconds(s.republishWall.median()),
			anchor: "`rsync -a` over a synced dst: " + seconds(s.rsyncAnchor.median()),
			ratio:  fmt.Sprintf("%.2f", ratioOf(s.republishWall.median(), s.rsyncAnchor.median())),
			target: "≤ 0.1 s", met: met(s.republishWall.median() <= targetRepublish)},
		ratioRow("3. Initial sync of an empty web node", s.initialSync, "`rsync -a` into an empty dst", s.copyAnchor, targetSyncRatio),
		{metric: "3. Wire bytes of the initial sync", value: fmt.Sprintf("%.1f MB", s.syncWire.median()/1e6),
			anchor: fmt.Sprintf("the tree: %.1f MB", float64(s.bytes)/1e6), ratio: fmt.Sprintf("%.2f", wireRatio),
			target: wireTarget, met: wireMet},
		absRow("4. 1-file change: publish → both web nodes serve it, median", seconds(s.bothServe.median()),
			s.bothServe.median() <= targetServeMedian, "≤ 0.4 s"),
		absRow("4. … p95 (the first changes after the initial sync included)", seconds(s.bothServe.quantile(0.95)),
			s.bothServe.quantile(0.95) <= targetServeP95, "≤ 0.8 s"),
		absRow(fmt.Sprintf("5. Wire bytes of the change beyond the file (%d B)", s.changedBytes), kib(s.wireExtra.median()),
			s.wireExtra.median() <= targetWireBytes, "≤ 64 KiB"),
		absRow("6. Web agent peak RSS (VmHWM) over a full sync", mb(s.peakRSS.median()),
			s.peakRSS.median() <= targetPeakRSS, "≤ 100 MB at 3x"),
		absRow(fmt.Sprintf("6. Web agent idle RSS (VmRSS %s after the sync)", o.idle), mb(s.idleRSS.median()),
			s.idleRSS.median() <= targetIdleRSS, "≤ 40 MB"),
	}
}

// ratioOf is a/b, 0 when b is.
func ratioOf(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}

func ratioRow(metric string, v samples, anchorName string, anchor samples, target float64) row {
	ratio := ratioOf(v.median(), anchor.median())
	return row{metric: metric, value: seconds(v.median()),
		anchor: anchorName + ": " + seconds(anchor.median()),
		ratio:  fmt.Sprintf("%.2f", ratio), target: fmt.Sprintf("≤ %.1f", target), met: met(ratio <= target)}
}

func absRow(metric, value string, ok bool, target string) row {
	return row{metric: metric, value: value, anchor: "—", ratio: "—", target: target, met: met(ok)}
}

func (s *scaleResult) details() []string {
	return []string{
		fmt.Sprintf("Cold publish: %s wall (range %s), %s as the agent reports it; sha256sum range %s.",
			seconds(s.publishWall.median()), secondsRange(s.publishWall), seconds(s.publishAgent.median()),
			secondsRange(s.hashAnchor)),
		fmt.Sprintf("Initial sync: %s (range %s); in sync %s after the publish command returned, %s after it started; %.0f mirror requests "+
			"to the controller (max %.0f) for %d files, %.1f MB on the wire (%.3f× the tree); "+
			"rsync into an empty dst range %s.",
			seconds(s.initialSync.median()), secondsRange(s.initialSync), seconds(s.afterPublish.median()), seconds(s.publishSync.median()),
			s.syncRequests.median(), s.syncRequests.max(), s.files, s.syncWire.median()/1e6,
			s.syncWire.median()/float64(s.bytes), secondsRange(s.copyAnchor)),
		fmt.Sprintf("1-file change (`%s`): re-publish %s wall (range %s), %s as the agent reports it; rsync range %s; "+
			"both web nodes serve it after %s (range %s); %.1f mirror requests per web node; "+
			"wire beyond the file %s on web-1, %s on web-2.",
			s.changedFile, seconds(s.republishWall.median()), secondsRange(s.republishWall),
			seconds(s.republishAgent.median()), secondsRange(s.rsyncAnchor),
			seconds(s.bothServe.median()), secondsRange(s.bothServe), s.changeRequests.median(),
			kib(s.wireExtra.median()), kib(s.wireExtraOther.median())),
		fmt.Sprintf("CPU time (user + system; less sensitive than wall time to other load on the machine): "+
			"cold publish %s vs sha256sum %s (%s); initial sync, web + controller, %s vs rsync into an empty dst %s (%s); "+
			"re-publish %s vs rsync over a synced dst %s (%s).",
			seconds(s.publishCPU.median()), seconds(s.hashCPU.median()), times(s.publishCPU, s.hashCPU),
			seconds(s.syncCPU.median()), seconds(s.copyCPU.median()), times(s.syncCPU, s.copyCPU),
			seconds(s.republishCPU.median()), seconds(s.rsyncCPU.median()), times(s.republishCPU, s.rsyncCPU)),
		"Web-1 sync phases (median time per sync, from its debug log): initial sync: " + s.syncPhases.String() +
			"; 1-file change: " + s.changePhases.String() + ".",
		fmt.Sprintf("Web agent RSS: peak range %s–%s, idle range %s–%s.",
			mb(s.peakRSS.min()), mb(s.peakRSS.max()), mb(s.idleRSS.min()), mb(s.idleRSS.max())),
	}
}

// times is the ratio of the medians of a and b.
func times(a, b samples) string {
	if b.median() == 0 {
		return "—"
	}
	return fmt.Sprintf("%.2f×", a.median()/b.median())
}

func met(ok bool) string {
	if ok {
		return "yes"
	}
	return "**no**"
}

func seconds(s float64) string {
	if s < 1 {
		return fmt.Sprintf("%.0f ms", s*1000)
	}
	return fmt.Sprintf("%.2f s", s)
}

func secondsRange(v samples) string {
	return seconds(v.min()) + "–" + seconds(v.max())
}

func kib(b float64) string { return fmt.Sprintf("%.1f KiB", b/1024) }
func mb(b float64) string  { return fmt.Sprintf("%.1f MB", b/1e6) }
