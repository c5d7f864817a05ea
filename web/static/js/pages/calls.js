// The call log: every session of the user (/calls), with who ended each and how, the therapist's search across all
// their transcripts and panel of past clients; and one session (/calls/N): summary, transcript with search and
// downloads, the therapist's notes and recordings, and the chat.
import { api, download, homeFor, requireUser } from "../lib/api.js";
import {
  $, $$, busy, clear, errorText, formatClock, formatDateTime, formatDuration, formError, h, initChrome, pageReady, say,
} from "../lib/ui.js";

const me = await requireUser(["therapist", "client"]);
initChrome(me);
$("#brand").href = homeFor(me.role);
const callId = Number((/^\/calls\/(\d+)/.exec(location.pathname) || [])[1] || new URLSearchParams(location.search).get("id") || 0);

if (callId) showCall(callId);
else showList();

function pageError(err) {
  const el = $("#page-error");
  el.textContent = errorText(err);
  el.hidden = false;
}

/** Who ended a call and how ("Ended by the therapist", "Ended: the client's connection dropped"), from the summary's
 * `end_reason` and `ended_by` (a role); just "Ended" where the server does not say. */
function endedText(call) {
  const by = call.ended_by === "therapist" || call.ended_by === "client" ? call.ended_by : null;
  switch (call.end_reason) {
    case "hangup":
      return by ? `Ended by the ${by}` : "Ended";
    case "dropped":
      return by ? `Ended: the ${by}'s connection dropped` : "Ended: the connection dropped";
    case "no_show":
      return by ? `Ended: the ${by} never joined` : "Ended: neither of you joined";
    case "balance_exhausted":
      return "Ended: the client's paid time ran out";
    default:
      return "Ended";
  }
}

function statusBadge(call) {
  if (call.status === "open") return h("a", { class: "badge ok", href: `/call/${call.id}`, text: "In progress: rejoin" });
  return h("span", { class: "badge", text: endedText(call) });
}

// ------------------------------------------------------------------ list and clients

const callsById = new Map(); // the list's calls, to name the calls that search results come from

async function showList() {
  $("#list-view").hidden = false;
  $("#search-section").hidden = me.role !== "therapist";
  try {
    const { calls } = await api("/api/calls");
    for (const call of calls) callsById.set(call.id, call);
    const body = clear($("#calls-body"));
    $("#calls-empty").hidden = calls.length > 0;
    $("#calls-table").hidden = calls.length === 0;
    for (const call of calls) {
      body.append(h("tr", {},
        h("td", {}, h("a", { href: `/calls/${call.id}`, text: formatDateTime(call.created_at) })),
        h("td", {}, call.with.display_name, call.kind === "test" ? h("span", { class: "badge warn", text: " test" }) : null),
        h("td", { text: formatDuration(call.duration_s) }),
        h("td", {}, statusBadge(call))));
    }
  } catch (err) {
    pageError(err);
  }
  if (me.role === "therapist") showClients();
}

async function showClients() {
  $("#clients-section").hidden = false;
  try {
    const { clients } = await api("/api/clients");
    const list = clear($("#clients"));
    if (!clients.length) list.append(h("li", { class: "muted", text: "No clients yet." }));
    for (const { client, calls } of clients) {
      const last = calls[0];
      list.append(h("li", {},
        h("strong", { text: client.display_name }),
        h("span", { class: "when", text: `${calls.length} session${calls.length === 1 ? "" : "s"}` }),
        last ? h("a", { href: `/calls/${last.id}`, text: `Last: ${formatDateTime(last.created_at)}` }) : null,
        h("details", {},
          h("summary", { text: "All sessions" }),
          h("ul", { class: "list" }, calls.map((c) => h("li", {},
            h("a", { href: `/calls/${c.id}`, text: formatDateTime(c.created_at) }),
            h("span", { class: "when", text: formatDuration(c.duration_s) })))))));
    }
  } catch (err) {
    pageError(err);
  }
}

// ------------------------------------------------------------------ search across all transcripts (therapist)

$("#search-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = event.target;
  const query = form.elements.q.value.trim();
  formError(form, null);
  await busy(form.querySelector('button[type="submit"]'), async () => {
    try {
      const { results } = await api(`/api/transcripts/search?q=${encodeURIComponent(query)}`);
      showSearchResults(query, results);
    } catch (err) {
      clear($("#search-results"));
      $("#search-status").textContent = "";
      formError(form, err);
    }
  });
});

