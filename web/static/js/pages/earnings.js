// The therapist's earnings (/earnings): available, pending, being withdrawn and paid out; a withdrawal request and
// the withdrawals with their state (requested: invoice asked for → scheduled: invoice received, payout date → paying →
// paid, or cancelled), cancelling one still waiting for its invoice; Stripe Connect onboarding and payout readiness;
// earnings per session; the CSV of every movement. Live through billing.withdrawal and billing.connect.
import { api, download, requireUser } from "../lib/api.js";
import { connectSocket } from "../lib/socket.js";
import {
  $, busy, clear, errorText, formatDateTime, formatDay, formatMoney, formError, h, initChrome, pageReady, parsePounds,
  say,
} from "../lib/ui.js";

const me = await requireUser(["therapist"]);
initChrome(me);

let earnings = null;
let attempt = null; // {pence, key}: the withdrawal being requested (a retry reuses its Idempotency-Key)
const withdrawals = new Map(); // id -> Withdrawal
let connectedBefore = false;

const socket = connectSocket();
socket.on("billing.withdrawal", ({ withdrawal }) => {
  withdrawals.set(withdrawal.id, withdrawal);
  renderWithdrawals();
  loadSummary();
});
socket.on("billing.connect", (state) => showConnect(state));
socket.on("connect", () => {
  if (connectedBefore) loadSummary(); // catch up with what changed while we were away
  connectedBefore = true;
});

showConnectReturn();
await loadSummary();
loadSessions();

function pageError(text) {
  say($("#page-error"), text, "error");
  $("#page-error").hidden = !text;
}

function showConnectReturn() {
  const back = new URLSearchParams(location.search).get("connect");
  if (!back) return;
  history.replaceState(null, "", location.pathname);
  const el = $("#connect-return");
  if (back === "done") say(el, "Welcome back from Stripe. Payouts to your Stripe account start as soon as Stripe confirms your details.", "ok");
  else say(el, "The Stripe link had expired. Start again with the button below.", "warn");
  el.hidden = false;
}

// ------------------------------------------------------------------ summary, connect, withdrawals

async function loadSummary() {
  try {
    const data = await api("/api/billing/earnings");
    earnings = data.earnings;
    showEarnings(earnings);
    showConnect(data.connect);
    withdrawals.clear();
    for (const w of data.withdrawals) withdrawals.set(w.id, w);
    renderWithdrawals();
  } catch (err) {
    pageError(errorText(err));
  }
}

function showEarnings(e) {
  $("#test-mode").hidden = !e.test_mode;
  $("#available").textContent = formatMoney(e.available_pence);
  $("#pending").textContent = formatMoney(e.pending_pence);
  $("#withdrawing").textContent = formatMoney(e.withdrawing_pence);
  $("#paid-out").textContent = formatMoney(e.paid_out_pence);
  $("#commission").textContent = `Clients pay your rate for each minute; the platform keeps ${e.commission_bp / 100} % of it. `
    + "A session's earnings become available when it ends.";
  $("#withdraw-hint").textContent = `Up to ${formatMoney(e.available_pence)} is available.`;
}

function showConnect(c) {
  const button = $("#connect-start");
  let text;
  let kind = "info";
  if (c.ready) {
    text = "Ready: withdrawals can be paid straight into your Stripe account.";
    kind = "ok";
    button.hidden = true;
  } else if (c.account) {
    text = "Stripe has not enabled payouts to your account yet. Finish setting it up with Stripe.";
    kind = "warn";
    button.textContent = "Continue setting up with Stripe";
    button.hidden = false;
  } else {
    text = "Not set up: we pay your withdrawals by bank transfer.";
    button.textContent = "Set up payouts with Stripe";
    button.hidden = false;
  }
  say($("#connect-state"), text, kind);
}

$("#connect-start").addEventListener("click", (event) => busy(event.target, async () => {
  say($("#connect-error"), "");
  try {
    const { connect } = await api("/api/billing/connect/onboarding", { method: "POST" });
    location.assign(connect.onboarding_url);
  } catch (err) {
    say($("#connect-error"), err.code === "not_approved"
      ? "You can set up payouts once your application is approved." : errorText(err), "error");
  }
}));

const STATES = {
  requested: { label: "Invoice requested", kind: "warn" },
  scheduled: { label: "Invoice received", kind: "ok" },
  paying: { label: "Being paid", kind: "warn" },
  paid: { label: "Paid", kind: "ok" },
  cancelled: { label: "Cancelled", kind: "" },
};

/** What a withdrawal's state means for the therapist, in one sentence. */
function detailOf(w) {
  if (w.status === "requested") return `Send us your invoice for ${formatMoney(w.amount_pence)}, quoting W-${w.id}.`;
  if (w.status === "scheduled" || w.status === "paying") return `Payout on ${formatDay(w.payout_date)}.`;
  if (w.status === "paid") {
    const how = w.method === "stripe" ? "into your Stripe account" : "by bank transfer";
    return `Paid ${how} on ${formatDateTime(w.paid_at)}${w.bank_reference ? ` (reference ${w.bank_reference})` : ""}.`;
  }
  if (w.status === "cancelled") return "The amount went back to your available earnings.";
  return "";
}

