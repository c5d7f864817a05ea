// "Please verify your e-mail address": shown until the address is verified, with a button that sends the link again
// (POST /api/auth/resend-verification, rate-limited by the server).
import { api } from "./api.js";
import { busy, errorText, h } from "./ui.js";

/** The notice, with `why` saying what waits on the address (a sentence, or ""). */
export function verifyEmailNotice(why = "") {
  const status = h("span", { role: "status" });
  const resend = h("button", { type: "button", class: "link", text: "Send the link again" });
  resend.addEventListener("click", () => busy(resend, async () => {
    try {
      await api("/api/auth/resend-verification", { method: "POST" });
      status.textContent = " Sent.";
    } catch (err) {
      status.textContent = ` ${errorText(err)}`;
    }
  }));
  return h("p", { id: "verify-notice", class: "notice warn" },
    h("span", { text: `Please verify your e-mail address with the link we sent you.${why ? " " + why : ""}` }),
    " ", resend, status);
}
