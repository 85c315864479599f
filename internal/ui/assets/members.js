// The members of GET /v1/members in one shape. The agreed shape is
// {name, address, state, since, role, api, revision: {seq, id} | null,
// drained, ready, maintenance: {clock, active}, behind_since | null,
// version, certificate_not_after | null}. Agents released before it
// answer with Go field names and the gossip metadata's short keys
// ({Name, Addr, State, Since, Meta: {r, a, s, v, d, ok, m, mo, b, ver, ce}});
// such a member is converted, so the page works against both.

function unixTime(s) {
  return s ? new Date(s * 1000).toISOString() : null;
}

export function member(m) {
  if ("name" in m) return m;
  const meta = m.Meta || {};
  return {
    name: m.Name,
    address: m.Addr,
    state: m.State,
    since: m.Since,
    role: meta.r || "",
    api: meta.a || "",
    revision: meta.v ? { seq: meta.s || 0, id: meta.v } : null,
    drained: Boolean(meta.d),
    ready: Boolean(meta.ok),
    maintenance: { clock: meta.m || 0, active: Boolean(meta.mo) },
    behind_since: unixTime(meta.b),
    version: meta.ver || "",
    certificate_not_after: unixTime(meta.ce),
  };
}

export function members(body) {
  return ((body && body.members) || []).map(member);
}
