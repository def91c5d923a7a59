// The only module that talks HTTP to the engine: it adds the API key, turns RFC 9457
// problems into ApiError, and reports a refused key (401) to whoever listens.

const KEY_STORAGE = "orderEngine.apiKey";

export function getKey() {
  try {
    return localStorage.getItem(KEY_STORAGE);
  } catch {
    return null; // storage disabled (private mode): behave as "no key"
  }
}

export function setKey(key) {
  localStorage.setItem(KEY_STORAGE, key);
}

export function clearKey() {
  try {
    localStorage.removeItem(KEY_STORAGE);
  } catch {
    // nothing stored, nothing to clear
  }
}

/** Take `?apiKey=` out of the address bar, so the key does not stay in the history, in
 * bookmarks or in a link someone copies. With no key held, it becomes the key. With
 * another key held, it does not replace it: a link must not switch the dashboard to
 * someone else's key (their orders would show here, and orders submitted would be
 * theirs). Returns that other key, for the person to accept or not, else null. */
export function takeKeyFromUrl() {
  const url = new URL(window.location.href);
  const linked = url.searchParams.get("apiKey");
  if (linked === null) return null;
  url.searchParams.delete("apiKey");
  window.history.replaceState(null, "", url.pathname + url.search + url.hash);
  const key = linked.trim();
  const held = getKey();
  if (!key || key === held) return null;
  if (!held) {
    setKey(key);
    return null;
  }
  return key;
}

/** The first characters of a key: enough to tell two keys apart, not to use one. */
export function keyHint(key) {
  return `${key.slice(0, Math.min(8, Math.floor(key.length / 4)))}…`;
}

const unauthorizedListeners = new Set();

export function onUnauthorized(listener) {
  unauthorizedListeners.add(listener);
}

// What the API says of a revoked key: the problem's type (HTTP), the close reason (WS).
const REVOKED_TYPE = /\/api-key-revoked$/;
export const REVOKED_REASON = "API key revoked";

/** The API refused the key (`revoked`: because it was revoked): forget it and tell the
 * app (which shows the key form). */
export function reportUnauthorized(revoked = false) {
  clearKey();
  for (const listener of unauthorizedListeners) listener(revoked);
}

export class ApiError extends Error {
  constructor(status, problem) {
    super(problem?.detail || problem?.title || `HTTP ${status}`);
    this.status = status;
    this.problem = problem ?? {};
  }

  /** What a person should read: the problem's detail, then each bad field. */
  get lines() {
    const lines = [this.message];
    for (const error of this.problem.errors ?? []) {
      lines.push(error.field ? `${error.field}: ${error.message}` : String(error.message));
    }
    return lines;
  }
}

/** fetch() a JSON endpoint of the API. Resolves to the parsed body; rejects with ApiError
 * for an HTTP error and with TypeError when the network failed. */
export async function api(path, { method = "GET", body, headers = {} } = {}) {
  const init = { method, headers: { Accept: "application/json", ...headers } };
  const key = getKey();
  if (key) init.headers.Authorization = `Bearer ${key}`;
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await fetch(path, init);
  const text = await response.text();
  let data = null;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = { detail: text.slice(0, 300) };
    }
  }
  if (response.status === 401) reportUnauthorized(REVOKED_TYPE.test(data?.type ?? ""));
  if (!response.ok) throw new ApiError(response.status, data);
  return data;
}

/** The ws:// URL of an API WebSocket path; browsers cannot set headers on a WebSocket,
 * so the key travels as `?apiKey=`. */
export function wsUrl(path) {
  const scheme = window.location.protocol === "https:" ? "wss:" : "ws:";
  const key = encodeURIComponent(getKey() ?? "");
  return `${scheme}//${window.location.host}${path}?apiKey=${key}`;
}

/** A fresh Idempotency-Key. crypto.randomUUID exists only in secure contexts (https,
 * localhost); a dashboard served over plain http elsewhere still needs a key. */
export function newIdempotencyKey() {
  if (typeof crypto.randomUUID === "function") return crypto.randomUUID();
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  bytes[6] = (bytes[6] & 0x0f) | 0x40;
  bytes[8] = (bytes[8] & 0x3f) | 0x80;
  const hex = Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}
