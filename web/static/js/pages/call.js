// The call screen (/call/N): video both ways (peer to peer), mute, camera, hang-up, connection state, the recording
// indicator and its "stop recording", the audio-only link to the server when the client consented, chat (both),
// notes (therapist only, autosaved) and the live transcript (therapist only). The state of the peer connection is
// reported to the server (call.media_state: per-minute charging runs only while both members are connected), and the
// client sees their balance and paid time left (billing.balance, billing.call); both see the low-balance warning.
import { api, getToken, homeFor, requireUser, setToken } from "../lib/api.js";
import { openLocalMedia } from "../lib/media.js";
import { CallPeer, DISCONNECTED_RESTART_MS, ServerLink } from "../lib/peer.js";
import { connectSocket, request } from "../lib/socket.js";
import {
  $, clear, errorText, formatClock, formatDateTime, formatMoney, h, initChrome, openSameSiteWindow, pageReady, say,
  takeFragmentToken,
} from "../lib/ui.js";

takeTokenFromLink();
const callId = Number((/^\/call\/(\d+)/.exec(location.pathname) || [])[1] || new URLSearchParams(location.search).get("id"));
const me = await requireUser();
initChrome(me);
$("#brand").href = homeFor(me.role);
$("#ended-home").href = homeFor(me.role);
$("#ended-log").href = `/calls/${callId}`;

let role = null; // "therapist" | "client", from the join ack
let otherName = null;
let peer = null;
let serverLink = null;
let iceConfig = { iceServers: [], iceTransportPolicy: "all" }; // from the latest join ack: the call's STUN/TURN servers
let serverLinkTimer = null;
let recording = false;
let ended = false;
let joinedOnce = false;
let startedAt = null;
let bannerTimer = null;
let remoteStream = null;
let peerJoins = 0; // the other member's join count at their last call.peer_joined (a later peer_left of an older one is stale)
let joinInFlight = false; // call.join sent, its ack not handled yet
let joinedMeanwhile = null; // a call.peer_joined that arrived while our own join was in flight
let heldSignals = []; // call.signal messages that arrived while our own join was in flight
let mediaReported = null; // what this page last told the server about its peer connection (call.media_state)
const billing = { shown: false, balance: null, secondsLeft: null }; // the client's paid time, as last pushed
const chat = new Map(); // message id -> li
const segments = new Map(); // segment id -> {segment, li}
const remoteVideo = $("#remote-video");
const localVideo = $("#local-video");

window.__therapyCall = {
  get pc() { return peer?.pc || null; },
  get serverPc() { return serverLink?.pc || null; },
  get role() { return role; },
  get ended() { return ended; },
  get mediaReported() { return mediaReported; },
};

if (!Number.isInteger(callId) || callId < 1) {
  fatal("This address does not name a session.");
  throw new Error("no call id");
}

// ------------------------------------------------------------------ start: media, details, socket

const media = openLocalMedia().then(({ stream, problem }) => {
  if (problem) {
    $("#media-error").textContent = problem;
    $("#media-error").hidden = false;
  }
  if (stream) localVideo.srcObject = stream;
  localVideo.hidden = !stream || !stream.getVideoTracks().length;
  setupControls(stream);
  return stream;
});

const details = api(`/api/calls/${callId}`).then((detail) => {
  otherName = detail.with?.display_name || null;
  if (otherName) {
    $("#call-title").textContent = `Session with ${otherName}`;
    $("#call-with").textContent = `Session with ${otherName}`;
    document.title = `Session with ${otherName} — Therapy`;
    for (const li of chat.values()) if (!li.classList.contains("mine")) li.querySelector(".from").textContent = otherName;
  }
  for (const segment of detail.transcript || []) addSegment(segment);
  return detail;
}).catch((err) => {
  if (err.status === 404 || err.status === 403) fatal("This session does not exist, or you are not part of it.");
  return null;
});

