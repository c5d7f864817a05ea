// The client's wallet (/wallet): the balance (live through billing.balance), a top-up paid with Stripe's card Element
// (the card goes from Stripe.js to Stripe, never through this page's code or our server; the PaymentIntent's client
// secret comes from POST /api/billing/topups and the wallet is credited when Stripe's webhook reaches the server),
// recent card payments, the history of money in and out (and its CSV), and unused balance back to the card.
import { api, download, requireUser } from "../lib/api.js";
import { connectSocket } from "../lib/socket.js";
import {
  $, busy, clear, errorText, formatDateTime, formatMoney, formError, h, initChrome, pageReady, parsePounds, say,
} from "../lib/ui.js";
import { TEST_MODE_TEXT, followBalance, typicalMinutes } from "../lib/wallet.js";

const me = await requireUser(["client"]);
initChrome(me);

let config = null;
let balance = 0;
let stripe = null;
let card = null;
let cardState = { complete: false, empty: true, error: undefined };
let attempt = null; // {pence, key}: the top-up being paid; a retry with another card reuses its Idempotency-Key
let awaiting = null; // the top-up whose webhook we wait for after the card was accepted
const credited = new Set(); // top-ups the server said succeeded
const topups = new Map(); // id -> TopUp, newest first when listed
let history = []; // ledger entries loaded so far, newest first
let nextBefore = null;

const socket = connectSocket();
socket.on("billing.topup", ({ topup }) => topupChanged(topup));

try {
  const first = await followBalance(socket, (state) => {
    config = state.config;
    showBalance(state.wallet);
    for (const t of state.topups || []) {
      // after a reconnect: a top-up that changed while its push was missed is handled as if pushed
      if (topups.has(t.id) && topups.get(t.id).status !== t.status) topupChanged(t);
      else topups.set(t.id, t);
    }
    renderTopups();
  });
  setup(first);
} catch (err) {
  pageError(errorText(err));
}
loadHistory();

/** A message of our own on the form's amount field. */
function amountError(form, message) {
  formError(form, { message, details: { field: "amount_pence" } });
}

function pageError(text) {
  say($("#page-error"), text, "error");
  $("#page-error").hidden = !text;
}

// ------------------------------------------------------------------ balance

function showBalance(wallet) {
  balance = wallet.balance_pence;
  $("#balance").textContent = formatMoney(balance);
  const minutes = typicalMinutes(balance, config);
  $("#balance-minutes").textContent = minutes ? `That is ${minutes}.` : "";
  const frozen = wallet.frozen_pence || 0;
  $("#frozen").hidden = !frozen;
  $("#frozen").textContent = frozen
    ? `${formatMoney(frozen)} is on hold while your bank looks into a disputed card payment.` : "";
}

// ------------------------------------------------------------------ set-up: test mode, limits, Stripe.js

function setup(state) {
  const c = state.config;
  if (c.test_mode) {
    $("#test-mode").textContent = TEST_MODE_TEXT;
    $("#test-mode").hidden = false;
  }
  $("#topup-limits").textContent = `Between ${formatMoney(c.topup_min_pence)} and ${formatMoney(c.topup_max_pence)}; `
    + `your wallet can hold up to ${formatMoney(c.wallet_max_pence)}.`;
  $("#topup-amount").placeholder = `for example ${formatMoney(2000)}`;
  if (!c.payments_available) {
    $("#payments-off").hidden = false;
    $("#topup-form").hidden = true;
    return;
  }
  $("#refund-section").hidden = false;
  loadStripe(c).catch(() => {
    say($("#card-error"), "The card form could not be loaded. Check your connection and reload the page.", "error");
    $("#topup-pay").disabled = true;
  });
}

function loadStripeJs(url) {
  if (window.Stripe) return Promise.resolve(window.Stripe);
  return new Promise((resolve, reject) => {
    const script = document.createElement("script");
    script.src = url;
    script.addEventListener("load", () => (window.Stripe ? resolve(window.Stripe) : reject(new Error("no Stripe"))));
    script.addEventListener("error", () => reject(new Error("Stripe.js did not load")));
    document.head.append(script);
  });
}

