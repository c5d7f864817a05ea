/*
 * A stand-in for Stripe.js v3, served by the local Stripe-compatible server (billing/localstripe_ext.py) at
 * `<its url>/js.stripe.com/v3/` in place of localstripe's own, for the embedded test mode and the end-to-end tests.
 *
 * It keeps the shape of the parts of Stripe.js the wallet page uses, so the page runs unchanged against Stripe:
 *   const stripe = Stripe("pk_test_…");
 *   const card = stripe.elements().create("card", {hidePostalCode: true});
 *   card.mount("#card-element"); card.on("change", (e) => …e.error?.message, e.complete…);
 *   const {paymentIntent, error} = await stripe.confirmCardPayment(clientSecret, {payment_method: {card}});
 * As with Stripe, the card fields live in an iframe served by the Stripe server (elements-inner-card.html): the
 * page's own scripts never see the card number; the iframe sends it straight to the server's
 * `POST /v1/payment_intents/{id}/confirm` with the publishable key and the client secret, as Stripe.js does.
 * Cards that need 3D Secure get a confirm-or-fail dialog, as in localstripe's stand-in.
 *
 * localstripe's own stand-in cannot pay a PaymentIntent made without a payment method (the flow of this project):
 * its confirmCardPayment ignores the card and only answers a 3D Secure challenge. See localstripe_ext.py.
 */