const socket = connectSocket({ onStatus: signalStatus });
socket.on("connect", join);
socket.on("call.signal", (msg) => {
  if (msg.call_id !== callId || ended) return;
  if (joinInFlight || !peer) heldSignals.push(msg); // the join's answer decides what becomes of them
  else peer.handle(msg);
});
socket.on("call.peer_joined", peerJoined);
socket.on("call.peer_left", peerLeft);
socket.on("call.replaced", replaced);
socket.on("call.chat", ({ message }) => { if (message.call_id === callId) addChat(message); });
socket.on("call.transcript", ({ segment }) => { if (segment.call_id === callId) addSegment(segment); });
socket.on("call.transcript_complete", ({ call_id: id }) => {
  if (id === callId) $("#transcript-status").textContent = "The transcript is complete and saved in the call log.";
});
socket.on("call.recording", (event) => { if (event.call_id === callId && !event.active) recordingStopped(event.withdrawn_by); });
socket.on("call.ended", (event) => { if (event.call_id === callId) showEnded(event.reason, event.ended_by); });
socket.on("billing.balance", ({ balance_pence: balance }) => balanceChanged(balance));
socket.on("billing.call", (event) => { if (event.call_id === callId) minuteCharged(event); });
socket.on("billing.low_balance", (event) => { if (event.call_id === callId && !ended) lowBalance(event.minutes_left); });
if (me.role === "client") startBilling();
setInterval(tickElapsed, 1000);

function signalStatus(state) {
  const el = $("#signal-state");
  el.dataset.state = state;
  el.textContent = { online: "Server: connected", offline: "Server: offline", reconnecting: "Server: reconnecting…" }[state];
}

async function join() {
  if (ended) return;
  const stream = await media;
  joinInFlight = true;
  joinedMeanwhile = null;
  heldSignals = [];
  try {
    await joinWith(stream);
  } finally {
    joinInFlight = false;
  }
}

async function joinWith(stream) {
  const ack = await request(socket, "call.join", { call_id: callId });
  if (!ack.ok) {
    const code = ack.error.code;
    if (code === "call_ended") {
      const detail = await details;
      showEnded(detail?.end_reason || "hangup", detail?.ended_by ?? null, detail);
    } else if (code === "forbidden" || code === "not_found") {
      fatal("This session does not exist, or you are not part of it.");
    } else {
      banner(`Could not join the session: ${errorText(ack)}`, "red");
      setTimeout(() => { if (socket.connected && !ended) join(); }, 3000);
    }
    return;
  }
  role = ack.role;
  if (!joinedOnce) setupRole(ack);
  else if (role === "therapist") notes.rejoined(ack.notes);
  // segments stored while this page was not connected: read them now that new ones reach this connection
  if (role === "therapist") catchUpTranscript();
  joinedOnce = true;
  for (const message of ack.chat) addChat(message);
  if (ack.call.started_at && !startedAt) startedAt = new Date(ack.call.started_at);

  iceConfig = { iceServers: ack.ice_servers, iceTransportPolicy: ack.ice_transport_policy };
  if (!peer) {
    peer = new CallPeer({
      config: iceConfig, polite: ack.polite, stream, onTrack: attachRemote, onState: connectionState,
      send: (message) => request(socket, "call.signal", { call_id: callId, ...message }),
    });
  } else {
    await peer.reset();
  }
  if (ack.peer_present) {
    showPeerJoining({ rejoined: false });
    peer.start();
  } else if (joinedMeanwhile) {
    // they joined just after us and will make the offer: the fresh connection above waits for it
    showPeerJoining(joinedMeanwhile);
  } else {
    banner(role === "therapist" ? "Waiting for the client to join…" : "Waiting for your therapist to join…", "blue");
  }
  // Signals that came before the join was answered: with the other member there first, they were meant for the
  // connection this join replaced; otherwise they arrived after us and their offer is for this one.
  if (!ack.peer_present) for (const message of heldSignals) peer.handle(message);
  heldSignals = [];
  // the server forgets this member's peer connection when it joins from a new connection: say it again
  if (peer.pc.connectionState === "connected") reportMedia(true);
  setRecording(ack.call.recording_consent, stream);
}

// ------------------------------------------------------------------ the other member

