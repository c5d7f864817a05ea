// Admin billing (/admin/billing): withdrawals waiting for their invoice ("Invoice received" schedules the payout),
// scheduled payouts ("Pay by Stripe transfer" or "Mark paid by bank transfer" with its reference), cancelling
// either; a session's charges looked up by its number and refunded in full or in part; credits to a client's
// wallet; card disputes.
import { api, requireUser } from "../lib/api.js";
import {
  $, busy, clear, errorText, formatDateTime, formatDay, formatMoney, formatRate, formError, h, initChrome, pageReady,
  parsePounds, say,
} from "../lib/ui.js";

const me = await requireUser(["admin"]);
initChrome(me);

const therapists = new Map(); // id -> application (name and e-mail)
const STATES = {
  requested: { label: "Waiting for the invoice", kind: "warn" },
  scheduled: { label: "Scheduled", kind: "ok" },
  paying: { label: "Being paid by Stripe", kind: "warn" },
  paid: { label: "Paid", kind: "ok" },
  cancelled: { label: "Cancelled", kind: "" },
};

await loadTherapists();
loadWithdrawals();
loadDisputes();

async function loadTherapists() {
  try {
    const { applications } = await api("/api/admin/applications?status=approved&limit=500");
    for (const a of applications) therapists.set(a.id, a);
  } catch {
    /* the cards then show account numbers */
  }
}

function therapistName(id) {
  const t = therapists.get(id);
  return t ? `${t.display_name} (${t.email})` : `Therapist account ${id}`;
}

// ------------------------------------------------------------------ withdrawals

async function loadWithdrawals() {
  const status = $("#withdrawal-status").value;
  const list = $("#withdrawals");
  try {
    const { withdrawals } = await api(`/api/admin/billing/withdrawals${status ? `?status=${encodeURIComponent(status)}` : ""}`);
    clear(list).append(...withdrawals.map(card));
    $("#withdrawals-empty").hidden = withdrawals.length > 0;
  } catch (err) {
    say($("#withdrawals-notice"), errorText(err), "error");
  }
}

function card(w) {
  const state = STATES[w.status] || { label: w.status, kind: "" };
  const rows = [["Withdrawal", `W-${w.id}`], ["Amount", formatMoney(w.amount_pence)], ["Requested", formatDateTime(w.requested_at)]];
  if (w.invoice_received_at) rows.push(["Invoice received", formatDateTime(w.invoice_received_at)]);
  if (w.payout_date) rows.push(["Payout date", formatDay(w.payout_date)]);
  if (w.paid_at) {
    rows.push(["Paid", `${formatDateTime(w.paid_at)}, ${w.method === "stripe" ? `Stripe transfer ${w.transfer_id || ""}`
      : `bank transfer, reference ${w.bank_reference || "—"}`}`]);
  }
  if (w.cancelled_at) rows.push(["Cancelled", formatDateTime(w.cancelled_at)]);
  const name = therapistName(w.therapist_id);
  const act = (label, cls, run) => h("button", { type: "button", class: cls || null, text: label,
    "aria-label": `${label}: W-${w.id}, ${formatMoney(w.amount_pence)} to ${name}`,
    on: { click: (event) => runAction(w, event.target, run) } });
  const actions = [];
  if (w.status === "requested") actions.push(act("Invoice received", "primary", () => post(w, "invoice-received")));
  if (w.status === "scheduled" || w.status === "paying") {
    actions.push(act(w.status === "paying" ? "Retry the Stripe transfer" : "Pay by Stripe transfer", "primary",
      () => post(w, "pay", { method: "stripe" })));
  }
  let bank = null;
  if (w.status === "scheduled") {
    const input = h("input", { type: "text", id: `bank-ref-${w.id}`, maxlength: "64", autocomplete: "off" });
    bank = h("div", { class: "inline-fields" },
      h("div", { class: "field" }, h("label", { for: `bank-ref-${w.id}`, text: `Bank transfer reference for W-${w.id}` }), input),
      h("div", { class: "field" }, act("Mark paid by bank transfer", "", () => {
        if (!input.value.trim()) {
          input.setAttribute("aria-invalid", "true");
          input.focus();
          throw new Error("Enter the bank transfer's reference first.");
        }
        return post(w, "pay", { method: "bank", reference: input.value.trim() });
      })));
  }
  if (w.status === "requested" || w.status === "scheduled") actions.push(act("Cancel", "danger", () => post(w, "cancel")));
  return h("li", { class: "card", dataset: { withdrawalId: w.id, status: w.status } },
    h("div", { class: "card-head" },
      h("strong", { text: name }),
      h("span", { class: `badge ${state.kind}`, text: state.label })),
    h("dl", { class: "details" }, rows.flatMap(([k, v]) => [h("dt", { text: k }), h("dd", { text: v })])),
    bank,
    actions.length ? h("div", { class: "actions" }, actions) : null);
}