function renderWithdrawals() {
  const body = clear($("#withdrawals"));
  const rows = [...withdrawals.values()].sort((a, b) => b.id - a.id);
  $("#withdrawals-empty").hidden = rows.length > 0;
  $("#withdrawals-table").hidden = rows.length === 0;
  for (const w of rows) {
    const state = STATES[w.status] || { label: w.status, kind: "" };
    body.append(h("tr", { dataset: { withdrawalId: w.id, status: w.status } },
      h("td", { class: "when", text: `W-${w.id}, ${formatDateTime(w.requested_at)}` }),
      h("td", { class: "num", text: formatMoney(w.amount_pence) }),
      h("td", {}, h("span", { class: `badge ${state.kind}`, text: state.label }), " ",
        h("span", { class: "status-detail", text: detailOf(w) })),
      h("td", { class: "actions-cell" }, w.status === "requested" ? h("button", {
        type: "button", text: "Cancel", "aria-label": `Cancel withdrawal W-${w.id}`,
        on: { click: (event) => cancel(w, event.target) },
      }) : null)));
  }
}

async function cancel(w, button) {
  await busy(button, async () => {
    try {
      const { withdrawal } = await api(`/api/billing/withdrawals/${w.id}/cancel`, { method: "POST" });
      say($("#withdraw-status"), "");
      withdrawals.set(withdrawal.id, withdrawal);
      renderWithdrawals();
      say($("#withdrawals-notice"), `Withdrawal W-${w.id} is cancelled: ${formatMoney(w.amount_pence)} is available again.`, "ok");
      await loadSummary();
    } catch (err) {
      say($("#withdrawals-notice"), errorText(err), "error");
      await loadSummary();
    }
  });
}

$("#withdraw-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = event.target;
  formError(form, null);
  say($("#withdraw-status"), "");
  const pence = parsePounds($("#withdraw-amount").value);
  if (!pence || (earnings && pence > earnings.available_pence)) {
    formError(form, { message: `Enter an amount up to your available ${formatMoney(earnings?.available_pence || 0)}, such as 25 or 25.50.`,
      details: { field: "amount_pence" } });
    return;
  }
  if (!attempt || attempt.pence !== pence) attempt = { pence, key: crypto.randomUUID() };
  await busy(form.querySelector('button[type="submit"]'), async () => {
    try {
      const { withdrawal } = await api("/api/billing/withdrawals", {
        method: "POST", body: { amount_pence: pence }, headers: { "Idempotency-Key": attempt.key },
      });
      attempt = null;
      withdrawals.set(withdrawal.id, withdrawal);
      renderWithdrawals();
      $("#withdraw-amount").value = "";
      say($("#withdraw-status"), `Withdrawal W-${withdrawal.id} of ${formatMoney(withdrawal.amount_pence)} requested. `
        + "We have e-mailed you to ask for your invoice.");
      await loadSummary();
    } catch (err) {
      formError(form, err.code === "invalid" ? { message: err.message, details: { field: "amount_pence" } } : err);
    }
  });
});

// ------------------------------------------------------------------ earnings per session

async function loadSessions() {
  try {
    const [{ transactions }, { calls }] = await Promise.all([
      api("/api/billing/transactions?limit=500"), api("/api/calls"),
    ]);
    const byCall = new Map();
    for (const t of transactions) {
      if (!t.call_id || !["call_charge", "call_refund"].includes(t.kind) || !t.account.startsWith("therapist_")) continue;
      const row = byCall.get(t.call_id) || { earned: 0, minutes: 0 };
      row.earned += t.amount_pence;
      if (t.kind === "call_charge") row.minutes += 1;
      byCall.set(t.call_id, row);
    }
    const info = new Map(calls.map((c) => [c.id, c]));
    const body = clear($("#sessions"));
    const ids = [...byCall.keys()].sort((a, b) => b - a);
    $("#sessions-empty").hidden = ids.length > 0;
    $("#sessions-table").hidden = ids.length === 0;
    for (const id of ids) {
      const call = info.get(id);
      const row = byCall.get(id);
      body.append(h("tr", { dataset: { callId: id } },
        h("td", {}, h("a", { href: `/calls/${id}`, text: call ? formatDateTime(call.created_at) : `Session ${id}` })),
        h("td", { text: call?.with?.display_name || "" }),
        h("td", { class: "num", text: String(row.minutes) }),
        h("td", { class: "num", text: formatMoney(row.earned) })));
    }
  } catch (err) {
    pageError(errorText(err));
  }
}

$("#download-csv").addEventListener("click", (event) => busy(event.target, async () => {
  try {
    await download("/api/billing/transactions.csv", "transactions.csv");
  } catch (err) {
    pageError(errorText(err));
  }
}));

pageReady();