function peerJoined(event) {
  if (event.call_id !== callId || ended) return;
  if (joinInFlight || !peer) {
    joinedMeanwhile = event; // told before our own join was answered and its connection built: the join shows it
    return;
  }
  // they make the offer (they arrived second); start from a clean connection if we had one with them
  if (peer.hasRemote || peer.pc.signalingState !== "stable") peer.reset();
  showPeerJoining(event);
}

function showPeerJoining({ rejoined, joins }) {
  peerJoins = Math.max(peerJoins, joins || 0);
  const text = role === "therapist"
    ? rejoined ? "The client is rejoining…" : "The client is joining…"
    : rejoined ? "Your therapist is rejoining…" : "Your therapist is joining…";
  banner(text, "green");
  $("#remote-placeholder").textContent = text;
}

function peerLeft({ call_id: id, grace_s: grace, joins }) {
  if (id !== callId || ended || !peer) return;
  if (joins < peerJoins) return; // the connection they had before they rejoined: they are already back
  peer.reset();
  clearRemote();
  const who = role === "therapist" ? "The client" : "Your therapist";
  banner(`${who} dropped and may return. The session stays open for ${Math.round(grace / 60) || 1} min${grace >= 120 ? "s" : ""}.`, "amber", 0);
  $("#remote-placeholder").textContent = `${who} dropped and may return…`;
}

function replaced() {
  ended = true;
  teardown();
  socket.disconnect();
  banner("This session was opened in another window or tab, which now holds it.", "amber", 0);
  const again = h("button", { type: "button", text: "Use this window instead", on: { click: () => location.reload() } });
  $("#peer-banner").append(again);
  disableControls();
}

/** Tell the server whether the peer connection to the other member is up (it answers {ok: true}). */
function reportMedia(connected) {
  mediaReported = connected;
  if (ended || !socket.connected) return; // a re-join reports the state again
  request(socket, "call.media_state", { call_id: callId, connected }).then((ack) => {
    if (!ack.ok) console.warn("call.media_state not taken", ack.error?.code);
  });
}

function connectionState(state) {
  if (state === "connected") reportMedia(true);
  else if (state === "disconnected" || state === "failed" || state === "closed") reportMedia(false);
  else if (state === "new" && mediaReported) reportMedia(false); // a fresh connection replaced the connected one
  const el = $("#conn-state");
  el.dataset.state = state;
  el.textContent = {
    new: "waiting", connecting: "connecting…", connected: "connected", disconnected: "interrupted, reconnecting…",
    failed: "failed, retrying…", closed: "closed",
  }[state] || state;
  if (state === "connected") {
    if (!startedAt) startedAt = new Date();
    $("#remote-placeholder").textContent = role === "therapist"
      ? "Connected. The client's camera is off or not available."
      : "Connected. Your therapist's camera is off or not available.";
    banner(role === "therapist" ? "The client joined." : "Your therapist joined.", "green", 15000);
  }
}

function attachRemote(track, stream) {
  if (stream) {
    if (remoteVideo.srcObject !== stream) remoteVideo.srcObject = stream;
    remoteStream = stream;
  } else {
    if (!remoteStream) {
      remoteStream = new MediaStream();
      remoteVideo.srcObject = remoteStream;
    }
    remoteStream.addTrack(track);
  }
  playRemote();
}

async function playRemote() {
  try {
    await remoteVideo.play();
  } catch (err) {
    if (err.name === "NotAllowedError") {
      // the browser wants a click before playing sound: play muted now, offer the sound as a button
      remoteVideo.muted = true;
      $("#unmute-remote").hidden = false;
      remoteVideo.play().catch(() => {});
    }
  }
}

function updatePlaceholder() {
  $("#remote-placeholder").hidden = Boolean(remoteVideo.srcObject) && remoteVideo.videoWidth > 0;
}
for (const event of ["playing", "resize", "loadeddata", "emptied"]) remoteVideo.addEventListener(event, updatePlaceholder);
$("#unmute-remote").addEventListener("click", () => {
  remoteVideo.muted = false;
  remoteVideo.play().catch(() => {});
  $("#unmute-remote").hidden = true;
});

