// The client's home: "Talk to someone now" (pool.request), waiting with Cancel (pool.cancel), the offered therapist's
// card with Accept (terms + recording consent) and Decline (pool.respond), crisis resources when nobody can come,
// guardian consent for under-18s, and past sessions.
import { api, imageUrl, requireUser } from "../lib/api.js";
import { connectSocket, request } from "../lib/socket.js";
import { passwordChange } from "../lib/password.js";
import { verifyEmailNotice } from "../lib/verification.js";
import {
  $, busy, clear, errorText, formatAge, formatDateTime, formatDuration, formatMoney, formatRate, formError, formValues,
  h, initChrome, pageReady, say,
} from "../lib/ui.js";
import { followBalance, typicalMinutes } from "../lib/wallet.js";

const me = await requireUser(["client"]);
initChrome(me);

let current = null; // the client's latest request (client view)
let offerKey = null; // which offer the card shows
let pictureUrl = null;
let leaving = false;
const VIEWS = ["start", "waiting", "offer"];

if (!me.email_verified) $("main").prepend(verifyEmailNotice());
const needsGuardian = me.client.minor && !me.client.guardian_consent;
if (needsGuardian) showGuardian(me);
loadPastCalls();
// Account: "Change password" (lib/password.js), last on the page.
$("main").append(h("section", { class: "panel", "aria-labelledby": "password-title" }, passwordChange({ heading: "h2" })));

const socket = connectSocket();
socket.on("pool.request_updated", ({ request: req }) => applyRequest(req));
socket.on("call.ready", ({ call }) => goToCall(call.id));
socket.on("connect", syncState);
setInterval(updateExpiry, 1000);
let wallet = null; // {balance_pence, config} of the client's wallet, kept live
followBalance(socket, showBalance).catch(() => { $("#home-balance").textContent = "not available right now"; });

function view(name) {
  for (const v of VIEWS) $(`#${v}`).hidden = v !== name || (v === "start" && needsGuardian);
}

async function syncState() {
  const ack = await request(socket, "pool.state", {});
  if (!ack.ok) {
    view("start");
    return;
  }
  const req = ack.request;
  if (req && ["open", "offered"].includes(req.status)) {
    applyRequest(req);
    return;
  }
  if (!current || !["open", "offered"].includes(current.status)) view("start");
  if (req && req.status === "accepted" && req.call_id) offerRejoin(req.call_id);
}

async function offerRejoin(callId) {
  try {
    const call = await api(`/api/calls/${callId}`);
    if (call.status === "open") {
      $("#call-waiting-link").href = `/call/${callId}`;
      $("#call-waiting").hidden = false;
    }
  } catch {
    /* nothing to rejoin */
  }
}

function applyRequest(req) {
  current = req;
  if (req.status === "open") {
    view("waiting");
    const online = req.therapists_online;
    $("#waiting-text").textContent = online === undefined
      ? "Your request is with the therapists who are online. The first one to accept is shown here."
      : online > 0
        ? `${online} therapist${online === 1 ? " is" : "s are"} online. The first one to accept is shown here.`
        : "No therapist is online right now. We keep your request open and show it to therapists as they come online.";
    if (req.crisis_resources) showCrisis(req.crisis_resources, "While you wait, or if you need help urgently:");
    $("#cancel-request").focus({ preventScroll: true });
  } else if (req.status === "offered" && req.offer) {
    showOffer(req);
  } else if (req.status === "accepted" && req.call_id) {
    goToCall(req.call_id);
  } else if (req.status === "expired") {
    view("start");
    say($("#request-form .form-error"), "");
    showCrisis(req.crisis_resources || [], "No therapist was free in time. You can ask again, or get help now:");
  } else if (req.status === "cancelled") {
    view("start");
  }
}

async function showOffer(req) {
  const t = req.offer.therapist;
  view("offer");
  const key = `${req.id}:${t.id}:${req.offer.expires_at}`;
  if (key === offerKey) return;
  offerKey = key;
  formError($("#offer-form"), null);
  $("#offer-form").reset();
  $("#offer-name").textContent = t.display_name;
  $("#offer-bio").textContent = t.bio || "";
  $("#offer-rate").textContent = formatRate(t.rate_pence_per_minute);
  clear($("#offer-expertise")).append(...(t.expertise || []).map((e) => h("li", { text: e })));
  $("#terms-version").textContent = req.offer.terms_version;
  $("#offer-initial").textContent = (t.display_name || "?").trim().charAt(0).toUpperCase();
  const img = $("#offer-picture");
  img.hidden = true;
  $("#offer-initial").hidden = false;
  if (pictureUrl) URL.revokeObjectURL(pictureUrl);
  pictureUrl = await imageUrl(t.picture_url);
  if (pictureUrl && key === offerKey) {
    img.src = pictureUrl;
    img.alt = `${t.display_name}'s picture`;
    img.hidden = false;
    $("#offer-initial").hidden = true;
  }
  updateExpiry();
  $("#offer-title").focus?.();
}

function updateExpiry() {
  if (!current || current.status !== "offered" || !current.offer) return;
  const left = new Date(current.offer.expires_at).getTime() - Date.now();
  $("#offer-expiry").textContent = left > 0
    ? `This offer stays open for ${formatAge(left)}.`
    : "This offer is ending…";
}

function showCrisis(resources, text) {
  if (!resources.length) return;
  $("#crisis-text").textContent = text;
  clear($("#crisis-list")).append(...resources.map((r) => h("li", { text: r })));
  $("#crisis").hidden = false;
}

function goToCall(callId) {
  if (leaving) return;
  leaving = true;
  location.assign(`/call/${callId}`);
}

