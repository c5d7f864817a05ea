// Small DOM helpers shared by the pages. Text from users is always inserted as text (textContent / text nodes),
// never as HTML.
import { signOut } from "./api.js";
import "./media.js"; // reads the ?testmedia= flag on any page

export const $ = (selector, root = document) => root.querySelector(selector);
export const $$ = (selector, root = document) => [...root.querySelectorAll(selector)];

/**
 * Create an element. `attrs`: `class`, `text` (textContent), `dataset` (object), `on` (event -> handler), `hidden`,
 * any other attribute (false/null leave it out). Children: nodes or strings (as text).
 */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") el.className = value;
    else if (key === "text") el.textContent = value;
    else if (key === "dataset") Object.assign(el.dataset, value);
    else if (key === "on") for (const [event, handler] of Object.entries(value)) el.addEventListener(event, handler);
    else if (key === "hidden") el.hidden = Boolean(value);
    else el.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

export function clear(el) {
  el.replaceChildren();
  return el;
}

export function show(el, visible = true) {
  if (el) el.hidden = !visible;
}

/** Put a message into a notice element (`kind`: info, ok, warn, error); an empty text hides it. */
export function say(el, text, kind = "info") {
  if (!el) return;
  el.textContent = text || "";
  el.classList.remove("ok", "warn", "error", "info");
  if (text) el.classList.add(kind);
}

/** A friendly sentence for an ApiError or an error ack. */
export function errorText(err) {
  const error = err?.error || err || {};
  const code = error.code;
  const known = {
    network: "The server could not be reached. Check your connection and try again.",
    timeout: "The server did not answer in time. Please try again.",
    rate_limited: "Too many attempts. Please wait a moment and try again.",
    bad_credentials: "That e-mail address and password do not match an account.",
    email_taken: "There is already an account with this e-mail address. Sign in instead.",
    weak_password: "Choose a password of at least 10 characters.",
    too_young: "You must be at least 13 years old to use this service.",
    bad_referral_code: "That referral code is not valid.",
    bad_token: "This link has expired or was already used. Ask for a new one.",
    internal: "Something went wrong on our side. Please try again.",
    insufficient_balance: "Your wallet does not hold enough for that.",
    insufficient_earnings: "That is more than your available earnings.",
    wallet_limit: "That would take your wallet over its limit.",
    payments_unavailable: "Card payments are not available on this server right now.",
    payment_provider_error: "The payment provider could not be reached. Nothing was charged; please try again shortly.",
    card_declined: "Your card was declined.",
    withdrawal_not_cancellable: "This withdrawal can no longer be cancelled.",
    connect_not_ready: "The therapist's Stripe account is not ready for payouts: pay by bank transfer instead.",
    already_paid: "This withdrawal has already been paid.",
  };
  return known[code] || error.message || "Something went wrong. Please try again.";
}

/** Show a server error on a form: the message in its alert element, the offending field marked and focused. */
export function formError(form, err) {
  const alert = form.querySelector(".form-error");
  for (const el of form.querySelectorAll("[aria-invalid]")) el.removeAttribute("aria-invalid");
  say(alert, err ? errorText(err) : "");
  const field = err?.details?.field || err?.error?.details?.field;
  const input = field
    ? form.querySelector(`[name="${CSS.escape(field)}"], [data-field="${CSS.escape(field)}"]`)
    : null;
  if (input) {
    input.setAttribute("aria-invalid", "true");
    input.focus();
  } else if (err && alert) {
    alert.setAttribute("tabindex", "-1");
  }
}

/** Disable a button while `work` runs. */
export async function busy(button, work) {
  const was = button?.disabled;
  if (button) button.disabled = true;
  try {
    return await work();
  } finally {
    if (button) button.disabled = was;
  }
}

/** Form fields as an object (trimmed strings; empty optional ones left out when `dropEmpty`). */
export function formValues(form, { dropEmpty = [] } = {}) {
  const out = {};
  for (const [key, value] of new FormData(form).entries()) {
    if (typeof value !== "string") continue;
    const v = key.toLowerCase().includes("password") ? value : value.trim();
    if (v === "" && dropEmpty.includes(key)) continue;
    out[key] = v;
  }
  return out;
}

export function splitList(text) {
  return (text || "").split(/[,\n]/).map((s) => s.trim()).filter(Boolean);
}

// ------------------------------------------------------------------ formatting

export function formatDateTime(iso) {
  if (!iso) return "";
  return new Date(iso).toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });
}

export function formatDuration(seconds) {
  if (seconds === null || seconds === undefined) return "—";
  const s = Math.max(0, Math.round(seconds));
  const m = Math.floor(s / 60);
  const h = Math.floor(m / 60);
  if (h) return `${h} h ${m % 60} min`;
  if (m) return `${m} min ${s % 60} s`;
  return `${s} s`;
}

export function formatAge(ms) {
  const s = Math.max(0, Math.floor(ms / 1000));
  if (s < 60) return `${s} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ${s % 60} s`;
  return `${Math.floor(m / 60)} h ${m % 60} min`;
}