function clearRemote() {
  remoteVideo.srcObject = null;
  remoteStream = null;
  $("#remote-placeholder").hidden = false;
}

function banner(text, colour, hideAfterMs = 0) {
  const el = $("#peer-banner");
  clearTimeout(bannerTimer);
  el.className = `banner ${colour}`;
  clear(el).append(h("span", { text }));
  el.hidden = false;
  if (hideAfterMs) bannerTimer = setTimeout(() => { el.hidden = true; }, hideAfterMs);
}

function tickElapsed() {
  updatePlaceholder();
  $("#elapsed").textContent = startedAt && !ended ? `Time: ${formatClock(Date.now() - startedAt.getTime())}` : "";
}

// ------------------------------------------------------------------ controls

function setupControls(stream) {
  const audio = stream?.getAudioTracks()[0];
  const video = stream?.getVideoTracks()[0];
  const mute = $("#mute");
  const camera = $("#camera");
  if (!audio) {
    mute.disabled = true;
    mute.textContent = "No microphone";
  }
  if (!video) {
    camera.disabled = true;
    camera.textContent = "No camera";
  }
  mute.addEventListener("click", () => {
    audio.enabled = !audio.enabled;
    mute.setAttribute("aria-pressed", String(!audio.enabled));
    mute.textContent = audio.enabled ? "Mute" : "Unmute";
  });
  camera.addEventListener("click", () => {
    video.enabled = !video.enabled;
    camera.setAttribute("aria-pressed", String(!video.enabled));
    camera.textContent = video.enabled ? "Turn camera off" : "Turn camera on";
  });
}

$("#hangup").addEventListener("click", async (event) => {
  event.target.disabled = true;
  await notes?.flush();
  const ack = await request(socket, "call.hangup", { call_id: callId });
  if (ack.ok || ack.error.code === "call_ended") showEnded("hangup", ack.ok ? role : null);
  else {
    event.target.disabled = false;
    banner(`Could not hang up: ${errorText(ack)}`, "red");
  }
});

function disableControls() {
  for (const b of document.querySelectorAll("#controls button, #stop-recording")) b.disabled = true;
  $("#chat-form textarea").disabled = true;
  $("#chat-form button").disabled = true;
}

function teardown() {
  serverLink?.close();
  peer?.close();
  media.then((stream) => stream?.getTracks().forEach((t) => t.stop()));
  localVideo.srcObject = null;
  clearRemote();
}

async function showEnded(reason, endedBy, detail = null) {
  if (ended && !$("#ended").hidden) return;
  ended = true;
  teardown();
  disableControls();
  $("#recording").hidden = true;
  $("#stage").hidden = true;
  $("#controls").hidden = true;
  $("#peer-banner").hidden = true;
  const broke = reason === "balance_exhausted";
  const mine = role || (me.role === "therapist" ? "therapist" : "client");
  const them = mine === "therapist" ? "the client" : "your therapist";
  const text = broke
    ? me.role === "client" ? "The session ended because your balance ran out. Top up your wallet to talk again."
      : "The session ended because the client's balance ran out."
    : reason === "dropped"
    ? endedBy && endedBy !== mine ? `The session ended because ${them} was disconnected for too long.`
      : "The session ended because the connection was lost for too long."
    : reason === "no_show"
    ? endedBy && endedBy !== mine ? `The session ended because ${them} did not join in time.`
      : "The session ended because it was not joined in time."
    : endedBy && endedBy === role ? "You ended the session."
      : endedBy === "therapist" ? "Your therapist ended the session."
        : endedBy === "client" ? "The client ended the session." : "This session has ended.";
  const when = detail?.ended_at ? ` (${formatDateTime(detail.ended_at)})` : "";
  $("#ended-text").textContent = `${text}${when}${role === "therapist" ? " Your notes can still be edited here or in the call log." : ""}`;
  $("#ended-wallet").hidden = !(broke && me.role === "client");
  $("#billing-banner").hidden = true;
  $("#ended").hidden = false;
  $("#ended-title").focus();
  socket.off("connect", join);
}

