// The REST API (docs/PROTOCOL.md): the bearer token kept in sessionStorage, JSON in and out, errors as ApiError
// carrying the server's stable code. Tokens never go into URLs.

const TOKEN_KEY = "therapy.token";

export class ApiError extends Error {
  constructor(status, code, message, details) {
    super(message || code);
    this.status = status;
    this.code = code;
    this.details = details || {};
  }
}

export function getToken() {
  return sessionStorage.getItem(TOKEN_KEY);
}

export function setToken(token) {
  sessionStorage.setItem(TOKEN_KEY, token);
}

export function clearToken() {
  sessionStorage.removeItem(TOKEN_KEY);
}

/** Where each role starts. */
export function homeFor(role) {
  return { client: "/home", therapist: "/dashboard", admin: "/admin" }[role] || "/";
}

/** A same-origin path to come back to after signing in, or null. */
export function safeNext(value) {
  if (typeof value !== "string" || !value.startsWith("/") || value.startsWith("//") || value.includes("\\")) return null;
  return value;
}

/** The token is gone or no longer valid: back to the sign-in page, coming back here afterwards. */
export function toSignIn() {
  clearToken();
  const here = location.pathname + location.search;
  const next = here === "/" || here.startsWith("/signin") ? "" : `?next=${encodeURIComponent(here)}`;
  location.replace(`/${next}`);
}

/**
 * Call the API. `body` is sent as JSON unless it is a Blob/File (the picture upload). Resolves to the parsed JSON
 * (or text, or null for 204); rejects with ApiError. A 401 invalid_token sends the user to the sign-in page.
 */
export async function api(path, { method = "GET", body, headers = {}, raw = false, signInOnExpiry = true } = {}) {
  const h = { ...headers };
  const token = getToken();
  if (token) h.Authorization = `Bearer ${token}`;
  let payload;
  if (body instanceof Blob) {
    payload = body;
    if (!h["Content-Type"] && body.type) h["Content-Type"] = body.type;
  } else if (body !== undefined) {
    h["Content-Type"] = "application/json";
    payload = JSON.stringify(body);
  }
  let resp;
  try {
    resp = await fetch(path, { method, headers: h, body: payload, cache: "no-store", credentials: "omit" });
  } catch {
    throw new ApiError(0, "network", "The server could not be reached. Check your connection and try again.");
  }
  if (!resp.ok) {
    let error = {};
    try {
      error = (await resp.json()).error || {};
    } catch {
      /* not JSON */
    }
    if (resp.status === 401 && error.code === "invalid_token" && signInOnExpiry && token) toSignIn();
    throw new ApiError(resp.status, error.code || "http_error", error.message || resp.statusText, error.details);
  }
  if (raw) return resp;
  if (resp.status === 204) return null;
  const type = resp.headers.get("Content-Type") || "";
  return type.includes("application/json") ? resp.json() : resp.text();
}

/** The signed-in user (`GET /api/me`), or a trip to the sign-in page. `roles` limits who may stay on this page. */
export async function requireUser(roles) {
  if (!getToken()) {
    toSignIn();
    return new Promise(() => {});
  }
  const me = await api("/api/me");
  if (roles && !roles.includes(me.role)) {
    location.replace(homeFor(me.role));
    return new Promise(() => {});
  }
  return me;
}

export async function signOut() {
  try {
    await api("/api/auth/signout", { method: "POST", signInOnExpiry: false });
  } catch {
    /* signed out locally anyway */
  }
  clearToken();
  location.assign("/");
}

/** Fetch an authenticated image (the picture endpoint needs the bearer token) and return a blob: URL, or null. */
export async function imageUrl(path) {
  if (!path) return null;
  try {
    const resp = await api(path, { raw: true });
    return URL.createObjectURL(await resp.blob());
  } catch {
    return null;
  }
}

/** Download an authenticated file: fetch it with the token, then save it through a temporary blob: link. */
export async function download(path, filename) {
  const resp = await api(path, { raw: true });
  const disposition = resp.headers.get("Content-Disposition") || "";
  const match = /filename="([^"]+)"/.exec(disposition);
  const url = URL.createObjectURL(await resp.blob());
  const a = document.createElement("a");
  a.href = url;
  a.download = match ? match[1] : filename;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}
