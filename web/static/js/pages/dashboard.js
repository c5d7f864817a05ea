// The therapist's dashboard: the live quick-connect pool (pool.snapshot, pool.request_added/removed), accepting a
// request and waiting for the client, availability, recent sessions, account details, picture and referral codes.
// A therapist whose application is not approved sees its state instead of the pool; one in a session or holding an
// offer (the snapshot's `busy`) sees that instead of the waiting requests.
import { api, imageUrl, requireUser } from "../lib/api.js";
import { connectSocket, request } from "../lib/socket.js";
import { passwordChange } from "../lib/password.js";
import { verifyEmailNotice } from "../lib/verification.js";
import { chime, chimes, enableSound, soundState, unlockSoundOnInteraction, watchSound } from "../lib/sound.js";
import {
  $, busy, clear, errorText, formatAge, formatDateTime, formatDuration, formError, h, initChrome, pageReady, say,
  splitList,
} from "../lib/ui.js";

let pictureUrl = null; // the blob: URL of the picture shown
let me = await requireUser(["therapist"]);
const connectReturn = new URLSearchParams(location.search).get("connect");
if (connectReturn) {
  // back from Stripe's Connect onboarding (its return and refresh URLs name this page): the earnings page says more
  location.replace(`/earnings?connect=${encodeURIComponent(connectReturn)}`);
  await new Promise(() => {});
}
initChrome(me);
fillAccount(me);
loadRecentCalls();

const pool = new Map(); // request id -> {card, li}
let offerFor = null; // the request this therapist holds an offer on: {request, expires_at}
let lastOffer = null; // the last one held (a fresh snapshot may end it before its pool.offer_updated arrives)
let offerTimer = null;
let accepting = null; // the request id of an accept in flight (its removal is ours, not "taken by another")
let noticeAbout = null; // the request whose removal the pool notice reports
let available = false;
let busyWith = null; // "call" or "offer" while the server keeps new requests from this therapist, else null
let socket = null;
const titleBase = document.title;
window.__therapyDashboard = { chimes, soundState, requests: () => [...pool.keys()] };

if (me.therapist.status === "approved") {
  startPool();
} else {
  showApplication(me);
  watchForReview();
}

// ------------------------------------------------------------------ application state (pending / refused)

function showApplication(user) {
  const t = user.therapist;
  $("#application").hidden = false;
  const text = {
    pending: "Your application is being reviewed. You will get an e-mail, and this page will show the pool, once it is approved.",
    refused: "Your application was not approved. Contact support if you think this is a mistake.",
  }[t.status] || `Application state: ${t.status}`;
  say($("#application-state"), text, t.status === "refused" ? "error" : "warn");
  if (!user.email_verified && t.status === "pending") {
    $("#application-state").after(verifyEmailNotice("Your application can be approved only once it is verified."));
  }
  const rows = [
    ["Status", t.status],
    ["Qualifications", t.qualifications],
    ["Registration", `${t.registration_body} ${t.registration_number}`],
    ["Insurance", `${t.insurance_provider}, until ${t.insurance_expiry}`],
  ];
  clear($("#application-details")).append(...rows.flatMap(([k, v]) => [h("dt", { text: k }), h("dd", { text: v })]));
}

function watchForReview() {
  // an admin's decision closes this therapist's connections: reconnecting is the moment to look again
  socket = connectSocket();
  socket.on("connect", async () => {
    try {
      const fresh = await api("/api/me");
      if (fresh.therapist.status !== me.therapist.status) location.reload();
    } catch {
      /* keep showing the state we know */
    }
  });
}

// ------------------------------------------------------------------ the pool

function startPool() {
  $("#pool-section").hidden = false;
  unlockSoundOnInteraction();
  socket = connectSocket({ onStatus: setConnection });
  socket.on("pool.snapshot", applySnapshot);
  socket.on("pool.request_added", ({ request: card }) => addRequest(card, true));
  socket.on("pool.request_removed", ({ request_id: id, reason }) => removeRequest(id, reason));
  socket.on("pool.offer_updated", offerUpdated);
  socket.on("call.ready", ({ call }) => openCall(call.id));
  $("#available").addEventListener("change", toggleAvailability);
  $("#request-banner-close").addEventListener("click", hideBanner);
  $("#sound-on").addEventListener("click", enableSound);
  watchSound((state) => { $("#sound-off").hidden = state !== "suspended"; });
  // back on this tab after a session elsewhere: the server's picture may have changed while it was hidden
  document.addEventListener("visibilitychange", () => { if (!document.hidden && busyWith) refreshSnapshot(); });
  setInterval(tick, 1000);
}

function setConnection(state) {
  const el = $("#conn");
  el.dataset.state = state;
  el.textContent = { online: "Connected", offline: "Offline", reconnecting: "Reconnecting…" }[state] || state;
}