async function loadStripe(c) {
  const Stripe = await loadStripeJs(c.stripe_js_url);
  stripe = Stripe(c.publishable_key);
  card = stripe.elements().create("card", {
    hidePostalCode: true,
    style: { base: { fontSize: "16px", color: "#1d2430", fontFamily: "system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif" } },
  });
  card.on("change", (event) => {
    cardState = event;
    say($("#card-error"), event.error ? event.error.message : "", "error");
  });
  card.mount("#card-element");
}

// ------------------------------------------------------------------ top-up

$("#topup-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = event.target;
  formError(form, null);
  const pence = parsePounds($("#topup-amount").value);
  if (pence === null || pence < config.topup_min_pence || pence > config.topup_max_pence) {
    amountError(form, `Enter an amount between ${formatMoney(config.topup_min_pence)} and ${formatMoney(config.topup_max_pence)}, such as 20 or 20.50.`);
    return;
  }
  if (!stripe || !card) return;
  if (!cardState.complete) {
    say($("#card-error"), cardState.error?.message || "Please enter your card details.", "error");
    card.focus();
    return;
  }
  if (!attempt || attempt.pence !== pence) attempt = { pence, key: crypto.randomUUID() };
  await busy($("#topup-pay"), () => pay(form, attempt));
});

async function pay(form, current) {
  say($("#topup-status"), "Sending your payment to the card's bank…", "info");
  let created;
  try {
    created = await api("/api/billing/topups", {
      method: "POST", body: { amount_pence: current.pence }, headers: { "Idempotency-Key": current.key },
    });
  } catch (err) {
    say($("#topup-status"), "");
    if (err.code === "wallet_limit") {
      const room = Math.max(0, (err.details.max_pence ?? config.wallet_max_pence) - (err.details.balance_pence ?? balance));
      amountError(form, `Your wallet can hold at most ${formatMoney(config.wallet_max_pence)}: you can add up to ${formatMoney(room)} now.`);
    } else {
      formError(form, err);
    }
    return;
  }
  const id = created.topup.id;
  topups.set(id, created.topup);
  awaiting = id;
  renderTopups();
  const result = await stripe.confirmCardPayment(created.client_secret, { payment_method: { card } });
  if (result.error) {
    awaiting = null;
    const reason = result.error.message || "The payment did not go through.";
    say($("#topup-status"), `${reason} Nothing was taken and your balance is unchanged. You can try again or use another card.`, "error");
    return;
  }
  attempt = null; // the next top-up is a new one
  card.clear();
  $("#topup-amount").value = "";
  if (credited.has(id)) finished(topups.get(id));
  else {
    clear($("#topup-status")).append(h("span", { class: "spinner", "aria-hidden": "true" }),
      ` Payment of ${formatMoney(current.pence)} accepted by your card. Pending: it is added to your balance as soon as our payment provider confirms it.`);
    $("#topup-status").className = "notice info";
  }
}

function finished(topup) {
  awaiting = null;
  say($("#topup-status"), `${formatMoney(topup.amount_pence)} was added to your wallet.`, "ok");
}

function topupChanged(topup) {
  topups.set(topup.id, topup);
  renderTopups();
  if (topup.status === "succeeded") {
    credited.add(topup.id);
    if (topup.id === awaiting && !$("#topup-pay").disabled) finished(topup);
    loadHistory();
  } else if (topup.status === "failed" && topup.id === awaiting && !$("#topup-pay").disabled) {
    awaiting = null;
    say($("#topup-status"), `${topup.failure_message || "The payment did not go through."} Your balance is unchanged.`, "error");
  }
}

function renderTopups() {
  const list = clear($("#topups"));
  const rows = [...topups.values()].sort((a, b) => b.id - a.id).slice(0, 5);
  if (!rows.length) list.append(h("li", { class: "muted", text: "No card payments yet." }));
  for (const t of rows) {
    const [label, kind] = {
      succeeded: ["Added", "ok"], failed: ["Failed", "danger"], pending: ["Pending", "warn"], creating: ["Pending", "warn"],
    }[t.status] || [t.status, ""];
    list.append(h("li", { dataset: { topupId: t.id, status: t.status } },
      h("strong", { text: formatMoney(t.amount_pence) }),
      h("span", { class: `badge ${kind}`, text: label }),
      t.status === "failed" && t.failure_message ? h("span", { text: t.failure_message }) : null,
      t.refunded_pence ? h("span", { class: "muted", text: `${formatMoney(t.refunded_pence)} refunded to the card` }) : null,
      h("span", { class: "when", text: formatDateTime(t.created_at) })));
  }
}

