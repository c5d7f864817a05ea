// The client's wallet as the pages show it: the balance kept live (GET /api/billing/wallet, then every
// `billing.balance` pushed to this user, read again after a reconnect), and the test-mode banner.
import { api } from "./api.js";
import { formatRate, minutesFor } from "./ui.js";

/**
 * Follow the balance: `onChange({balance_pence, config, wallet, topups})` after the first read, on every
 * `billing.balance` and after each reconnect (a push may have been missed). `config` is the wallet's config
 * (limits, test mode, typical rate). Resolves to the first read; rejects when it fails.
 */
export async function followBalance(socket, onChange) {
  let state = await api("/api/billing/wallet");
  let connectedBefore = socket.connected;
  const emit = () => onChange({ balance_pence: state.wallet.balance_pence, ...state });
  socket.on("billing.balance", ({ balance_pence: balance }) => {
    state = { ...state, wallet: { ...state.wallet, balance_pence: balance } };
    emit();
  });
  socket.on("connect", async () => {
    if (!connectedBefore) {
      connectedBefore = true;
      return;
    }
    try {
      state = await api("/api/billing/wallet");
      emit();
    } catch {
      /* keep what we know; the next push updates it */
    }
  });
  emit();
  return state;
}

/** "about 20 minutes at a typical rate of £1.00 per minute", or "" when the server knows no typical rate. */
export function typicalMinutes(pence, config) {
  const rate = config?.typical_rate_pence;
  return rate ? `${minutesFor(pence, rate)} at a typical rate of ${formatRate(rate)}` : "";
}

/** The banner's text when payments go to Stripe's test mode or the local stand-in. */
export const TEST_MODE_TEXT = "TEST MODE — no money moves. Payments go to a test payment server: use a test card "
  + "such as 4242 4242 4242 4242.";
