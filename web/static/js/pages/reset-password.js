// /reset-password#token=…: choose a new password with the e-mailed token.
import { api, clearToken } from "../lib/api.js";
import { $, busy, formError, pageReady, say, takeFragmentToken } from "../lib/ui.js";

const token = takeFragmentToken();
const form = $("#new-password-form");

if (!token) {
  $("#reset-missing").hidden = false;
  form.hidden = true;
}

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  const password = $("#new-password").value;
  if (password !== $("#new-password-again").value) {
    say(form.querySelector(".form-error"), "The two passwords are not the same.", "error");
    $("#new-password-again").setAttribute("aria-invalid", "true");
    $("#new-password-again").focus();
    return;
  }
  formError(form, null);
  await busy(form.querySelector("button"), async () => {
    try {
      await api("/api/auth/password-reset/confirm", { method: "POST", body: { token, password }, signInOnExpiry: false });
      clearToken();
      location.assign("/?reset=done");
    } catch (err) {
      formError(form, err);
    }
  });
});

pageReady();
