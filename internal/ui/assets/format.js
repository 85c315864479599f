// Formatting of numbers, sizes, times and durations for people.

export function bytes(n) {
  if (n === undefined || n === null) return "–";
  const units = ["B", "KB", "MB", "GB", "TB"];
  let i = 0;
  let v = n;
  while (v >= 1000 && i < units.length - 1) {
    v /= 1000;
    i++;
  }
  return (i === 0 ? String(v) : v.toFixed(v < 10 ? 1 : 0)) + " " + units[i];
}

export function count(n) {
  return n === undefined || n === null ? "–" : Number(n).toLocaleString("en");
}

// duration formats seconds as "850 ms", "12 s", "3 min 5 s", "2 h 4 min", "3 d 2 h".
export function duration(s) {
  if (s === undefined || s === null || !isFinite(s)) return "–";
  if (s < 1) return Math.round(s * 1000) + " ms";
  if (s < 60) return (s < 10 ? s.toFixed(1) : Math.round(s)) + " s";
  const m = Math.floor(s / 60);
  if (m < 60) return m + " min " + Math.round(s % 60) + " s";
  const h = Math.floor(m / 60);
  if (h < 48) return h + " h " + (m % 60) + " min";
  return Math.floor(h / 24) + " d " + (h % 24) + " h";
}

export function rate(bytesPerSecond) {
  return bytesPerSecond > 0 ? bytes(bytesPerSecond) + "/s" : "–";
}

// when formats an RFC 3339 time as local date and time with "ago"/"in".
export function when(t, now = Date.now()) {
  if (!t) return "–";
  const d = new Date(t);
  if (isNaN(d)) return "–";
  const diff = (d.getTime() - now) / 1000;
  const rel = Math.abs(diff) < 1 ? "now" : diff < 0 ? duration(-diff) + " ago" : "in " + duration(diff);
  return stamp(d) + " (" + rel + ")";
}

// age formats how long ago t was: "for 3 min 5 s".
export function age(t, now = Date.now()) {
  if (!t) return "";
  const s = (now - new Date(t).getTime()) / 1000;
  return isFinite(s) && s >= 0 ? "for " + duration(Math.max(1, Math.round(s))) : "";
}

export function stamp(d) {
  const p = (n) => String(n).padStart(2, "0");
  return d.getFullYear() + "-" + p(d.getMonth() + 1) + "-" + p(d.getDate()) + " " +
    p(d.getHours()) + ":" + p(d.getMinutes()) + ":" + p(d.getSeconds());
}

export function clock(d) {
  const p = (n) => String(n).padStart(2, "0");
  return p(d.getHours()) + ":" + p(d.getMinutes());
}

export function shortID(id) {
  return id ? id.slice(0, 12) : "–";
}

export function rev(r) {
  return r && r.id ? r.seq + " (" + shortID(r.id) + ")" : "none";
}
