// /verify-email#token=…: post the e-mailed token back (it never reaches the server in the URL).
import { api } from "../lib/api.js";
import { $, errorText, pageReady, say, takeFragmentToken } from "../lib/ui.js";

const state = $("#verify-state");
const token = takeFragmentToken();
if (!token) {
  say(state, "This link is incomplete. Open the link from the e-mail again, or ask for a new one after signing in.", "error");
} else {
  try {
    await api("/api/auth/verify-email", { method: "POST", body: { token }, signInOnExpiry: false });
    say(state, "Thank you: your e-mail address is verified.", "ok");
  } catch (err) {
    say(state, errorText(err), "error");
  }
}

pageReady();
