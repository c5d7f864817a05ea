// The card Element's frame (see stripe-v3.js): the card fields, served by the local Stripe server and shown in an
// iframe, so the page around it never sees the card. It tells the page only what Stripe's Element tells it
// (empty, complete, the validation error, the brand) and, when asked, confirms the PaymentIntent itself.
(function () {
  "use strict";

  const params = new URLSearchParams(location.hash.replace(/^#/, ""));
  const PARENT = params.get("origin");
  const fields = {
    number: document.getElementById("number"),
    expiry: document.getElementById("expiry"),
    cvc: document.getElementById("cvc"),
    postal: document.getElementById("postal"),
  };
  const withPostal = params.get("postal") !== "0";
  if (!withPostal) fields.postal.remove();
  const order = ["number", "expiry", "cvc"].concat(withPostal ? ["postal"] : []);
  const touched = new Set();

  function tell(message) {
    if (PARENT) window.parent.postMessage({ localstripe: true, ...message }, PARENT);
  }

  const digits = (text) => (text || "").replace(/\D/g, "");

  function brand(number) {
    if (/^4/.test(number)) return "visa";
    if (/^(5[1-5]|2[2-7])/.test(number)) return "mastercard";
    if (/^3[47]/.test(number)) return "amex";
    return number ? "unknown" : "unknown";
  }

  function luhn(number) {
    let sum = 0;
    for (let i = 0; i < number.length; i++) {
      let d = Number(number[number.length - 1 - i]);
      if (i % 2 === 1) {
        d *= 2;
        if (d > 9) d -= 9;
      }
      sum += d;
    }
    return sum % 10 === 0;
  }

  function expiryParts() {
    const d = digits(fields.expiry.value);
    return { month: Number(d.slice(0, 2)), year: Number(d.slice(2, 4)), length: d.length };
  }

  /** Each field's problem as Stripe words it: {code, message, incomplete} or null when it is fine. */
  function problem(name) {
    if (name === "number") {
      const n = digits(fields.number.value);
      if (n.length < 16) return { code: "incomplete_number", message: "Your card number is incomplete.", incomplete: true };
      if (n.length > 16 || !luhn(n)) return { code: "invalid_number", message: "Your card number is invalid." };
    } else if (name === "expiry") {
      const { month, year, length } = expiryParts();
      if (length >= 2 && (month < 1 || month > 12)) {
        return { code: "invalid_expiry_month", message: "Your card's expiration date is invalid." };
      }
      if (length < 4) return { code: "incomplete_expiry", message: "Your card's expiration date is incomplete.", incomplete: true };
      const now = new Date();
      const thisYear = now.getFullYear() % 100;
      if (year < thisYear || (year === thisYear && month < now.getMonth() + 1)) {
        return { code: "invalid_expiry_year_past", message: "Your card's expiration year is in the past." };
      }
    } else if (name === "cvc") {
      if (digits(fields.cvc.value).length < 3) {
        return { code: "incomplete_cvc", message: "Your card's security code is incomplete.", incomplete: true };
      }
    } else if (name === "postal") {
      if (fields.postal.value.trim().length < 3) {
        return { code: "incomplete_zip", message: "Your postal code is incomplete.", incomplete: true };
      }
    }
    return null;
  }

  function state() {
    let error;
    for (const name of order) {
      const p = problem(name);
      // like Stripe: an incomplete field is an error only once the user has left it
      const shown = p && (!p.incomplete || touched.has(name));
      fields[name].setAttribute("aria-invalid", shown ? "true" : "false");
      if (shown && !error) error = { type: "validation_error", code: p.code, message: p.message };
    }
    const number = digits(fields.number.value);
    return {
      empty: order.every((name) => !fields[name].value),
      complete: order.every((name) => !problem(name)),
      error,
      brand: brand(number),
      value: withPostal ? { postalCode: fields.postal.value.trim() } : {},
    };
  }

  function changed() {
    tell({ type: "change", state: state() });
  }

  function format(name) {
    const el = fields[name];
    if (name === "number") {
      el.value = digits(el.value).slice(0, 16).replace(/(\d{4})(?=\d)/g, "$1 ");
    } else if (name === "expiry") {
      let d = digits(el.value).slice(0, 4);
      if (d.length === 1 && Number(d) > 1) d = `0${d}`;
      el.value = d.length > 2 ? `${d.slice(0, 2)} / ${d.slice(2)}` : d;
    } else if (name === "cvc") {
      el.value = digits(el.value).slice(0, 4);
    }
  }

  for (const name of order) {
    const el = fields[name];
    el.addEventListener("input", () => {
      format(name);
      changed();
      const next = order[order.indexOf(name) + 1];
      if (next && !problem(name) && name !== "postal") fields[next].focus();
    });
    el.addEventListener("focus", () => tell({ type: "focus" }));
    el.addEventListener("blur", () => {
      if (el.value) touched.add(name);
      changed();
      setTimeout(() => { if (!order.some((n) => fields[n] === document.activeElement)) tell({ type: "blur" }); }, 0);
    });
  }

  function flatten(prefix, value, out) {
    if (value === null || value === undefined) return out;
    if (typeof value === "object") {
      for (const [k, v] of Object.entries(value)) flatten(`${prefix}[${k}]`, v, out);
    } else {
      out.append(prefix, String(value));
    }
    return out;
  }

  async function confirm({ id, key, clientSecret, billingDetails }) {
    for (const name of order) touched.add(name);
    const current = state();
    tell({ type: "change", state: current });
    if (!current.complete) {
      const first = order.map(problem).find(Boolean);
      return tell({ type: "response", id, response: { status: 400,
        body: { error: { type: "validation_error", code: first.code, message: first.message } } } });
    }
    const match = /^(pi_\w+?)_secret_/.exec(clientSecret || "");
    const { month, year } = expiryParts();
    const body = new URLSearchParams({ key, client_secret: clientSecret, "payment_method_data[type]": "card",
      "payment_method_data[card][number]": digits(fields.number.value),
      "payment_method_data[card][exp_month]": String(month), "payment_method_data[card][exp_year]": String(2000 + year),
      "payment_method_data[card][cvc]": digits(fields.cvc.value) });
    const details = { ...(billingDetails || {}) };
    if (withPostal) details.address = { ...(details.address || {}), postal_code: fields.postal.value.trim() };
    flatten("payment_method_data[billing_details]", Object.keys(details).length ? details : null, body);
    let response;
    try {
      const answer = await fetch(`/v1/payment_intents/${match ? match[1] : "invalid"}/confirm`, {
        method: "POST", headers: { "Content-Type": "application/x-www-form-urlencoded" }, body: body.toString(),
      });
      response = { status: answer.status, body: await answer.json().catch(() => ({})) };
    } catch {
      response = { status: 0, body: { error: { type: "api_connection_error",
        message: "The payment server could not be reached. Please try again." } } };
    }
    tell({ type: "response", id, response });
  }

  window.addEventListener("message", (event) => {
    if (event.origin !== PARENT || event.source !== window.parent) return;
    const data = event.data || {};
    if (!data.localstripe) return;
    if (data.type === "confirm") confirm(data);
    else if (data.type === "focus") fields.number.focus();
    else if (data.type === "blur") document.activeElement?.blur();
    else if (data.type === "clear") {
      for (const name of order) fields[name].value = "";
      touched.clear();
      changed();
    }
  });

  const form = document.querySelector("form");
  new ResizeObserver(() => tell({ type: "height", height: Math.ceil(form.getBoundingClientRect().height) }))
    .observe(form);
  tell({ type: "ready" });
  changed();
})();