function showSearchResults(query, results) {
  const byCall = new Map(); // call id -> its matching segments, newest call first as the server sorts them
  for (const segment of results) {
    if (!byCall.has(segment.call_id)) byCall.set(segment.call_id, []);
    byCall.get(segment.call_id).push(segment);
  }
  const list = clear($("#search-results"));
  for (const [id, found] of byCall) {
    const call = callsById.get(id);
    const title = call ? `Session with ${call.with.display_name}, ${formatDateTime(call.created_at)}` : `Session ${id}`;
    list.append(h("li", { class: "search-result", dataset: { callId: id } },
      h("a", { href: `/calls/${id}`, text: title }),
      h("ol", { class: "list transcript-log", "aria-label": `Matching lines in: ${title}` },
        [...found].sort((a, b) => a.start_ms - b.start_ms).map((s) => {
          const text = h("span", { class: "text" });
          highlighted(text, s.text, query);
          return h("li", { dataset: { speaker: s.speaker } },
            h("span", { class: "time", text: formatClock(s.start_ms) }),
            h("span", { class: "speaker", text: `${label(s.speaker)}:` }),
            text);
        }))));
  }
  const sessions = byCall.size;
  $("#search-status").textContent = results.length
    ? `${results.length} line${results.length === 1 ? "" : "s"} in ${sessions} session${sessions === 1 ? "" : "s"} contain "${query}".`
    : `No transcript of yours contains "${query}".`;
}

// ------------------------------------------------------------------ one session

let segments = [];
let notesVersion = 0;
let pollsLeft = 20;

async function showCall(id) {
  $("#detail-view").hidden = false;
  let call;
  try {
    call = await api(`/api/calls/${id}`);
  } catch (err) {
    pageError(err);
    return;
  }
  $("#detail-title").textContent = `Session with ${call.with.display_name}`;
  document.title = `Session with ${call.with.display_name} — Therapy`;
  const rows = [
    ["With", call.with.display_name],
    ["Kind", { quick_connect: "Quick connect", scheduled: "Scheduled", test: "Test session" }[call.kind] || call.kind],
    ["Opened", formatDateTime(call.created_at)],
    ["Started", call.started_at ? formatDateTime(call.started_at) : "—"],
    ["Ended", call.ended_at ? formatDateTime(call.ended_at) : call.status === "open" ? "In progress" : "—"],
    ["Length", formatDuration(call.duration_s)],
    ["Recording", call.recording_consent ? "Recorded and transcribed" : "Not recorded"],
  ];
  if (call.status === "ended") rows.splice(5, 0, ["How it ended", endedText(call)]);
  clear($("#summary")).append(...rows.flatMap(([k, v]) => [h("dt", { text: k }), h("dd", { text: v })]));
  if (call.status === "open") {
    $("#rejoin-link").href = `/call/${id}`;
    $("#rejoin").hidden = false;
  }
  renderChat(call.chat || []);
  if ("transcript" in call) showTranscript(call);
  if (call.notes) showNotes(call.notes);
  if (me.role === "therapist" && call.therapist_id === me.id) showRecordings(call);
}

// ------------------------------------------------------------------ recordings (the call's therapist only)

async function showRecordings(call) {
  const id = call.id;
  let recordings;
  try {
    ({ recordings } = await api(`/api/calls/${id}/recordings`));
  } catch {
    return; // nothing to offer
  }
  const kept = recordings.filter((r) => r.status !== "deleted");
  $("#recordings-section").hidden = !kept.length && !call.recording_consent;
  $("#recordings-empty").textContent = recordings.length ? "The recordings were deleted (past retention)." : "Nothing was recorded.";
  $("#recordings-empty").hidden = kept.length > 0;
  const list = clear($("#recordings"));
  for (const r of kept) {
    const from = formatClock(r.start_offset_ms);
    const state = { recording: "still recording", complete: "complete", interrupted: "interrupted (the server stopped)" }[r.status] || r.status;
    const whose = r.speaker === "therapist" ? "your" : "the client's";
    const button = h("button", {
      type: "button", text: "Download (.ogg)", "aria-label": `Download ${whose} recording from ${from}`,
      on: { click: () => busy(button, async () => {
        say($("#recordings-error"), "");
        try {
          await download(`/api/calls/${id}/recordings/${r.id}`, `call-${id}-${r.speaker}-${r.id}.ogg`);
        } catch (err) {
          say($("#recordings-error"), errorText(err), "error");
        }
      }) },
    });
    list.append(h("li", { dataset: { speaker: r.speaker } },
      h("strong", { text: r.speaker === "therapist" ? "You" : "Client" }),
      h("span", { class: "when", text: `from ${from} · ${state}` }),
      button));
  }
}

