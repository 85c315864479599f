// The status page: finds out how it may read (GET /ui/session), polls the
// public API, renders, announces changes to screen readers, and runs the
// operator's actions after a confirmation.

import * as api from "./api.js";
import { chart } from "./chart.js";
import { el, render } from "./dom.js";
import * as fmt from "./format.js";
import { members } from "./members.js";
import * as sections from "./render.js";

const FAST = 1000; // while something moves
const SLOW = 4000;
const HIDDEN = 15000; // tab in the background
const HISTORY_EVERY = 10000;

const page = {
  view: null,
  timer: 0,
  seq: 0, // of the latest refresh
  pending: null, // the action the confirmation dialog asks about
  connected: undefined, // whether the last refresh worked
  history: { since: null, lag: [], syncs: [], targets: [] },
  historyAt: 0,
  memberRevs: "", // the members' revisions when the history was read
  lastGood: 0,
};

const $ = (id) => document.getElementById(id);

function setText(id, text) {
  const n = $(id);
  if (n.textContent !== text) n.textContent = text;
}

// announce tells screen readers about a change, politely.
function announce(text) {
  const n = $("announce");
  n.textContent = "";
  setTimeout(() => {
    n.textContent = text;
  }, 50);
}

function settled(r, fallback) {
  return r.status === "fulfilled" ? r.value : fallback;
}

async function load() {
  const [status, msBody] = await Promise.all([api.get("/v1/status"), api.get("/v1/members")]);
  const ms = members(msBody);
  const revs = ms.map((m) => m.name + "=" + (m.revision ? m.revision.id : "")).join(",");
  const historyDue = Date.now() - page.historyAt > HISTORY_EVERY || revs !== page.memberRevs;
  page.memberRevs = revs;
  const [nodes, revList, maint, deploys, dumps, history] = await Promise.allSettled([
    api.get("/v1/nodes"),
    api.get("/v1/revisions"),
    api.get("/v1/maintenance"),
    api.get("/v1/deploys"),
    status.db ? api.get("/v1/db/dumps") : Promise.reject(new Error("No database on this node: dumps run on the controller, with a db section in its config.")),
    historyDue ? api.get("/v1/history") : Promise.resolve(null),
  ]);
  const failed = [nodes, revList, maint].find((r) => r.status === "rejected");
  if (failed) throw failed.reason;
  const h = settled(history, null);
  if (h) {
    page.history = h;
    page.historyAt = Date.now();
  }
  const reports = settled(nodes, { nodes: [] }).nodes || [];
  return {
    now: Date.now(),
    status,
    members: ms,
    reports,
    reportByName: new Map(reports.map((r) => [r.name, r])),
    target: status.revision && status.revision.target,
    revisions: settled(revList, null),
    maintenance: settled(maint, null),
    deploys: settled(deploys, { deploys: [] }).deploys || [],
    dumps: settled(dumps, null),
    dumpsError: dumps.status === "rejected" ? dumps.reason.message : "",
    history: page.history,
    admin: Boolean(api.auth.admin),
  };
}

function busy(v) {
  const moving = v.reports.some((r) => r.status && ((r.status.sync && r.status.sync.phase !== "idle") ||
    (r.status.publish && r.status.publish.phase !== "done")));
  const behind = v.members.some((m) => m.behind_since);
  const deploying = v.deploys.some((d) => d.status === "running");
  return moving || behind || deploying;
}

function draw(v) {
  setText("where", "· " + v.status.node + " (" + v.status.role + ", " + (api.auth.api === "local" ? "local API" : "cluster API") + ")");
  render("summary", sections.summary(v));
  render("sync", sections.syncs(v));
  render("nodes", sections.nodes(v));
  render("maintenance", sections.maintenance(v));
  render("revisions", sections.revisions(v));
  render("targets", sections.targets(v));
  render("chart", chart(v.history, v.now));
  render("deploys", sections.deploys(v));
  render("dumps", sections.dumps(v));
}

// changes describes what changed since the last refresh, for screen readers.
function changes(old, v) {
  if (!old) return [];
  const out = [];
  if (v.target && (!old.target || old.target.id !== v.target.id)) {
    out.push("Revision " + v.target.seq + " is the new cluster target.");
  }
  const web = sections.webNodes(v);
  if (v.target && web.length > 0) {
    const now = sections.serving(v, v.target.id).length;
    const before = old.target && old.target.id === v.target.id ? sections.serving(old, v.target.id).length : -1;
    if (now === web.length && before !== now) out.push("All " + now + " web nodes serve revision " + v.target.seq + ".");
  }
  const on = Boolean(v.maintenance && v.maintenance.active);
  if (on !== Boolean(old.maintenance && old.maintenance.active)) out.push("Maintenance is " + (on ? "on." : "off."));
  const was = new Map(old.members.map((m) => [m.name, m.state]));
  for (const m of v.members) {
    if (was.has(m.name) && was.get(m.name) !== m.state) out.push(m.name + " is " + m.state + ".");
    if (!was.has(m.name)) out.push(m.name + " joined.");
  }
  const oldDeploys = new Map(old.deploys.map((d) => [d.id, d.status]));
  for (const d of v.deploys) {
    if (oldDeploys.get(d.id) !== d.status && d.status !== "running") out.push("Deploy " + d.id + " " + d.status + ".");
  }
  return out;
}