function applySnapshot(snapshot) {
  available = Boolean(snapshot.available);
  $("#available").checked = available;
  $("#available").disabled = false; // usable once the server said where we stand
  // cards still waiting keep their element: one rebuilt under the pointer between press and release loses the click
  const waiting = new Map((snapshot.requests || []).map((card) => [card.id, card]));
  for (const id of [...pool.keys()]) if (!waiting.has(id)) dropCard(id);
  for (const card of waiting.values()) if (!pool.has(card.id)) addRequest(card, false);
  const held = (snapshot.offers || [])[0];
  if (held) showOffer(held);
  else if (offerFor && snapshot.busy !== "offer") hideOffer();
  // `busy` is "call", "offer" or true (a newer server); a missing field means not busy
  busyWith = !snapshot.busy ? null : ["call", "offer"].includes(snapshot.busy) ? snapshot.busy : held ? "offer" : "call";
  $("#in-call-banner").hidden = busyWith !== "call";
  if (busyWith === "call") findOpenCall();
  refreshEmpty();
}

async function refreshSnapshot() {
  const snapshot = await request(socket, "pool.snapshot", {});
  if (snapshot.ok) applySnapshot(snapshot);
}

async function findOpenCall() {
  try {
    const { calls } = await api("/api/calls");
    const open = calls.find((c) => c.status === "open");
    if (open) $("#in-call-link").href = `/call/${open.id}`;
  } catch {
    /* the banner still says so */
  }
}

async function toggleAvailability(event) {
  const want = event.target.checked;
  event.target.disabled = true;
  const ack = await request(socket, "pool.set_availability", { available: want });
  event.target.disabled = false;
  if (!ack.ok) {
    event.target.checked = available;
    say($("#pool-notice"), errorText(ack), "error");
    return;
  }
  available = ack.available;
  say($("#pool-notice"), available ? "You are available: new requests appear here with a sound." : "You are not available.");
  const snapshot = await request(socket, "pool.snapshot", {});
  if (snapshot.ok) applySnapshot(snapshot);
  else refreshEmpty();
}

function refreshEmpty() {
  const open = available && !busyWith;
  $("#unavailable-text").hidden = available;
  $("#busy-text").hidden = !available || !busyWith;
  $("#busy-text").textContent = busyWith === "offer"
    ? "You're waiting for a client to answer your offer — new requests will show here when it ends."
    : "You're in a session — new requests will show here when it ends.";
  $("#pool").hidden = !open;
  $("#pool-empty").hidden = !open || pool.size > 0;
  document.title = pool.size && open ? `(${pool.size}) ${titleBase}` : titleBase;
}

function addRequest(card, fresh) {
  if (offerFor && offerFor.request.id === card.id) return;
  if (pool.has(card.id)) dropCard(card.id);
  const name = card.client.display_name;
  const accept = h("button", {
    type: "button", class: "primary accept", text: "Accept", "aria-label": `Accept the request from ${name}`,
    on: { click: () => acceptRequest(card, accept) },
  });
  const li = h("li", { class: fresh ? "card request new" : "card request", dataset: { requestId: card.id } },
    h("div", { class: "card-head" },
      h("strong", { class: "name", text: name }),
      card.minor ? h("span", { class: "badge minor", text: "Under 18" }) : null,
      h("span", { class: "age", dataset: { since: card.created_at } })),
    h("p", { class: "reason", text: card.reason }),
    card.notes ? h("p", { class: "notes", text: card.notes }) : null,
    card.expertise?.length ? h("ul", { class: "tags", "aria-label": "Asked for" }, card.expertise.map((e) => h("li", { text: e }))) : null,
    h("div", { class: "actions" }, accept));
  pool.set(card.id, { card, li });
  $("#pool").append(li);
  tick();
  refreshEmpty();
  if (fresh && noticeAbout === card.id) {
    say($("#pool-notice"), `${name}'s request is back: the client is still waiting.`);
  }
  if (fresh && !busyWith) {
    showBanner(card);
    chime();
  }
}

function dropCard(id) {
  const entry = pool.get(id);
  if (!entry) return null;
  entry.li.remove();
  pool.delete(id);
  refreshEmpty();
  if (!pool.size) hideBanner();
  return entry.card;
}

function removeRequest(id, reason) {
  const card = dropCard(id);
  if (!card || id === accepting || (offerFor && offerFor.request.id === id)) return;
  const name = card.client.display_name;
  const text = {
    taken: `${name}'s request was taken by another therapist.`,
    cancelled: `${name} withdrew their request.`,
    expired: `${name}'s request expired.`,
  }[reason] || `${name}'s request is no longer waiting.`;
  say($("#pool-notice"), text, reason === "taken" ? "warn" : "info");
  noticeAbout = id;
}