function fatal(text) {
  ended = true;
  banner(text, "red");
  $("#stage").hidden = true;
  $("#controls").hidden = true;
  for (const id of ["chat-panel", "notes-panel", "transcript-panel"]) $(`#${id}`).hidden = true;
}

// ------------------------------------------------------------------ paid time (the client's balance)

async function startBilling() {
  try {
    const [{ wallet, config }, detail] = await Promise.all([api("/api/billing/wallet"), details]);
    if (!config.calls_charged || detail?.kind === "test") return; // free sessions: nothing to show
    billing.shown = true;
    if (billing.balance === null) billing.balance = wallet.balance_pence;
    showBilling();
  } catch {
    /* the pushes still come */
  }
}

function showBilling() {
  if (!billing.shown || billing.balance === null) return;
  const el = $("#billing-state");
  let text = `Balance: ${formatMoney(billing.balance)}`;
  if (billing.secondsLeft !== null) {
    const minutes = Math.floor(billing.secondsLeft / 60);
    text += minutes >= 1 ? ` · about ${minutes} min of paid time left` : " · less than a minute of paid time left";
  }
  el.textContent = text;
  el.hidden = false;
}

function balanceChanged(balance) {
  const before = billing.balance;
  billing.balance = balance;
  if (before !== null && balance > before) {
    // a top-up during the session: the warning no longer holds; the next minute's charge says how long is left
    $("#billing-banner").hidden = true;
    billing.secondsLeft = null;
  }
  showBilling();
}

function minuteCharged(event) {
  billing.secondsLeft = event.seconds_left;
  showBilling();
}

function lowBalance(minutesLeft) {
  const el = $("#billing-banner");
  const left = minutesLeft >= 1 ? `About ${minutesLeft} minute${minutesLeft === 1 ? "" : "s"}` : "Less than a minute";
  if (me.role === "client") {
    clear(el).append(h("span", { text: `${left} of paid time left — top up to continue.` }),
      h("a", { href: "/wallet", target: "_blank", text: "Top up (opens in a new tab)",
               on: { click: (e) => { e.preventDefault(); openSameSiteWindow("/wallet"); } } }));
  } else {
    clear(el).append(h("span", {
      text: `The client has ${left.charAt(0).toLowerCase()}${left.slice(1)} of paid time left; the session ends when it runs out unless they top up.`,
    }));
  }
  el.hidden = false;
}

// ------------------------------------------------------------------ recording and the server audio link

function setRecording(on, stream) {
  recording = Boolean(on);
  $("#recording").hidden = !recording;
  if (!recording) {
    serverLink?.close();
    return;
  }
  const track = stream?.getAudioTracks()[0];
  if (!track) {
    $("#recording-text").textContent = "Recording is on, but your microphone is not available";
    return;
  }
  serverLink?.close();
  // the server's peer has no ICE restart: after a network change the link is replaced by a new one
  serverLink = new ServerLink({
    config: iceConfig, // the call's TURN servers too: a relay-only deployment reaches the server through TURN
    track,
    offer: (sdp) => request(socket, "call.media.offer", { call_id: callId, sdp }, 15000),
    onState: (state) => {
      $("#recording").dataset.link = state;
      clearTimeout(serverLinkTimer);
      if (state === "failed") serverLinkTimer = setTimeout(() => openServerLink(), 2000);
      else if (state === "disconnected") serverLinkTimer = setTimeout(() => openServerLink(), DISCONNECTED_RESTART_MS);
    },
  });
  openServerLink();
}

window.addEventListener("online", () => {
  if (serverLink?.pc && ["failed", "disconnected"].includes(serverLink.pc.connectionState)) openServerLink();
});

async function openServerLink() {
  clearTimeout(serverLinkTimer);
  if (!serverLink || !recording || ended) return;
  try {
    const ack = await serverLink.open();
    if (!ack.ok && ack.error.code === "no_consent") recordingStopped(null);
  } catch (err) {
    console.warn("server audio link failed", err);
  }
}