// connection shows whether the last refresh worked; screen readers hear
// only when that changes, not every refresh.
function connection(ok, detail) {
  const n = $("conn");
  if (ok !== page.connected && page.connected !== undefined) {
    announce(ok ? "Connection to the agent is back." : "Cannot read the API: " + detail + ". Retrying.");
  }
  page.connected = ok;
  if (ok) {
    n.classList.remove("stale");
    setText("conn", "Up to date, " + fmt.stamp(new Date()) + ". Refreshes by itself.");
  } else {
    n.classList.add("stale");
    setText("conn", "Cannot read the API: " + detail + ". Last good refresh " +
      (page.lastGood ? fmt.stamp(new Date(page.lastGood)) : "never") + "; retrying.");
  }
}

// refresh reads and draws once, then schedules the next refresh. A newer
// refresh (after an action, say) supersedes one in flight.
async function refresh() {
  clearTimeout(page.timer);
  const seq = ++page.seq;
  let next = SLOW;
  try {
    const v = await load();
    if (seq !== page.seq) return;
    const told = changes(page.view, v);
    page.view = v;
    page.lastGood = Date.now();
    draw(v);
    connection(true);
    if (told.length) announce(told.join(" "));
    next = busy(v) ? FAST : SLOW;
  } catch (err) {
    if (seq !== page.seq) return;
    if (err instanceof api.APIError && err.status === 401) {
      await unauthorized();
      return;
    }
    connection(false, err.message);
  }
  if (document.hidden) next = HIDDEN;
  clearTimeout(page.timer);
  page.timer = setTimeout(refresh, next);
}

// stop ends the refreshes and forgets what was shown: nothing of the
// cluster stays in the page without a way to read it.
function stop() {
  clearTimeout(page.timer);
  page.seq++;
  page.view = null;
  for (const id of ["summary", "sync", "nodes", "maintenance", "revisions", "targets", "chart", "deploys", "dumps"]) render(id);
}

// unauthorized: a read token is renewed (the agent restarted); a rejected
// API token is dropped and the sign-in form shown again.
async function unauthorized() {
  if (api.auth.admin) {
    api.setAdmin("");
    setText("signin-error", "The API token was refused. Sign in again.");
  }
  try {
    await api.session();
  } catch (err) {
    connection(false, err.message);
  }
  showAuth();
  if (api.canRead()) page.timer = setTimeout(refresh, FAST);
  else stop();
}

// showAuth shows the page or the sign-in form, and the actions only with
// the API token.
function showAuth() {
  const admin = Boolean(api.auth.admin);
  const read = api.canRead();
  $("main").hidden = !read;
  $("signin").hidden = read;
  $("signout").hidden = !admin;
  $("signin-open").hidden = admin || !read;
  $("signin-cancel").hidden = true;
  setText("auth-state", admin ? "Signed in: actions enabled." : read ? "Read-only: sign in to act." : "");
  const why = api.auth.api === "cluster"
    ? "This is the cluster API: the page shows the cluster only after you give the API token."
    : "This is the local API, but it does not read without a token here: " + (api.auth.reason || "no read token") + ".";
  setText("signin-why", why);
  const warn = $("signin-warn");
  const plain = location.protocol === "http:" && !/^(localhost|127\.|\[::1\])/.test(location.host);
  warn.hidden = !plain;
  warn.textContent = plain ? "Warning: this connection is not encrypted; the token would cross the network in clear. Use an SSH tunnel." : "";
  if (!read) setText("conn", "Waiting for the API token.");
}

function openSignIn() {
  $("signin").hidden = false;
  $("signin-cancel").hidden = false;
  setText("signin-why", "Give the API token to change maintenance, drain nodes or roll back.");
  $("token").focus();
}

async function signIn(ev) {
  ev.preventDefault();
  const token = $("token").value.trim();
  if (!token) return;
  api.setAdmin(token);
  try {
    await api.get("/v1/status");
  } catch (err) {
    api.setAdmin("");
    setText("signin-error", err.status === 401 ? "This token is not accepted by this node." : "Cannot check the token: " + err.message);
    $("token").focus();
    return;
  }
  $("token").value = "";
  setText("signin-error", "");
  showAuth();
  announce("Signed in. Actions are enabled.");
  $("main").focus();
  refresh();
}

