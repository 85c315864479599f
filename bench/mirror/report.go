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

// Targets of issue 2.
const (
	targetPublishRatio   = 0.4
	targetRepublishRatio = 0.6
	targetSyncRatio      = 1.0
	targetServeSeconds   = 2.0
	targetWireBytes      = 64 << 10
	targetPeakRSS        = 100e6
	targetIdleRSS        = 40e6
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
	fmt.Fprintf(&b, "- Medians of %d cold runs (rows 1, 3, 6) and %d 1-file changes (rows 2, 4, 5); "+
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
			parts = append(parts, fmt.Sprintf("%dx %s", s.scale, kib(s.wireExtra.median())))
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
	fmt.Fprintf(b, "\n### Scale %d: %s (%d files, %.1f MB)\n\n", s.scale, name, s.files, float64(s.bytes)/1e6)
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
	return []row{
		ratioRow("1. Cold publish (CLI wall time)", s.publishWall, "`sha256sum` of the tree", s.hashAnchor, targetPublishRatio),
		ratioRow("2. Re-publish after a 1-file change", s.republishWall, "`rsync -a` over a synced dst", s.rsyncAnchor, targetRepublishRatio),
		ratioRow("3. Initial sync of an empty web node", s.initialSync, "`rsync -a` into an empty dst", s.copyAnchor, targetSyncRatio),
		absRow("4. 1-file change: publish → both web nodes serve it", seconds(s.bothServe.median()),
			s.bothServe.median() <= targetServeSeconds, "≤ 2 s"),
		absRow(fmt.Sprintf("5. Wire bytes of the change beyond the file (%d B)", s.changedBytes), kib(s.wireExtra.median()),
			s.wireExtra.median() <= targetWireBytes, "≤ 64 KiB"),
		absRow("6. Web agent peak RSS (VmHWM) over a full sync", mb(s.peakRSS.median()),
			s.peakRSS.median() <= targetPeakRSS, "≤ 100 MB at 3x"),
		absRow(fmt.Sprintf("6. Web agent idle RSS (VmRSS %s after the sync)", o.idle), mb(s.idleRSS.median()),
			s.idleRSS.median() <= targetIdleRSS, "≤ 40 MB"),
	}
}

func ratioRow(metric string, v samples, anchorName string, anchor samples, target float64) row {
	ratio := v.median() / anchor.median()
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
