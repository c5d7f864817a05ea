// /guardian-consent#token=…: show who asked, then record the guardian's consent.
import { api } from "../lib/api.js";
import { $, busy, errorText, formError, formValues, pageReady, say, takeFragmentToken } from "../lib/ui.js";

const state = $("#consent-state");
const form = $("#consent-form");
const token = takeFragmentToken();

async function load() {
  if (!token) {
    say(state, "This link is incomplete. Open the link from the e-mail again.", "error");
    return;
  }
  try {
    const details = await api("/api/guardian-consent/details", { method: "POST", body: { token }, signInOnExpiry: false });
    $("#child-name").textContent = details.child_display_name;
    $("#guardian-name").value = details.guardian_name || "";
    $("#guardian-relationship").value = details.guardian_relationship || "";
    say(state, "");
    $("#consent-body").hidden = false;
  } catch (err) {
    say(state, errorText(err), "error");
  }
}

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  formError(form, null);
  const values = formValues(form);
  await busy(form.querySelector("button"), async () => {
    try {
      await api("/api/guardian-consent/confirm", {
        method: "POST",
        signInOnExpiry: false,
        body: { token, guardian_name: values.guardian_name, relationship: values.relationship, consent: $("#guardian-consent").checked },
      });
      $("#consent-body").hidden = true;
      say(state, "Thank you. Your consent is recorded; they can now talk to a therapist.", "ok");
    } catch (err) {
      formError(form, err);
    }
  });
});

load();

pageReady();