async function acceptRequest(card, button) {
  const buttons = [...document.querySelectorAll("#pool .accept")];
  buttons.forEach((b) => { b.disabled = true; });
  accepting = card.id;
  try {
    const ack = await request(socket, "pool.accept", { request_id: card.id });
    if (ack.ok) {
      busyWith = "offer";
      dropCard(card.id);
      showOffer(ack.offer);
      hideBanner();
      return;
    }
    const code = ack.error?.code;
    if (code === "taken") {
      dropCard(card.id);
      say($("#pool-notice"), `Too late: another therapist has already taken ${card.client.display_name}'s request.`, "warn");
    } else if (["expired", "not_found", "declined"].includes(code)) {
      dropCard(card.id);
      say($("#pool-notice"), code === "declined"
        ? `${card.client.display_name} already declined you for this request.`
        : `${card.client.display_name}'s request is no longer waiting.`, "warn");
    } else if (code === "busy") {
      say($("#pool-notice"), "You already hold an offer or are in a session. Finish it first.", "warn");
    } else if (code === "not_available") {
      say($("#pool-notice"), "Turn on availability to accept requests.", "warn");
    } else {
      say($("#pool-notice"), errorText(ack), "error");
    }
  } finally {
    accepting = null;
    buttons.forEach((b) => { if (b.isConnected) b.disabled = false; });
    if (button.isConnected) button.focus();
  }
}

function showOffer(offer) {
  offerFor = lastOffer = offer;
  $("#offer-panel").hidden = false;
  $("#offer-title").textContent = "Waiting for the client";
  updateOfferText();
  clearInterval(offerTimer);
  offerTimer = setInterval(updateOfferText, 1000);
  say($("#pool-notice"), "");
}

function updateOfferText() {
  if (!offerFor) return;
  const left = new Date(offerFor.expires_at).getTime() - Date.now();
  const name = offerFor.request.client.display_name;
  $("#offer-text").textContent = left > 0
    ? `You accepted ${name}'s request. Waiting for them to accept your profile (${formatAge(left)} left).`
    : `Waiting for ${name}…`;
}

function hideOffer() {
  offerFor = null;
  clearInterval(offerTimer);
  $("#offer-panel").hidden = true;
}

function offerUpdated({ outcome, call }) {
  const name = (offerFor || lastOffer)?.request.client.display_name || "The client";
  if (outcome === "accepted") {
    $("#offer-title").textContent = `${name} accepted`;
    $("#offer-text").textContent = "Opening the session…";
    clearInterval(offerTimer);
    if (call) openCall(call.id);
    return;
  }
  hideOffer();
  refreshSnapshot(); // no longer busy: the requests waiting now
  const text = {
    declined: `${name} declined. Their request went back to the pool for other therapists.`,
    timed_out: `${name} did not answer in time. Their request went back to the pool.`,
    withdrawn: "Your offer was withdrawn because you went offline.",
    cancelled: `${name} cancelled their request.`,
  }[outcome] || `The offer ended (${outcome}).`;
  say($("#pool-notice"), text, "warn");
}

let opening = false;
function openCall(callId) {
  if (opening) return;
  opening = true;
  location.assign(`/call/${callId}`);
}

function showBanner(card) {
  clear($("#request-banner-text")).append(
    card.minor ? h("span", { class: "badge minor", text: "Under 18" }) : "",
    `New request from ${card.client.display_name}: ${card.reason}`);
  $("#request-banner").hidden = false;
}

function hideBanner() {
  $("#request-banner").hidden = true;
}

function tick() {
  for (const { li, card } of pool.values()) {
    const age = li.querySelector(".age");
    age.textContent = `waiting ${formatAge(Date.now() - new Date(card.created_at).getTime())}`;
  }
}

// ------------------------------------------------------------------ recent sessions

async function loadRecentCalls() {
  const list = $("#recent-calls");
  try {
    const { calls } = await api("/api/calls");
    clear(list);
    if (!calls.length) list.append(h("li", { class: "muted", text: "No sessions yet." }));
    for (const call of calls.slice(0, 6)) {
      list.append(h("li", {},
        h("a", { href: `/calls/${call.id}`, text: call.with.display_name }),
        h("span", { class: "when", text: formatDateTime(call.created_at) }),
        call.status === "open"
          ? h("a", { href: `/call/${call.id}`, class: "badge ok", text: "In progress: rejoin" })
          : h("span", { class: "badge", text: formatDuration(call.duration_s) }),
        call.kind === "test" ? h("span", { class: "badge warn", text: "test" }) : null));
    }
  } catch (err) {
    clear(list).append(h("li", { class: "form-error", text: errorText(err) }));
  }
}

