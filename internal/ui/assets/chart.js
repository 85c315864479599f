// A small SVG chart of GET /v1/history: sync durations (one dot per web
// node switching to a revision) above the cluster's lag (the longest time a
// live web node has been behind the target), over the last hours. The same
// numbers are in a table below it for screen readers and keyboard users.

import { el, svg } from "./dom.js";
import { clock, duration, shortID, stamp } from "./format.js";

const W = 720;
const PANE = 90;
const LEFT = 64;
const RIGHT = 12;
const TOP = 18;
const GAP = 40;
const H = TOP + PANE + GAP + PANE + 28;
const WINDOW = 6 * 3600 * 1000;
const MIN_SPAN = 10 * 60 * 1000;

function span(history, now) {
  const since = history.since ? new Date(history.since).getTime() : now - WINDOW;
  const start = Math.max(now - WINDOW, Math.min(since, now - MIN_SPAN));
  return [start, now];
}

// lagPoints turns the samples into a step line, extended to now.
function lagPoints(samples, start, now) {
  const pts = [];
  let last = null;
  for (const s of samples) {
    const t = new Date(s.time).getTime();
    if (t < start) {
      last = s;
      continue;
    }
    if (last !== null) pts.push([t, last.max_lag_seconds]);
    else pts.push([t, 0]);
    pts.push([t, s.max_lag_seconds]);
    last = s;
  }
  if (last !== null) {
    const lt = new Date(last.time).getTime();
    const grown = last.behind > 0 ? last.max_lag_seconds + (now - lt) / 1000 : last.max_lag_seconds;
    if (pts.length === 0) pts.push([start, last.max_lag_seconds]);
    pts.push([now, grown]);
  }
  return pts;
}

function niceMax(v) {
  if (v <= 1) return 1;
  const steps = [2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 14400, 43200, 86400];
  return steps.find((s) => s >= v) || Math.ceil(v / 86400) * 86400;
}

function pane(g, top, max, label) {
  g.push(svg("text", { x: 4, y: top - 6 }, label));
  for (const f of [0, 0.5, 1]) {
    const y = top + PANE - f * PANE;
    g.push(svg("line", { class: f === 0 ? "axis" : "grid", x1: LEFT, x2: W - RIGHT, y1: y, y2: y }));
    g.push(svg("text", { x: LEFT - 6, y: y + 4, "text-anchor": "end" }, duration(max * f)));
  }
}

function timeAxis(g, start, now, x) {
  const y = TOP + PANE + GAP + PANE;
  const stepMin = [5, 10, 15, 30, 60, 120].find((m) => (now - start) / (m * 60000) <= 6) || 120;
  const step = stepMin * 60000;
  for (let t = Math.ceil(start / step) * step; t <= now; t += step) {
    g.push(svg("line", { class: "grid", x1: x(t), x2: x(t), y1: TOP, y2: y }));
    g.push(svg("text", { x: x(t), y: y + 16, "text-anchor": "middle" }, clock(new Date(t))));
  }
}

function summary(syncs, lagMax, start, now) {
  const hours = Math.max(1, Math.round((now - start) / 3600000));
  if (syncs.length === 0 && lagMax === 0) {
    return "No syncs and no lag in the last " + duration((now - start) / 1000) + ".";
  }
  const longest = syncs.reduce((m, s) => Math.max(m, s.seconds), 0);
  return syncs.length + " syncs in the last " + (hours === 1 ? "hour" : hours + " hours") +
    ", the longest " + duration(longest) + "; the largest lag " + duration(lagMax) + ".";
}

function table(syncs) {
  const recent = syncs.slice(-20).reverse();
  return el("details", { "data-key": "chart-table" },
    el("summary", {}, "Sync durations as a table (last " + recent.length + ")"),
    recent.length === 0 ? el("p", { class: "empty" }, "No syncs recorded yet.") :
      el("table", {},
        el("thead", {}, el("tr", {},
          el("th", { scope: "col" }, "Node"), el("th", { scope: "col" }, "Revision"),
          el("th", { scope: "col" }, "Finished"), el("th", { scope: "col", class: "num" }, "Duration"))),
        el("tbody", {}, recent.map((s) => el("tr", {},
          el("th", { scope: "row" }, s.node), el("td", {}, s.seq + " (" + shortID(s.id) + ")"),
          el("td", {}, stamp(new Date(s.finished))), el("td", { class: "num" }, duration(s.seconds)))))));
}

export function chart(history, now = Date.now()) {
  const [start, end] = span(history, now);
  const x = (t) => LEFT + ((t - start) / (end - start)) * (W - LEFT - RIGHT);
  const syncs = (history.syncs || []).filter((s) => new Date(s.finished).getTime() >= start);
  const lag = lagPoints(history.lag || [], start, end);
  const durMax = niceMax(syncs.reduce((m, s) => Math.max(m, s.seconds), 0));
  const lagMaxRaw = lag.reduce((m, p) => Math.max(m, p[1]), 0);
  const lagMax = niceMax(lagMaxRaw);
  const g = [];
  pane(g, TOP, durMax, "Sync duration");
  const lagTop = TOP + PANE + GAP;
  pane(g, lagTop, lagMax, "Lag (longest behind)");
  timeAxis(g, start, end, x);
  for (const s of syncs) {
    const y = TOP + PANE - (s.seconds / durMax) * PANE;
    g.push(svg("circle", { class: "dur", cx: x(new Date(s.finished).getTime()).toFixed(1), cy: y.toFixed(1), r: 3.5 },
      svg("title", {}, s.node + ": revision " + s.seq + " in " + duration(s.seconds))));
  }
  if (lag.length > 0) {
    const d = lag.map((p, i) => (i ? "L" : "M") + x(p[0]).toFixed(1) + " " +
      (lagTop + PANE - (p[1] / lagMax) * PANE).toFixed(1)).join(" ");
    g.push(svg("path", { class: "lag", d }));
  }
  const text = summary(syncs, lagMaxRaw, start, end);
  return el("figure", { class: "chart" },
    svg("svg", { viewBox: "0 0 " + W + " " + H, role: "img", "aria-labelledby": "chart-title chart-desc", "data-key": "chart-svg" },
      svg("title", { id: "chart-title" }, "Sync durations and lag since " + clock(new Date(start))),
      svg("desc", { id: "chart-desc" }, text), g),
    el("figcaption", {},
      el("div", { class: "legend" },
        el("span", {}, el("span", { class: "swatch dur", "aria-hidden": "true" }), "Sync duration of a web node"),
        el("span", {}, el("span", { class: "swatch lag", "aria-hidden": "true" }), "Lag: longest time a web node was behind")),
      el("p", { id: "chart-summary" }, text)),
    table(syncs));
}
