// Rate and ETA of the syncs and publishes in progress, from the changes of
// their counters between two refreshes (the API reports counters only).

const tracks = new Map();

// observe records a progress sample of op (e.g. "sync web-1") and returns
// {rate, eta} in bytes per second and seconds (null while unknown).
export function observe(op, p, now = Date.now()) {
  const key = (p.revision && p.revision.id) + "/" + p.phase;
  let t = tracks.get(op);
  if (!t || t.key !== key || p.bytes_done < t.bytes) {
    t = { key, at: now, bytes: p.bytes_done, rate: null };
    tracks.set(op, t);
    return { rate: null, eta: null };
  }
  const dt = (now - t.at) / 1000;
  if (dt >= 0.5) {
    const r = (p.bytes_done - t.bytes) / dt;
    t.rate = t.rate === null ? r : 0.5 * t.rate + 0.5 * r;
    t.at = now;
    t.bytes = p.bytes_done;
  }
  const left = p.bytes - p.bytes_done;
  const eta = t.rate > 0 && left >= 0 ? left / t.rate : null;
  return { rate: t.rate, eta };
}

// forget drops the operations not in live.
export function forget(live) {
  for (const op of tracks.keys()) if (!live.has(op)) tracks.delete(op);
}

// fraction is how far an operation is, 0 to 1: by bytes once they are
// known, else by files.
export function fraction(p) {
  if (p.bytes > 0) return Math.min(1, p.bytes_done / p.bytes);
  if (p.files > 0) return Math.min(1, p.files_done / p.files);
  return 0;
}