function post(w, action, body) {
  return api(`/api/admin/billing/withdrawals/${w.id}/${action}`, { method: "POST", body });
}

/** Run one action on a withdrawal: the card shows its new state in place (until the list is filtered again). */
async function runAction(w, button, run) {
  await busy(button, async () => {
    try {
      const { withdrawal } = await run();
      const text = {
        scheduled: `W-${w.id}: invoice received. Payout on ${formatDay(withdrawal.payout_date)}.`,
        paid: `W-${w.id} is paid.`,
        cancelled: `W-${w.id} is cancelled: the amount is back in the therapist's available earnings.`,
      }[withdrawal.status] || `W-${w.id} is now ${withdrawal.status}.`;
      say($("#withdrawals-notice"), text, "ok");
      document.querySelector(`[data-withdrawal-id="${w.id}"]`)?.replaceWith(card(withdrawal));
    } catch (err) {
      const text = err.code === "not_due"
        ? `W-${w.id} is not due yet: it can be paid from ${formatDay(err.details.payout_date)}.`
        : err.code ? errorText(err) : err.message;
      say($("#withdrawals-notice"), text, "error");
    }
  });
}

$("#withdrawal-status").addEventListener("change", () => {
  say($("#withdrawals-notice"), "");
  loadWithdrawals();
});

// ------------------------------------------------------------------ refunds of a session's charge

let looked = null; // the summary of the session shown
let refundAttempt = null; // {callId, pence, key}

function showCharges(summary) {
  looked = summary;
  const rows = [
    ["Session", `${summary.call_id}`],
    ["Rate", formatRate(summary.rate_pence)],
    ["Minutes charged", `${summary.minutes_charged}`],
    ["Charged to the client", formatMoney(summary.charged_pence)],
    ["Therapist's share", formatMoney(summary.therapist_pence)],
    ["Refunded so far", formatMoney(summary.refunded_pence)],
    ["Left to refund", formatMoney(summary.refundable_pence)],
    ["Ended because the balance ran out", summary.ended_for_balance ? "yes" : "no"],
  ];
  clear($("#call-summary")).append(...rows.flatMap(([k, v]) => [h("dt", { text: k }), h("dd", { text: v })]));
  $("#refund-amount").value = (summary.refundable_pence / 100).toFixed(2);
  $("#refund-form").hidden = summary.refundable_pence <= 0;
  $("#call-charges").hidden = false;
}

$("#lookup-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const id = $("#lookup-call").value.trim();
  say($("#lookup-error"), "");
  say($("#refund-status"), "");
  $("#call-charges").hidden = true;
  if (!/^\d{1,12}$/.test(id)) {
    say($("#lookup-error"), "Enter the session's number (it is in the address of its page: /calls/12).", "error");
    return;
  }
  await busy(event.target.querySelector("button"), async () => {
    try {
      showCharges(await api(`/api/admin/billing/calls/${id}`));
    } catch (err) {
      say($("#lookup-error"), err.code === "not_found" ? `Session ${id} was not charged, or does not exist.` : errorText(err), "error");
    }
  });
});