(function () {
  "use strict";

  const BASE = document.currentScript.src.replace(/\/js\.stripe\.com\/v3\/?(\?.*)?$/, "");
  const ORIGIN = new URL(BASE).origin;
  let framesMade = 0;

  function post(path, fields) {
    return fetch(BASE + path, {
      method: "POST",
      headers: { "Content-Type": "application/x-www-form-urlencoded" },
      body: new URLSearchParams(fields).toString(),
    }).then(async (response) => ({ status: response.status, body: await response.json().catch(() => ({})) }));
  }

  function intentId(clientSecret) {
    const match = /^(pi_\w+?)_secret_/.exec(clientSecret || "");
    if (!match) throw new Error("Invalid value for confirmCardPayment: clientSecret should be a client secret of the form ${id}_secret_${secret}.");
    return match[1];
  }

  /** Stripe's answer as confirmCardPayment resolves it: {paymentIntent} or {error}. */
  function outcome({ status, body }) {
    if (status !== 200 || body.error) {
      const error = { type: "api_error", message: "The payment could not be made.", ...(body.error || {}) };
      return { error };
    }
    if (body.status === "requires_payment_method") { // 3D Secure failed, or the attempt was refused after it
      const last = body.last_payment_error || {};
      return { error: { type: "card_error", code: last.code || "payment_intent_payment_attempt_failed",
        message: last.message || "The payment did not go through.", payment_intent: body } };
    }
    return { paymentIntent: body };
  }

  /** The 3D Secure stand-in: a modal dialog in the page, "Complete authentication" or "Fail authentication". */
  function authenticate() {
    return new Promise((resolve) => {
      const dialog = document.createElement("dialog");
      dialog.setAttribute("aria-label", "3D Secure test authentication");
      Object.assign(dialog.style, { padding: "1em 1.2em", border: "3px solid #ccc", borderRadius: "8px", textAlign: "center" });
      const text = document.createElement("p");
      text.textContent = "3D Secure (test mode): complete or fail the authentication of this payment.";
      const done = (ok) => { dialog.close(); dialog.remove(); resolve(ok); };
      const yes = document.createElement("button");
      yes.type = "button";
      yes.textContent = "Complete authentication";
      yes.addEventListener("click", () => done(true));
      const no = document.createElement("button");
      no.type = "button";
      no.textContent = "Fail authentication";
      no.addEventListener("click", () => done(false));
      dialog.addEventListener("cancel", (event) => { event.preventDefault(); done(false); });
      dialog.append(text, yes, " ", no);
      document.body.append(dialog);
      dialog.showModal();
      yes.focus();
    });
  }

  class CardElement {
    constructor(key, options) {
      this._key = key;
      this._options = options || {};
      this._listeners = {};
      this._waiting = new Map();
      this._asked = 0;
      this._state = { empty: true, complete: false, error: undefined };
      this._frame = null;
      this._box = null;
      this._onMessage = (event) => this._message(event);
    }

    mount(target) {
      const box = typeof target === "string" ? document.querySelector(target) : target;
      if (!(box instanceof window.Element)) {
        throw new Error("Invalid DOM element. Make sure to call mount() with a valid DOM element or selector.");
      }
      if (this._frame) throw new Error("This Element is already mounted. Use `unmount()` to unmount the Element before re-mounting.");
      const frame = document.createElement("iframe");
      frame.name = `__privateStripeFrame${++framesMade}`;
      frame.title = "Secure card payment input frame";
      frame.setAttribute("frameborder", "0");
      frame.setAttribute("scrolling", "no");
      frame.setAttribute("allowtransparency", "true");
      Object.assign(frame.style, { border: "none", margin: "0", padding: "0", width: "1px", minWidth: "100%",
        height: "1.6em", display: "block", overflow: "hidden" });
      const params = new URLSearchParams({ origin: location.origin, postal: this._options.hidePostalCode ? "0" : "1" });
      frame.src = `${BASE}/js.stripe.com/v3/elements-inner-card.html#${params}`;
      this._frame = frame;
      this._box = box;
      window.addEventListener("message", this._onMessage);
      box.classList.add("StripeElement", "StripeElement--empty");
      box.append(frame);
    }

    unmount() {
      window.removeEventListener("message", this._onMessage);
      this._frame?.remove();
      this._box?.classList.remove("StripeElement", "StripeElement--empty", "StripeElement--focus",
        "StripeElement--invalid", "StripeElement--complete");
      this._frame = this._box = null;
    }

    destroy() {
      this.unmount();
    }

    on(event, handler) {
      (this._listeners[event] = this._listeners[event] || []).push(handler);
      return this;
    }

    off(event, handler) {
      this._listeners[event] = (this._listeners[event] || []).filter((h) => h !== handler);
      return this;
    }

    focus() { this._send({ type: "focus" }); }
    blur() { this._send({ type: "blur" }); }
    clear() { this._send({ type: "clear" }); }
    update() { /* options that only change the look: nothing to do here */ }

    _send(message) {
      this._frame?.contentWindow?.postMessage({ localstripe: true, ...message }, ORIGIN);
    }

    _emit(event, payload) {
      for (const handler of this._listeners[event] || []) handler(payload);
    }

    _message(event) {
      if (!this._frame || event.origin !== ORIGIN || event.source !== this._frame.contentWindow) return;
      const data = event.data || {};
      if (!data.localstripe) return;
      const box = this._box;
      if (data.type === "height") {
        this._frame.style.height = `${data.height}px`;
      } else if (data.type === "ready") {
        this._emit("ready", { elementType: "card" });
      } else if (data.type === "focus" || data.type === "blur") {
        box.classList.toggle("StripeElement--focus", data.type === "focus");
        this._emit(data.type, { elementType: "card" });
      } else if (data.type === "change") {
        this._state = data.state;
        box.classList.toggle("StripeElement--empty", data.state.empty);
        box.classList.toggle("StripeElement--complete", data.state.complete);
        box.classList.toggle("StripeElement--invalid", Boolean(data.state.error));
        this._emit("change", { elementType: "card", ...data.state });
      } else if (data.type === "response") {
        this._waiting.get(data.id)?.(data.response);
        this._waiting.delete(data.id);
      }
    }

    /** The frame confirms the PaymentIntent with the card it holds; resolves to {status, body}. */
    _confirm(clientSecret, billingDetails) {
      if (!this._frame) return Promise.reject(new Error("The card Element is not mounted."));
      const id = ++this._asked;
      return new Promise((resolve) => {
        this._waiting.set(id, resolve);
        this._send({ type: "confirm", id, key: this._key, clientSecret, billingDetails: billingDetails || null });
      });
    }
  }

  window.Stripe = function Stripe(key) {
    if (typeof key !== "string" || !key.startsWith("pk_")) {
      throw new Error("Invalid API Key provided: use your publishable key (pk_…).");
    }
    let card = null;
    return {
      elements() {
        return {
          create(type, options) {
            if (type !== "card") throw new Error(`This stand-in for Stripe.js only has the card Element, not ${type}.`);
            if (card) throw new Error("Can only create one Element of type card.");
            card = new CardElement(key, options);
            return card;
          },
          getElement(type) {
            return type === "card" ? card : null;
          },
        };
      },

      async confirmCardPayment(clientSecret, data = {}) {
        let intent;
        try {
          intent = intentId(clientSecret);
        } catch (err) {
          return { error: { type: "validation_error", message: err.message } };
        }
        const method = data.payment_method;
        let answer;
        try {
          if (method && typeof method === "object" && method.card instanceof CardElement) {
            answer = await method.card._confirm(clientSecret, method.billing_details);
          } else {
            const fields = { key, client_secret: clientSecret };
            if (typeof method === "string") fields.payment_method = method;
            answer = await post(`/v1/payment_intents/${intent}/confirm`, fields);
          }
          if (answer.status === 200 && answer.body.status === "requires_action") {
            const ok = await authenticate();
            answer = await post(`/v1/payment_intents/${intent}/_authenticate?success=${ok}`,
              { key, client_secret: clientSecret });
          }
        } catch (err) {
          return { error: { type: "api_connection_error", message: "The payment server could not be reached. Please try again." } };
        }
        return outcome(answer);
      },

      handleCardPayment(clientSecret, element, data = {}) { // deprecated in Stripe.js, kept for old pages
        return this.confirmCardPayment(clientSecret, { payment_method: { card: element, ...(data.payment_method_data || {}) } });
      },
    };
  };
})();