// ------------------------------------------------------------------ account, picture, referral codes

function fillAccount(user) {
  const t = user.therapist;
  const form = $("#account-form");
  form.elements.display_name.value = user.display_name;
  form.elements.phone.value = t.phone || "";
  form.elements.bio.value = t.bio || "";
  form.elements.expertise.value = (t.expertise || []).join(", ");
  form.elements.rate.value = ((t.rate_pence_per_minute || 0) / 100).toFixed(2);
  showPicture(t.picture_url);
  $("#referrals").hidden = t.status !== "approved";
  if (t.status === "approved") loadReferralCodes();
}

$("#account-form").addEventListener("reset", (event) => {
  event.preventDefault();
  formError($("#account-form"), null);
  say($("#account-status"), "");
  fillAccount(me);
});

$("#account-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = event.target;
  formError(form, null);
  say($("#account-status"), "");
  const t = me.therapist;
  const next = {
    display_name: form.elements.display_name.value.trim(),
    phone: form.elements.phone.value.trim(),
    bio: form.elements.bio.value.trim(),
    expertise: splitList(form.elements.expertise.value),
    rate_pence_per_minute: Math.round(Number(form.elements.rate.value || 0) * 100),
  };
  const before = {
    display_name: me.display_name, phone: t.phone || "", bio: t.bio || "", expertise: t.expertise || [],
    rate_pence_per_minute: t.rate_pence_per_minute,
  };
  const body = Object.fromEntries(Object.entries(next).filter(([k, v]) => JSON.stringify(v) !== JSON.stringify(before[k])));
  if (!Object.keys(body).length) {
    say($("#account-status"), "Nothing to save.", "ok");
    return;
  }
  await busy(form.querySelector('button[type="submit"]'), async () => {
    try {
      me = await api("/api/me", { method: "PATCH", body });
      initChrome(me);
      fillAccount(me);
      say($("#account-status"), "Changes saved.", "ok");
    } catch (err) {
      formError(form, err);
    }
  });
});

// "Change password" under the account details form (lib/password.js).
$("#account-form").after(passwordChange());

async function showPicture(path) {
  const img = $("#picture-preview");
  if (pictureUrl) URL.revokeObjectURL(pictureUrl);
  pictureUrl = await imageUrl(path);
  img.hidden = !pictureUrl;
  if (pictureUrl) img.src = pictureUrl;
  $("#picture-none").hidden = Boolean(pictureUrl);
  $("#picture-remove").hidden = !path;
}

$("#picture-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = event.target;
  const file = $("#picture-file").files[0];
  formError(form, null);
  if (!file) return;
  await busy(form.querySelector('button[type="submit"]'), async () => {
    try {
      me = await api("/api/me/picture", { method: "PUT", body: file, headers: { "Content-Type": file.type || "application/octet-stream" } });
      await showPicture(me.therapist.picture_url);
      form.reset();
      say($("#picture-status"), "Picture saved.", "ok");
    } catch (err) {
      formError(form, err);
    }
  });
});

$("#picture-remove").addEventListener("click", async (event) => {
  await busy(event.target, async () => {
    try {
      me = await api("/api/me/picture", { method: "DELETE" });
      await showPicture(null);
      say($("#picture-status"), "Picture removed.", "ok");
    } catch (err) {
      formError($("#picture-form"), err);
    }
  });
});

async function loadReferralCodes() {
  const list = $("#referral-list");
  try {
    const { codes } = await api("/api/therapist/referral-codes");
    clear(list);
    const active = codes.filter((c) => c.active);
    if (!active.length) list.append(h("li", { class: "muted", text: "No active codes." }));
    for (const code of active) {
      const revoke = h("button", {
        type: "button", class: "link", text: "Revoke", "aria-label": `Revoke code ${code.code}`,
        on: { click: () => revokeCode(code.code) },
      });
      list.append(h("li", {}, h("code", { text: code.code }), h("span", { class: "when", text: `used ${code.uses} times` }), revoke));
    }
  } catch (err) {
    say($("#referral-error"), errorText(err), "error");
  }
}

async function revokeCode(code) {
  try {
    await api(`/api/therapist/referral-codes/${encodeURIComponent(code)}`, { method: "DELETE" });
    loadReferralCodes();
  } catch (err) {
    say($("#referral-error"), errorText(err), "error");
  }
}

$("#referral-new").addEventListener("click", async (event) => {
  say($("#referral-error"), "");
  await busy(event.target, async () => {
    try {
      await api("/api/therapist/referral-codes", { method: "POST" });
      loadReferralCodes();
    } catch (err) {
      say($("#referral-error"), errorText(err), "error");
    }
  });
});

pageReady();
