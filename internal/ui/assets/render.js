// The page's sections, each built from the view model of one refresh.

import { badge, el } from "./dom.js";
import * as fmt from "./format.js";
import { forget, fraction, observe } from "./progress.js";

const statusKind = { pass: "ok", warn: "warn", fail: "fail" };
const stateKind = { alive: "ok", suspect: "warn", dead: "fail", left: "info" };
const CERT_WARN_DAYS = 14;

function th(label, cls) {
  return el("th", { scope: "col", class: cls }, label);
}

function kv(pairs) {
  return el("dl", { class: "kv" }, pairs.filter(Boolean).map(([k, v]) => [el("dt", {}, k), el("dd", {}, v)]));
}

function button(action, label, name, data, danger) {
  const attrs = { type: "button", "data-action": action, "aria-label": name, class: danger ? "danger" : null };
  for (const [k, v] of Object.entries(data || {})) attrs["data-" + k] = v;
  return el("button", attrs, label);
}

// webNodes are the live web members.
export function webNodes(v) {
  return v.members.filter((m) => m.role === "web" && m.state === "alive");
}

export function serving(v, id) {
  return webNodes(v).filter((m) => m.revision && m.revision.id === id);
}

export function summary(v) {
  const web = webNodes(v);
  const inSync = v.target ? serving(v, v.target.id).length : 0;
  const m = v.maintenance;
  const last = v.deploys[0];
  const items = [
    ["This node", v.status.node + " (" + v.status.role + ")"],
    ["Cluster target", fmt.rev(v.target)],
    ["Web nodes serving the target", inSync + " of " + web.length],
    ["Maintenance", m && m.active ? (m.until ? "On until " + fmt.stamp(new Date(m.until)) : "On") : "Off"],
    last && ["Last deploy", last.status + ", " + fmt.when(last.started, v.now)],
    v.status.db && ["Last good database dump", v.status.db.last_success ? fmt.when(v.status.db.last_success, v.now) : "none"],
  ];
  return items.filter(Boolean).map(([k, val]) => el("div", { "data-key": k }, el("dt", {}, k), el("dd", {}, val)));
}

function progressCard(op, title, p, error) {
  const f = fraction(p);
  const { rate, eta } = observe(op, p);
  const pct = Math.round(f * 100);
  return el("article", { class: "sync-card", "data-key": op, "data-op": op },
    el("h3", {}, title),
    el("progress", { max: 1000, value: Math.round(f * 1000), "aria-label": title + ": " + p.phase + ", " + pct + "%", "data-progress": op }),
    el("dl", {},
      el("dt", {}, "Phase"), el("dd", {}, p.phase + " (" + pct + "%)"),
      el("dt", {}, "Files"), el("dd", {}, fmt.count(p.files_done) + " of " + fmt.count(p.files)),
      el("dt", {}, "Bytes"), el("dd", {}, fmt.bytes(p.bytes_done) + " of " + fmt.bytes(p.bytes)),
      el("dt", {}, "Rate"), el("dd", {}, fmt.rate(rate)),
      el("dt", {}, "Time left"), el("dd", {}, eta === null ? "–" : "about " + fmt.duration(eta)),
      error && [el("dt", {}, "Last error"), el("dd", {}, error)]));
}

export function syncs(v) {
  const cards = [];
  const live = new Set();
  for (const r of v.reports) {
    const st = r.status;
    if (!st) continue;
    if (st.sync && st.sync.phase && st.sync.phase !== "idle") {
      const op = "sync " + r.name;
      live.add(op);
      const to = st.sync.revision && st.sync.revision.seq ? " to revision " + st.sync.revision.seq : "";
      cards.push(progressCard(op, "Sync of " + r.name + to, st.sync, st.sync_error));
    }
    if (st.publish && st.publish.phase && st.publish.phase !== "done") {
      const op = "publish " + r.name;
      live.add(op);
      cards.push(progressCard(op, "Publish on " + r.name, st.publish));
    }
  }
  forget(live);
  if (cards.length === 0) return el("p", { class: "empty" }, "No sync or publish is running.");
  return el("div", { class: "syncs" }, cards);
}

function readiness(r, m) {
  if (!r) return badge("info", m.state === "alive" ? "not asked yet" : "unknown (" + m.state + ")");
  if (r.error || !r.health) return [badge("fail", "not reachable"), el("div", {}, r.error || "")];
  const h = r.health;
  const names = Object.keys(h.checks || {}).sort();
  return el("details", { "data-key": "checks-" + m.name },
    el("summary", {}, badge(statusKind[h.status] || "info", h.status), " ", names.length + " checks"),
    el("ul", { class: "checks" }, names.flatMap((n) => h.checks[n].map((c, i) =>
      el("li", { "data-key": n + i }, n + ": " + c.status + (c.output ? " — " + c.output : ""))))));
}