// ------------------------------------------------------------------ history

const WHAT = {
  topup: "Top-up by card",
  grant: "Credit to your wallet",
  call_refund: "Refund for a session",
  card_refund: "Refund to your card",
  card_refund_failed: "Refund to card failed: back in your wallet",
  dispute_freeze: "On hold: disputed card payment",
  dispute_release: "Released: card dispute closed",
  dispute_lost: "Card dispute: amount returned to your bank",
};

async function loadHistory(more = false) {
  try {
    const query = more && nextBefore ? `?limit=100&before=${nextBefore}` : "?limit=100";
    const page = await api(`/api/billing/transactions${query}`);
    history = more ? history.concat(page.transactions) : page.transactions;
    nextBefore = page.next_before;
    renderHistory();
  } catch (err) {
    pageError(errorText(err));
  }
}

/** The wallet's entries, newest first, a session's per-minute charges gathered into one line. */
function historyRows() {
  const rows = [];
  for (const entry of history.filter((e) => e.account === "client_wallet")) {
    const last = rows[rows.length - 1];
    if (entry.kind === "call_charge" && last?.kind === "call_charge" && last.call_id === entry.call_id) {
      last.amount_pence += entry.amount_pence;
      last.minutes += 1;
      last.at = entry.at; // the session's first minute
      continue;
    }
    rows.push({ ...entry, minutes: entry.kind === "call_charge" ? 1 : 0 });
  }
  return rows;
}

function renderHistory() {
  const body = clear($("#history"));
  const rows = historyRows();
  $("#history-empty").hidden = rows.length > 0;
  $("#history-table").hidden = rows.length === 0;
  $("#history-more").hidden = !nextBefore;
  for (const row of rows) {
    let what = WHAT[row.kind] || row.description;
    if (row.kind === "call_charge") {
      what = h("a", { href: `/calls/${row.call_id}`, text: `Session: ${row.minutes} minute${row.minutes === 1 ? "" : "s"}` });
    } else if (row.kind === "call_refund" && row.call_id) {
      what = h("a", { href: `/calls/${row.call_id}`, text: WHAT.call_refund });
    }
    body.append(h("tr", { dataset: { kind: row.kind } },
      h("td", { class: "when", text: formatDateTime(row.at) }),
      h("td", {}, what),
      h("td", { class: `num amount ${row.amount_pence < 0 ? "debit" : "credit"}`, text: formatMoney(row.amount_pence, { sign: true }) })));
  }
}

$("#history-more").addEventListener("click", (event) => busy(event.target, () => loadHistory(true)));

$("#download-csv").addEventListener("click", (event) => busy(event.target, async () => {
  try {
    await download("/api/billing/transactions.csv", "transactions.csv");
  } catch (err) {
    pageError(errorText(err));
  }
}));

// ------------------------------------------------------------------ refund to the card

$("#refund-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = event.target;
  formError(form, null);
  say($("#refund-status"), "");
  const pence = parsePounds($("#refund-amount").value);
  if (!pence || pence > balance) {
    amountError(form, `Enter an amount up to your balance of ${formatMoney(balance)}.`);
    return;
  }
  await busy(form.querySelector("button"), async () => {
    try {
      const done = await api("/api/billing/refunds", { method: "POST", body: { amount_pence: pence } });
      let text = `${formatMoney(done.refunded_pence)} is on its way back to your card.`;
      if (done.failed_pence) text += ` ${formatMoney(done.failed_pence)} could not be refunded and stays in your wallet.`;
      say($("#refund-status"), text);
      $("#refund-amount").value = "";
      loadHistory();
    } catch (err) {
      if (err.code === "refund_too_large") {
        amountError(form, `Only money paid in by card, and not already refunded, can go back to a card: at most ${formatMoney(err.details.refundable_pence || 0)} now.`);
      } else {
        formError(form, err);
      }
    }
  });
});

pageReady();