function recordingStopped(by) {
  if (!recording && $("#recording").hidden) return;
  recording = false;
  serverLink?.close();
  $("#recording").hidden = true;
  const who = by === null || by === undefined ? "" : by === role ? " by you" : by === "therapist" ? " by the therapist" : " by the client";
  say($("#recording-off"), `Recording and transcription were stopped${who}. Nothing more is recorded in this session.`, "info");
  $("#recording-off").hidden = false;
}

$("#stop-recording").addEventListener("click", async (event) => {
  event.target.disabled = true;
  const ack = await request(socket, "call.recording.withdraw", { call_id: callId });
  if (ack.ok) recordingStopped(role);
  else {
    event.target.disabled = false;
    banner(`Could not stop the recording: ${errorText(ack)}`, "red");
  }
});

// ------------------------------------------------------------------ role-specific panels

let notes = null;

function setupRole(ack) {
  if (ack.role === "therapist") {
    $("#notes-panel").hidden = false;
    $("#transcript-panel").hidden = false;
    notes = new NotesEditor(ack.notes);
    if (!segments.size) $("#transcript-status").textContent = ack.call.recording_consent
      ? "What each of you says appears here as it is transcribed."
      : "The client did not agree to recording: there is no transcript for this session.";
  } else {
    // the client's page holds no notes or transcript at all
    $("#notes-panel").remove();
    $("#transcript-panel").remove();
  }
}

class NotesEditor {
  constructor(initial) {
    this.area = $("#notes-text");
    this.status = $("#notes-status");
    this.version = initial?.version || 0;
    this.area.value = initial?.text || "";
    this.dirty = false;
    this.saving = null;
    this.timer = null;
    this.area.addEventListener("input", () => {
      this.dirty = true;
      this.status.textContent = "Editing…";
      clearTimeout(this.timer);
      this.timer = setTimeout(() => this.save(), 1000);
    });
    this.area.addEventListener("blur", () => { if (this.dirty) this.flush(); });
    $("#notes-keep-mine").addEventListener("click", () => this.resolve(true));
    $("#notes-load-theirs").addEventListener("click", () => this.resolve(false));
    window.addEventListener("beforeunload", (event) => {
      if (!this.dirty) return;
      this.save();
      event.preventDefault();
    });
    if (initial?.saved_at) this.status.textContent = `Saved ${formatDateTime(initial.saved_at)}`;
  }

  rejoined(latest) {
    if (!latest) return;
    if (!this.dirty) {
      this.area.value = latest.text;
      this.version = latest.version;
    }
  }

  async flush() {
    clearTimeout(this.timer);
    if (this.dirty) await this.save();
    else await this.saving;
  }

  async save() {
    clearTimeout(this.timer);
    if (this.saving) {
      await this.saving;
      if (!this.dirty) return;
    }
    this.saving = this.doSave();
    try {
      await this.saving;
    } finally {
      this.saving = null;
    }
  }

  async doSave() {
    const text = this.area.value;
    this.status.textContent = "Saving…";
    const ack = await request(socket, "call.notes.save", { call_id: callId, text, base_version: this.version });
    if (ack.ok) {
      this.version = ack.version;
      if (this.area.value === text) this.dirty = false;
      this.status.textContent = `Saved at ${new Date(ack.saved_at).toLocaleTimeString()}`;
      $("#notes-conflict").hidden = true;
    } else if (ack.error.code === "stale_notes") {
      this.status.textContent = "Not saved: the notes changed elsewhere.";
      $("#notes-conflict").hidden = false;
    } else {
      this.status.textContent = `Not saved (${errorText(ack)}). Retrying…`;
      this.timer = setTimeout(() => this.save(), 3000);
    }
  }

  async resolve(keepMine) {
    const ack = await request(socket, "call.notes.get", { call_id: callId });
    if (!ack.ok) {
      this.status.textContent = errorText(ack);
      return;
    }
    this.version = ack.version;
    $("#notes-conflict").hidden = true;
    if (keepMine) {
      this.dirty = true;
      await this.save();
    } else {
      this.area.value = ack.text;
      this.dirty = false;
      this.status.textContent = "Loaded the saved notes.";
    }
  }
}