// ------------------------------------------------------------------ actions

$("#request-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = event.target;
  formError(form, null);
  const payload = formValues(form, { dropEmpty: ["notes"] });
  await busy(form.querySelector('button[type="submit"]'), async () => {
    const ack = await request(socket, "pool.request", payload);
    if (ack.ok) {
      $("#crisis").hidden = true;
      say($("#waiting-notice"), "");
      applyRequest(ack.request);
      return;
    }
    if (ack.error.code === "already_open") {
      await syncState();
    } else if (ack.error.code === "insufficient_balance") {
      needsMoney(form, ack.error.details || {});
    } else {
      formError(form, ack.error);
    }
  });
});

$("#cancel-request").addEventListener("click", async (event) => {
  if (!current) return;
  await busy(event.target, async () => {
    let ack = await request(socket, "pool.cancel", { request_id: current.id });
    if (!ack.ok && ack.error.code === "busy") ack = await request(socket, "pool.cancel", { request_id: current.id });
    if (ack.ok) {
      applyRequest(ack.request);
      say($("#request-form .form-error"), "");
      $("#reason").focus();
    } else {
      say($("#waiting-notice"), errorText(ack), "error");
    }
  });
});

$("#offer-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = event.target;
  formError(form, null);
  if (!$("#accept-terms").checked) {
    say(form.querySelector(".form-error"), "Please accept the terms and conditions to start the session.", "error");
    $("#accept-terms").setAttribute("aria-invalid", "true");
    $("#accept-terms").focus();
    return;
  }
  await busy($("#offer-accept"), async () => {
    const ack = await request(socket, "pool.respond", {
      request_id: current.id, accept: true, accept_terms: true, terms_version: current.offer.terms_version,
      recording_consent: $("#recording-consent").checked,
    });
    if (ack.ok) {
      goToCall(ack.call.id);
      return;
    }
    const code = ack.error.code;
    if (code === "offer_closed" || code === "no_offer") {
      say(form.querySelector(".form-error"), "This offer has ended. We are looking for another therapist.", "error");
      syncState();
    } else if (code === "terms_outdated") {
      say(form.querySelector(".form-error"), "The terms have changed. Please read them again.", "error");
      syncState();
    } else {
      formError(form, ack.error);
    }
  });
});

$("#offer-decline").addEventListener("click", async (event) => {
  await busy(event.target, async () => {
    const ack = await request(socket, "pool.respond", { request_id: current.id, accept: false });
    if (ack.ok) {
      applyRequest(ack.request);
      say($("#waiting-notice"), "You declined. We are looking for another therapist.");
    } else {
      formError($("#offer-form"), ack.error);
      syncState();
    }
  });
});

// ------------------------------------------------------------------ wallet

function showBalance(state) {
  wallet = state;
  const balance = state.balance_pence;
  $("#home-balance").textContent = formatMoney(balance);
  const minutes = typicalMinutes(balance, state.config);
  $("#home-minutes").textContent = minutes ? `That is ${minutes}.` : "";
  const needed = state.config.calls_charged ? state.config.min_request_pence : 0;
  const low = balance < needed;
  $("#home-low").hidden = !low;
  if (low) {
    clear($("#home-low")).append(`You need at least ${formatMoney(needed)} in your wallet to talk to someone. `,
      h("a", { href: "/wallet", text: "Top up your wallet" }));
  }
  const error = $("#request-form .form-error");
  if (!low && error.dataset.reason === "balance") {
    say(error, "");
    delete error.dataset.reason;
  }
}

/** pool.request said the wallet holds too little: say how much is needed, with the way to the wallet. */
function needsMoney(form, details) {
  const error = form.querySelector(".form-error");
  const needed = details.required_pence ?? wallet?.config.min_request_pence;
  const held = details.balance_pence ?? wallet?.balance_pence;
  say(error, `You need at least ${formatMoney(needed)} in your wallet to ask for a session`
    + (held === undefined ? ". " : ` (you have ${formatMoney(held)}). `), "error");
  error.append(h("a", { href: "/wallet", text: "Top up your wallet" }));
  error.dataset.reason = "balance";
}

// ------------------------------------------------------------------ guardian consent

function showGuardian(user) {
  $("#guardian").hidden = false;
  $("#start").hidden = true;
  if (user.client.guardian_consent_requested) {
    say($("#guardian-state"), "We e-mailed your guardian. You can start as soon as they agree. Send the link again if needed.", "warn");
  }
}

$("#guardian-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = event.target;
  formError(form, null);
  await busy(form.querySelector("button"), async () => {
    try {
      await api("/api/me/guardian-consent-request", { method: "POST", body: formValues(form) });
      say($("#guardian-state"), "Thank you. We e-mailed them a link; you can start once they agree.", "ok");
    } catch (err) {
      formError(form, err);
    }
  });
});

// ------------------------------------------------------------------ past sessions

async function loadPastCalls() {
  const list = $("#past-calls");
  try {
    const { calls } = await api("/api/calls");
    clear(list);
    if (!calls.length) list.append(h("li", { class: "muted", text: "No sessions yet." }));
    for (const call of calls.slice(0, 10)) {
      list.append(h("li", {},
        h("a", { href: `/calls/${call.id}`, text: `With ${call.with.display_name}` }),
        h("span", { class: "when", text: formatDateTime(call.created_at) }),
        call.status === "open"
          ? h("a", { href: `/call/${call.id}`, class: "badge ok", text: "In progress: rejoin" })
          : h("span", { class: "badge", text: formatDuration(call.duration_s) })));
    }
  } catch (err) {
    clear(list).append(h("li", { class: "form-error", text: errorText(err) }));
  }
}

pageReady();
