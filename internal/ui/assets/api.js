// The page's only way to the agent: the public REST API on this origin,
// with the token in an Authorization header. Cookies are never sent
// (credentials: "omit"), so another site cannot act with this page's
// rights, and the token never appears in a URL.

const KEY = "nodeagent.token";

export const auth = {
  admin: sessionStorage.getItem(KEY) || "", // the API token, for this tab only
  read: "", // the local API's read token (GET /ui/session)
  api: "", // "local" or "cluster"
  reason: "", // why the local API gave no read token
};

export class APIError extends Error {
  constructor(status, detail) {
    super(detail);
    this.status = status;
  }
}

export function setAdmin(token) {
  auth.admin = token;
  if (token) sessionStorage.setItem(KEY, token);
  else sessionStorage.removeItem(KEY);
}

// session asks which API serves the page and, on the local API, for the
// read token.
export async function session() {
  const r = await fetch("/ui/session", { cache: "no-store", credentials: "omit" });
  if (!r.ok) throw new APIError(r.status, "GET /ui/session: " + r.status);
  const s = await r.json();
  auth.api = s.api;
  auth.read = s.read_token || "";
  auth.reason = s.reason || "";
  return s;
}

export function canRead() {
  return Boolean(auth.admin || auth.read);
}

async function call(method, path, body, token) {
  const headers = { Accept: "application/json" };
  if (token) headers.Authorization = "Bearer " + token;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const r = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    cache: "no-store",
    credentials: "omit",
    redirect: "error",
  });
  const text = await r.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  if (!r.ok) {
    const detail = (data && (data.detail || data.title)) || r.status + " " + r.statusText;
    throw new APIError(r.status, detail);
  }
  return data;
}

// get reads with the admin token, or else the read token.
export function get(path) {
  return call("GET", path, undefined, auth.admin || auth.read);
}

// act changes something: only ever with the admin token.
export function act(method, path, body) {
  if (!auth.admin) return Promise.reject(new APIError(401, "sign in with the API token first"));
  return call(method, path, body, auth.admin);
}