// ------------------------------------------------------------------ chat

function speakerName(senderRole) {
  if (senderRole === role) return "You";
  if (otherName) return otherName;
  return senderRole === "therapist" ? "Therapist" : "Client";
}

function addChat(message) {
  if (chat.has(message.id)) return;
  const li = h("li", { class: message.sender_role === role ? "mine" : "", dataset: { id: message.id, role: message.sender_role } },
    h("span", { class: "from", text: speakerName(message.sender_role) }),
    h("span", { class: "text", text: message.text }));
  const list = $("#chat-list");
  const scroller = $("#chat-scroll");
  const atBottom = scroller.scrollHeight - scroller.scrollTop - scroller.clientHeight < 40;
  const after = [...chat.keys()].filter((id) => id > message.id).sort((a, b) => a - b)[0];
  chat.set(message.id, li);
  if (after === undefined) list.append(li);
  else list.insertBefore(li, chat.get(after));
  if (atBottom || message.sender_role === role) scroller.scrollTop = scroller.scrollHeight;
}

$("#chat-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const area = $("#chat-text");
  const text = area.value.trim();
  if (!text) return;
  const clientRef = crypto.randomUUID();
  say($("#chat-error"), "");
  area.value = "";
  let ack = await request(socket, "call.chat", { call_id: callId, text, client_ref: clientRef });
  if (!ack.ok && ack.error.code === "timeout") {
    ack = await request(socket, "call.chat", { call_id: callId, text, client_ref: clientRef });
  }
  if (ack.ok) addChat(ack.message);
  else {
    area.value = text;
    say($("#chat-error"), `Not sent: ${errorText(ack)}`, "error");
  }
  area.focus();
});

$("#chat-text").addEventListener("keydown", (event) => {
  if (event.key === "Enter" && !event.shiftKey) {
    event.preventDefault();
    $("#chat-form").requestSubmit();
  }
});

// ------------------------------------------------------------------ live transcript (therapist)

async function catchUpTranscript() {
  try {
    const detail = await api(`/api/calls/${callId}`);
    for (const segment of detail.transcript || []) addSegment(segment);
  } catch {
    /* the live events still come */
  }
}

function addSegment(segment) {
  const list = $("#transcript-list");
  if (!list) return;
  const label = segment.speaker === role ? "You" : segment.speaker === "client" ? "Client" : "Therapist";
  const li = h("li", { dataset: { id: segment.id, speaker: segment.speaker, start: segment.start_ms } },
    h("span", { class: "time", text: formatClock(segment.start_ms) }),
    h("span", { class: "speaker", text: `${label}:` }),
    h("span", { class: "text", text: segment.text }));
  const scroller = $("#transcript-scroll");
  const atBottom = scroller.scrollHeight - scroller.scrollTop - scroller.clientHeight < 40;
  const old = segments.get(segment.id);
  if (old) old.li.replaceWith(li);
  else {
    const later = [...segments.values()]
      .filter(({ segment: s }) => s.start_ms > segment.start_ms || (s.start_ms === segment.start_ms && s.id > segment.id))
      .sort((a, b) => a.segment.start_ms - b.segment.start_ms || a.segment.id - b.segment.id)[0];
    if (later) list.insertBefore(li, later.li);
    else list.append(li);
  }
  segments.set(segment.id, { segment, li });
  $("#transcript-status").textContent = "";
  if (atBottom) scroller.scrollTop = scroller.scrollHeight;
}

// ------------------------------------------------------------------ the demo client's link

/**
 * The admin page's "demo client link" opens this page with the demo client's token in the fragment (`#token=…`),
 * which never reaches the server or its logs: keep it in this tab's session, as signing in would, and take it out of
 * the address bar and the history before anything else runs.
 */
function takeTokenFromLink() {
  const token = takeFragmentToken();
  if (token && !getToken()) setToken(token);  // a link never replaces the sign-in this tab already has
}

pageReady();