export function formatClock(ms) {
  const s = Math.max(0, Math.floor(ms / 1000));
  return `${String(Math.floor(s / 60)).padStart(2, "0")}:${String(s % 60).padStart(2, "0")}`;
}

export function formatRate(pence) {
  if (pence === null || pence === undefined) return "";
  return `£${(pence / 100).toFixed(2)} per minute`;
}

const POUNDS = new Intl.NumberFormat("en-GB", { style: "currency", currency: "GBP" });

/** Pence as pounds: "£2,000.00", "−£1.00"; `sign` puts "+" before a positive amount. */
export function formatMoney(pence, { sign = false } = {}) {
  if (pence === null || pence === undefined) return "";
  const text = POUNDS.format(Math.abs(pence) / 100);
  return pence < 0 ? `−${text}` : sign && pence > 0 ? `+${text}` : text;
}

/** An amount typed in pounds ("20", "20.5", "£20.50") as whole pence, or null when it is not one. */
export function parsePounds(text) {
  const match = /^\s*£?\s*(\d{1,7})(?:\.(\d{1,2}))?\s*$/.exec(String(text ?? ""));
  if (!match) return null;
  return Number(match[1]) * 100 + Number((match[2] || "").padEnd(2, "0"));
}

/** A calendar date ("2026-01-16") as "Friday 16 January 2026" (no time zone shift). */
export function formatDay(isoDate) {
  if (!isoDate) return "";
  const [y, m, d] = isoDate.split("-").map(Number);
  return new Date(Date.UTC(y, m - 1, d)).toLocaleDateString(undefined, {
    weekday: "long", day: "numeric", month: "long", year: "numeric", timeZone: "UTC",
  });
}

/** "about 20 minutes": what `pence` buys at `ratePence` a minute ("" without a rate). */
export function minutesFor(pence, ratePence) {
  if (!ratePence || pence === null || pence === undefined) return "";
  const minutes = Math.floor(Math.max(0, pence) / ratePence);
  return `about ${minutes} minute${minutes === 1 ? "" : "s"}`;
}

// ------------------------------------------------------------------ page chrome

/**
 * Fill the top bar: the user's name, the links for their role (`data-roles="client therapist"`), the current page
 * marked, and the sign-out button.
 */
export function initChrome(me) {
  const who = $("#who");
  if (who && me) {
    clear(who).append("Signed in as ", h("strong", { text: me.display_name }));
  }
  for (const el of $$("[data-roles]")) {
    el.hidden = !me || !el.dataset.roles.split(" ").includes(me.role);
  }
  for (const a of $$(".topbar nav a")) {
    if (a.getAttribute("href") === location.pathname) a.setAttribute("aria-current", "page");
  }
  const out = $("#signout");
  if (out) {
    out.hidden = !me;
    out.addEventListener("click", () => signOut());
  }
}

/** The page's handlers are attached (call it last in each page's module): forms submitted before now, held by
 * /static/js/early.js, are submitted again. */
export function pageReady() {
  window.__releaseHeldForms?.();
}

/** Accessible tabs: arrow keys move between tabs, each tab shows its panel; `onChange(id)` after a switch. */
export function initTabs(tablist, { onChange } = {}) {
  const tabs = $$('[role="tab"]', tablist);
  const select = (tab, focus = true) => {
    for (const t of tabs) {
      const on = t === tab;
      t.setAttribute("aria-selected", String(on));
      t.tabIndex = on ? 0 : -1;
      const panel = document.getElementById(t.getAttribute("aria-controls"));
      if (panel) panel.hidden = !on;
    }
    if (focus) tab.focus();
    onChange?.(tab.id);
  };
  for (const tab of tabs) {
    tab.addEventListener("click", () => select(tab));
    tab.addEventListener("keydown", (e) => {
      const i = tabs.indexOf(tab);
      const next = { ArrowRight: i + 1, ArrowLeft: i - 1, Home: 0, End: tabs.length - 1 }[e.key];
      if (next === undefined) return;
      e.preventDefault();
      select(tabs[(next + tabs.length) % tabs.length]);
    });
  }
  return { select: (id, focus = false) => select(tabs.find((t) => t.id === id) || tabs[0], focus) };
}

/**
 * Open one of this site's own pages in a new tab that stays signed in. The sign-in lives in sessionStorage, which a
 * browser copies only into a window opened with an opener: so no `noopener` (the page is ours, the opener safe).
 */
export function openSameSiteWindow(path) {
  const url = new URL(path, location.origin);
  if (url.origin !== location.origin) throw new Error(`openSameSiteWindow opens this site's pages only, not ${path}`);
  return window.open(url.pathname + url.search + url.hash, "_blank");
}

/** The token in an e-mailed link's fragment (`#token=…`), removed from the address bar at once. */
export function takeFragmentToken() {
  const params = new URLSearchParams(location.hash.replace(/^#/, ""));
  const token = params.get("token");
  if (location.hash) history.replaceState(null, "", location.pathname + location.search);
  return token;
}