$("#refund-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = event.target;
  formError(form, null);
  say($("#refund-status"), "");
  const pence = parsePounds($("#refund-amount").value);
  if (!pence || pence > looked.refundable_pence) {
    formError(form, { message: `Enter an amount up to ${formatMoney(looked.refundable_pence)}.`, details: { field: "amount_pence" } });
    return;
  }
  if (!refundAttempt || refundAttempt.callId !== looked.call_id || refundAttempt.pence !== pence) {
    refundAttempt = { callId: looked.call_id, pence, key: crypto.randomUUID() };
  }
  const body = { amount_pence: pence };
  const reason = $("#refund-reason").value.trim();
  if (reason) body.reason = reason;
  await busy(form.querySelector("button"), async () => {
    try {
      const summary = await api(`/api/admin/billing/calls/${looked.call_id}/refunds`, {
        method: "POST", body, headers: { "Idempotency-Key": refundAttempt.key },
      });
      refundAttempt = null;
      showCharges({ ...looked, ...summary });
      $("#refund-reason").value = "";
      say($("#refund-status"), `${formatMoney(pence)} refunded to the client's wallet.`);
    } catch (err) {
      formError(form, err.code === "refund_too_large"
        ? { message: `That is more than is left to refund (${formatMoney(err.details.refundable_pence || 0)}).`, details: { field: "amount_pence" } }
        : err);
    }
  });
});

// ------------------------------------------------------------------ credits

let creditAttempt = null; // {clientId, pence, key}

$("#credit-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = event.target;
  formError(form, null);
  say($("#credit-status"), "");
  const clientId = $("#credit-client").value.trim();
  const pence = parsePounds($("#credit-amount").value);
  if (!/^\d{1,12}$/.test(clientId)) {
    formError(form, { message: "Enter the client's account number.", details: { field: "client_id" } });
    return;
  }
  if (!pence) {
    formError(form, { message: "Enter an amount in pounds, such as 10 or 12.50.", details: { field: "amount_pence" } });
    return;
  }
  if (!creditAttempt || creditAttempt.clientId !== clientId || creditAttempt.pence !== pence) {
    creditAttempt = { clientId, pence, key: crypto.randomUUID() };
  }
  const body = { amount_pence: pence };
  const memo = $("#credit-memo").value.trim();
  if (memo) body.memo = memo;
  await busy(form.querySelector("button"), async () => {
    try {
      const done = await api(`/api/admin/billing/clients/${clientId}/credits`, {
        method: "POST", body, headers: { "Idempotency-Key": creditAttempt.key },
      });
      creditAttempt = null;
      form.reset();
      say($("#credit-status"), `${formatMoney(pence)} credited. The client's balance is now ${formatMoney(done.balance_pence)}.`);
    } catch (err) {
      formError(form, err.code === "not_found"
        ? { message: "There is no client with that account number.", details: { field: "client_id" } } : err);
    }
  });
});

// ------------------------------------------------------------------ disputes

async function loadDisputes() {
  const status = $("#dispute-status").value;
  try {
    const { disputes } = await api(`/api/admin/billing/disputes${status ? `?status=${encodeURIComponent(status)}` : ""}`);
    const body = clear($("#disputes"));
    $("#disputes-empty").hidden = disputes.length > 0;
    $("#disputes-table").hidden = disputes.length === 0;
    for (const d of disputes) {
      body.append(h("tr", { dataset: { disputeId: d.id } },
        h("td", { class: "when", text: formatDateTime(d.created_at) }),
        h("td", { text: `Client account ${d.client_id} (top-up ${d.topup_id})` }),
        h("td", { class: "num", text: formatMoney(d.amount_pence) }),
        h("td", { class: "num", text: formatMoney(d.frozen_pence) }),
        h("td", { text: d.reason || "—" }),
        h("td", {}, h("span", { class: `badge ${d.status === "open" ? "warn" : d.status === "won" ? "ok" : "danger"}`, text: d.status }))));
    }
  } catch (err) {
    say($("#disputes-notice"), errorText(err), "error");
  }
}

$("#dispute-status").addEventListener("change", loadDisputes);

pageReady();