function certCell(m, r, now) {
  const st = r && r.status && r.status.certificate;
  const t = m.certificate_not_after || (st && st.not_after);
  if (!t) return "–";
  const days = (new Date(t).getTime() - now) / 86400000;
  const kind = days < 0 ? "fail" : days < CERT_WARN_DAYS ? "warn" : "ok";
  const label = days < 0 ? "expired" : Math.floor(days) + " days";
  return [badge(kind, label), " ", fmt.stamp(new Date(t))];
}

function syncCell(v, m) {
  if (m.role !== "web" || !v.target) return "–";
  return m.revision && m.revision.id === v.target.id ? badge("ok", "yes") : badge("warn", "no");
}

function lagCell(v, m) {
  if (!m.behind_since) return "–";
  return fmt.duration((v.now - new Date(m.behind_since).getTime()) / 1000);
}

function nodeRow(v, m) {
  const r = v.reportByName.get(m.name);
  const st = r && r.status;
  const cells = [
    el("th", { scope: "row" }, m.name, m.name === v.status.node ? " (this node)" : ""),
    el("td", {}, m.role || "–"),
    el("td", {}, badge(stateKind[m.state] || "info", m.state), " ", el("span", { class: "note", title: m.since ? fmt.stamp(new Date(m.since)) : "" }, fmt.age(m.since, v.now))),
    el("td", {}, fmt.rev(m.revision)),
    el("td", {}, syncCell(v, m)),
    el("td", { class: "num" }, lagCell(v, m), st && st.sync_error ? el("div", { class: "error-text" }, st.sync_error) : null),
    el("td", {}, m.drained ? badge("warn", "drained") : "no"),
    el("td", {}, readiness(r, m)),
    el("td", {}, certCell(m, r, v.now)),
    el("td", {}, m.version || "–"),
  ];
  if (v.admin) {
    const act = m.drained
      ? button("undrain", "Undrain", "Undrain " + m.name, { node: m.name })
      : button("drain", "Drain", "Drain " + m.name, { node: m.name }, true);
    cells.push(el("td", {}, m.state === "alive" && m.role === "web" ? act : "–"));
  }
  return el("tr", { "data-key": m.name, "data-node": m.name, class: m.name === v.status.node ? "self" : null }, cells);
}

export function nodes(v) {
  const head = ["Node", "Role", "State", "Revision", "In sync", "Lag", "Drained", "Readiness", "Certificate expires", "Version"]
    .map((h) => th(h, h === "Lag" ? "num" : null));
  if (v.admin) head.push(th("Action"));
  const alive = v.members.filter((m) => m.state === "alive").length;
  return [
    el("caption", {}, v.members.length + " members, " + alive + " alive; target " + fmt.rev(v.target)),
    el("thead", {}, el("tr", {}, head)),
    el("tbody", {}, v.members.map((m) => nodeRow(v, m))),
  ];
}

export function maintenance(v) {
  const m = v.maintenance || {};
  const live = v.members.filter((x) => x.state === "alive");
  const applied = live.filter((x) => m.clock && x.maintenance && x.maintenance.clock === m.clock).length;
  const out = [kv([
    ["State", m.active ? badge("warn", "on") : badge("ok", "off")],
    m.active && ["Message", m.message || "(the built-in page)"],
    m.active && ["Ends", m.until ? fmt.when(m.until, v.now) : "when turned off"],
    m.enabled && !m.active && ["Ended", m.until ? fmt.when(m.until, v.now) : "–"],
    m.allow && m.allow.length && ["Allowed networks", m.allow.join(", ")],
    m.set_by && ["Last set by", m.set_by],
    m.clock && ["Applied by", applied + " of " + live.length + " live nodes"],
  ])];
  if (v.admin) {
    out.push(el("div", { class: "actions" }, m.active
      ? button("maint-off", "Turn maintenance off…", "Turn maintenance off")
      : button("maint-on", "Turn maintenance on…", "Turn maintenance on", {}, true)));
  }
  return el("div", { class: "panel" }, out);
}

function servedBy(v, id) {
  const names = v.members.filter((m) => m.revision && m.revision.id === id).map((m) => m.name);
  return names.length ? names.join(", ") : "–";
}

