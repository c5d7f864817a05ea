// "Change password" in a page's account details (POST /api/me/password): the current password, then the new one.
// The user's other sessions end; this one carries on.
import { api } from "./api.js";
import { busy, formError, formValues, h, say } from "./ui.js";

/** The form, under a heading of level `heading` ("h2" or "h3"), ready to be placed in the account details. */
export function passwordChange({ heading = "h3" } = {}) {
  const status = h("p", { class: "status", role: "status" });
  const field = (id, name, label, autocomplete) => h("div", { class: "field" },
    h("label", { for: id, text: label }),
    h("input", { id, name, type: "password", autocomplete, required: true, maxlength: 256 }));
  const form = h("form", { id: "password-form" },
    field("pw-current", "current_password", "Current password", "current-password"),
    field("pw-new", "new_password", "New password (at least 10 characters)", "new-password"),
    h("p", { class: "form-error", role: "alert" }),
    status,
    h("div", { class: "actions" }, h("button", { type: "submit", text: "Change password" })));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    formError(form, null);
    say(status, "");
    await busy(form.querySelector('button[type="submit"]'), async () => {
      try {
        await api("/api/me/password", { method: "POST", body: formValues(form) });
        form.reset();
        say(status, "Password changed. Your other sessions have been signed out.", "ok");
      } catch (err) {
        const wrong = err.code === "wrong_password";
        formError(form, wrong ? { code: err.code, message: "That is not your current password.", details: err.details } : err);
      }
    });
  });
  return h("div", { class: "password-change" }, h(heading, { id: "password-title", text: "Change password" }), form);
}