function signOut() {
  api.setAdmin("");
  showAuth();
  announce(api.canRead() ? "Signed out. The page is read-only." : "Signed out.");
  if (api.canRead()) {
    refresh();
  } else {
    stop();
    $("token").focus();
  }
}

// Actions, each confirmed in a dialog first.

const durations = [["", "Until turned off"], ["900", "15 minutes"], ["1800", "30 minutes"], ["3600", "1 hour"], ["7200", "2 hours"], ["14400", "4 hours"]];

// action is what the confirmation dialog shows and runs; its title is also
// the label of the button that confirms.
function action(title, text, run, fields) {
  return { title, text, ok: title, run, fields };
}

function drainPath(node) {
  return "/v1/nodes/" + encodeURIComponent(node) + "/drain";
}

function maintenanceFields() {
  return [
    el("label", { for: "maint-message" }, "Message on the maintenance page (optional)"),
    el("textarea", { id: "maint-message", rows: 2, maxlength: 500 }),
    el("label", { for: "maint-for" }, "Ends by itself after"),
    el("select", { id: "maint-for" }, durations.map(([v, l]) => el("option", { value: v }, l))),
  ];
}

function maintenanceOn() {
  const secs = Number($("maint-for").value);
  const until = secs ? new Date(Date.now() + secs * 1000).toISOString() : null;
  return api.act("PUT", "/v1/maintenance", { enabled: true, message: $("maint-message").value, allow: [], until });
}

function actionFor(btn) {
  const { node, seq, rev } = btn.dataset;
  switch (btn.dataset.action) {
    case "maint-on":
      return action("Turn maintenance on",
        "Every web node answers visitors with the maintenance page (503) until it is turned off; allowed networks still reach Moodle.",
        maintenanceOn, maintenanceFields);
    case "maint-off":
      return action("Turn maintenance off", "Every web node serves Moodle to everyone again.",
        () => api.act("PUT", "/v1/maintenance", { enabled: false, message: "", allow: [], until: null }));
    case "drain":
      return action("Drain " + node,
        node + " fails its readiness check, so the load balancer stops sending it visitors. It keeps syncing.",
        () => api.act("PUT", drainPath(node)));
    case "undrain":
      return action("Undrain " + node,
        node + " passes its readiness check again (when its other checks pass) and gets visitors.",
        () => api.act("DELETE", drainPath(node)));
    case "rollback":
      return action("Roll back to revision " + seq,
        "Revision " + seq + " becomes the cluster target: every web node switches to it from its kept releases.",
        () => api.act("POST", "/v1/rollback", { revision: rev }));
  }
  return null;
}

function confirmAction(btn) {
  const a = actionFor(btn);
  if (!a || !api.auth.admin) return;
  const dlg = $("confirm");
  setText("confirm-h", a.title);
  setText("confirm-text", a.text);
  setText("confirm-ok", a.ok);
  setText("confirm-error", "");
  render("confirm-fields", a.fields ? a.fields() : []);
  page.pending = a;
  dlg.showModal();
  $("confirm-cancel").focus();
}

async function confirmed(ev) {
  ev.preventDefault();
  const a = page.pending;
  if (!a) return;
  const ok = $("confirm-ok");
  ok.disabled = true;
  try {
    await a.run();
    page.pending = null;
    $("confirm").close();
    announce(a.title + ": done.");
    refresh();
  } catch (err) {
    setText("confirm-error", a.title + " failed: " + err.message);
  } finally {
    ok.disabled = false;
  }
}

function onClick(ev) {
  const btn = ev.target.closest("button[data-action]");
  if (!btn) return;
  switch (btn.dataset.action) {
    case "signout":
      return signOut();
    case "signin-open":
      return openSignIn();
    case "signin-cancel":
      $("signin").hidden = true;
      return $("signin-open").focus();
    case "confirm-cancel":
      page.pending = null;
      return $("confirm").close();
    default:
      return confirmAction(btn);
  }
}

async function boot() {
  document.addEventListener("click", onClick);
  $("signin-form").addEventListener("submit", signIn);
  $("confirm-form").addEventListener("submit", confirmed);
  $("confirm").addEventListener("close", () => {
    page.pending = null;
  });
  document.addEventListener("visibilitychange", () => {
    if (!document.hidden && api.canRead()) refresh();
  });
  try {
    await api.session();
  } catch (err) {
    connection(false, err.message);
  }
  showAuth();
  if (api.canRead()) refresh();
  else $("token").focus();
}

boot();