function renderChat(messages) {
  const list = clear($("#chat"));
  $("#chat-empty").hidden = messages.length > 0;
  for (const m of [...messages].sort((a, b) => a.id - b.id)) {
    const who = m.sender_role === me.role ? "You" : m.sender_role === "therapist" ? "Therapist" : "Client";
    list.append(h("li", { dataset: { role: m.sender_role } },
      h("span", { class: "from", text: `${who}:` }),
      h("span", { class: "pre", text: m.text }),
      h("span", { class: "when", text: ` ${new Date(m.created_at).toLocaleTimeString()}` })));
  }
}

function showTranscript(call) {
  $("#transcript-section").hidden = false;
  segments = call.transcript || [];
  renderTranscript();
  const state = $("#transcript-state");
  if (!call.recording_consent && !segments.length) state.textContent = "This session was not recorded.";
  else if (call.status === "ended" && call.transcript_complete === false) {
    state.textContent = "The transcript is still being completed…";
    if (pollsLeft-- > 0) setTimeout(() => refreshTranscript(call.id), 3000);
  } else if (!segments.length) state.textContent = "Nothing was transcribed.";
  else state.textContent = "";
}

async function refreshTranscript(id) {
  try {
    showTranscript(await api(`/api/calls/${id}`));
  } catch {
    /* keep what is shown */
  }
}

function label(speaker) {
  if (speaker === me.role) return "You";
  return speaker === "client" ? "Client" : "Therapist";
}

/** Append `text` to `el`, wrapping every case-insensitive occurrence of `query` in <mark> (as text nodes). */
function highlighted(el, text, query) {
  if (!query) {
    el.textContent = text;
    return 0;
  }
  const lower = text.toLowerCase();
  const q = query.toLowerCase();
  let at = 0;
  let found = 0;
  for (let i = lower.indexOf(q); i !== -1; i = lower.indexOf(q, at)) {
    el.append(text.slice(at, i), h("mark", { text: text.slice(i, i + q.length) }));
    at = i + q.length;
    found += 1;
  }
  el.append(text.slice(at));
  return found;
}

function renderTranscript() {
  const query = $("#transcript-search").value.trim();
  const list = clear($("#transcript"));
  let matching = 0;
  for (const s of segments) {
    const text = h("span", { class: "text" });
    const found = highlighted(text, s.text, query);
    if (found) matching += 1;
    list.append(h("li", { class: query && !found ? "no-match" : "", dataset: { speaker: s.speaker, id: s.id } },
      h("span", { class: "time", text: formatClock(s.start_ms) }),
      h("span", { class: "speaker", text: `${label(s.speaker)}:` }),
      text));
  }
  $("#search-count").textContent = query ? `${matching} of ${segments.length} lines contain "${query}".` : "";
}

$("#transcript-search").addEventListener("input", renderTranscript);

for (const button of $$("#downloads button")) {
  button.addEventListener("click", () => busy(button, async () => {
    say($("#download-error"), "");
    const format = button.dataset.format;
    try {
      await download(`/api/calls/${callId}/transcript?format=${format}`, `call-${callId}-transcript.${format}`);
    } catch (err) {
      say($("#download-error"), err.status === 404 ? "Downloads are not available yet." : errorText(err), "error");
    }
  }));
}

// ------------------------------------------------------------------ notes (the call's therapist only)

function showNotes(notes) {
  $("#notes-section").hidden = false;
  $("#log-notes").value = notes.text;
  notesVersion = notes.version;
  if (notes.saved_at) $("#log-notes-status").textContent = `Saved ${formatDateTime(notes.saved_at)}`;
}

$("#notes-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = event.target;
  formError(form, null);
  await busy(form.querySelector("button"), async () => {
    try {
      const saved = await api(`/api/calls/${callId}/notes`, {
        method: "PUT", body: { text: $("#log-notes").value, base_version: notesVersion },
      });
      notesVersion = saved.version;
      say($("#log-notes-status"), `Saved at ${new Date(saved.saved_at).toLocaleTimeString()}`, "ok");
    } catch (err) {
      if (err.code === "stale_notes") {
        say(form.querySelector(".form-error"),
          "These notes were changed elsewhere since you opened them. Copy your text, reload the page, and merge.", "error");
      } else formError(form, err);
    }
  });
});

pageReady();