export function revisions(v) {
  const list = [...((v.revisions && v.revisions.revisions) || [])].reverse();
  const controller = v.status.role === "controller";
  const head = ["Seq", "ID", "Published", "Message", "Files", "Size", "Changed", "Served by", "State"]
    .map((h) => th(h, ["Seq", "Files", "Size", "Changed"].includes(h) ? "num" : null));
  const canRollback = v.admin && controller;
  if (canRollback) head.push(th("Action"));
  const rows = list.map((r) => {
    const marks = [r.target ? badge("ok", "target") : null, r.applied ? badge("info", "applied here") : null].filter(Boolean);
    const cells = [
      el("td", { class: "num" }, r.seq),
      el("td", {}, el("code", { title: r.id }, fmt.shortID(r.id))),
      el("td", {}, fmt.when(r.created, v.now)),
      el("td", {}, r.message || "–"),
      el("td", { class: "num" }, fmt.count(r.files)),
      el("td", { class: "num" }, fmt.bytes(r.bytes)),
      el("td", { class: "num" }, fmt.count(r.changed)),
      el("td", {}, servedBy(v, r.id)),
      el("td", {}, marks.length ? marks : "kept"),
    ];
    if (canRollback) {
      cells.push(el("td", {}, r.target ? "–" :
        button("rollback", "Roll back…", "Roll back to revision " + r.seq, { rev: r.id, seq: r.seq }, true)));
    }
    return el("tr", { "data-key": r.id }, cells);
  });
  const caption = controller ? "Published revisions, newest first" : "Releases kept on this node, newest first";
  return [el("caption", {}, caption), el("thead", {}, el("tr", {}, head)),
    el("tbody", {}, rows.length ? rows : el("tr", {}, el("td", { colspan: head.length, class: "empty" }, "No revision yet.")))];
}

export function targets(v) {
  const list = [...((v.history && v.history.targets) || [])].reverse().slice(0, 10);
  if (list.length === 0) return el("p", { class: "empty" }, "No change of the target since this node started.");
  return el("ul", {}, list.map((t) => el("li", { "data-key": t.time + t.id },
    fmt.stamp(new Date(t.time)) + ": revision " + t.seq + " (" + fmt.shortID(t.id) + ") became the target by " + t.kind +
    ", set by " + t.set_by)));
}

function stepItem(s) {
  const kind = { ok: "ok", failed: "fail", running: "warn", pending: "info" }[s.status] || "info";
  return el("li", {}, s.name, " ", badge(kind, s.status), s.seconds ? " " + fmt.duration(s.seconds) : "",
    s.detail ? el("div", { class: "note" }, s.detail) : null);
}

export function deploys(v) {
  if (v.deploys.length === 0) {
    return el("p", { class: "empty" }, v.status.role === "controller"
      ? "No deploy since this agent started." : "Deploys run on the controller; open its page to see them.");
  }
  return v.deploys.slice(0, 5).map((d) => {
    const kind = { succeeded: "ok", failed: "fail", running: "warn" }[d.status] || "info";
    return el("article", { class: "deploy panel", "data-key": d.id },
      el("h3", {}, "Deploy ", el("code", {}, d.id), " ", badge(kind, d.status)),
      kv([
        ["Started", fmt.when(d.started, v.now)],
        ["Duration", d.finished ? fmt.duration(d.seconds) : "running for " + fmt.duration((v.now - new Date(d.started)) / 1000)],
        d.revision && ["Revision", fmt.rev(d.revision)],
        d.request && d.request.message && ["Message", d.request.message],
        d.request && d.request.run && ["Command", el("code", {}, d.request.run)],
        d.error && ["Error", el("span", { class: "error-text" }, d.error)],
      ]),
      el("ol", { class: "steps", "aria-label": "Steps of deploy " + d.id }, d.steps.map(stepItem)));
  });
}

export function dumps(v) {
  if (v.dumpsError) return el("p", { class: "empty" }, v.dumpsError);
  const l = v.dumps;
  if (!l) return el("p", { class: "empty" }, "Loading…");
  const recs = [...(l.dumps || [])].reverse().slice(0, 10);
  const head = ["Name", "Status", "Trigger", "Started", "Duration", "Size", "SHA-256"]
    .map((h) => th(h, ["Duration", "Size"].includes(h) ? "num" : null));
  const row = (d) => el("tr", { "data-key": d.name },
    el("th", { scope: "row" }, el("code", {}, d.name)),
    el("td", {}, badge(d.status === "ok" ? "ok" : d.status === "running" ? "warn" : "fail", d.status)),
    el("td", {}, d.trigger || "–"), el("td", {}, fmt.when(d.started, v.now)),
    el("td", { class: "num" }, fmt.duration(d.seconds)), el("td", { class: "num" }, fmt.bytes(d.size)),
    el("td", {}, el("code", { title: d.sha256 || "" }, fmt.shortID(d.sha256))));
  return [
    kv([
      ["Schedule", l.schedule || "–"],
      ["Next", fmt.when(l.next_scheduled, v.now)],
      ["Last good dump", fmt.when(l.last_success, v.now)],
      ["Failures since start", String(l.failures)],
      l.running && ["Running", l.running.name + " since " + fmt.when(l.running.started, v.now)],
      l.last_failure && ["Last failure", l.last_failure.name + ": " + (l.last_failure.error || "failed")],
      ["Kept", l.keep + " in " + l.dir],
    ]),
    el("div", { class: "scroll", role: "region", "aria-label": "Database dumps", tabindex: 0 },
      el("table", {}, el("caption", {}, "Good dumps, newest first"), el("thead", {}, el("tr", {}, head)),
        el("tbody", {}, recs.length ? recs.map(row) : el("tr", {}, el("td", { colspan: 7, class: "empty" }, "No dump yet."))))),
  ];
}
