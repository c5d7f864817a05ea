// Sign in, client registration, therapist application and the password-reset request.
import { api, getToken, homeFor, safeNext, setToken } from "../lib/api.js";
import { $, busy, formError, formValues, initTabs, pageReady, say, splitList } from "../lib/ui.js";

const next = safeNext(new URLSearchParams(location.search).get("next"));

function enter(user) {
  location.assign(next && user.role !== "admin" ? next : homeFor(user.role));
}

async function alreadySignedIn() {
  if (!getToken()) return;
  try {
    enter(await api("/api/me", { signInOnExpiry: false }));
  } catch {
    /* stale token: stay here */
  }
}

function bind(form, submit) {
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    formError(form, null);
    await busy(form.querySelector('button[type="submit"]'), async () => {
      try {
        await submit(form);
      } catch (err) {
        formError(form, err);
      }
    });
  });
}

bind($("#signin-form"), async (form) => {
  const { email, password } = formValues(form);
  const { token, user } = await api("/api/auth/signin", { method: "POST", body: { email, password } });
  setToken(token);
  enter(user);
});

bind($("#register-form"), async (form) => {
  const body = formValues(form, { dropEmpty: ["referral_code"] });
  const { token, user } = await api("/api/auth/register", { method: "POST", body });
  setToken(token);
  enter(user);
});

bind($("#apply-form"), async (form) => {
  const values = formValues(form, { dropEmpty: ["phone", "bio"] });
  const { rate, expertise, ...body } = values;
  body.expertise = splitList(expertise);
  body.rate_pence_per_minute = Math.round(Number(rate || 0) * 100);
  const { token, user } = await api("/api/auth/apply", { method: "POST", body });
  setToken(token);
  enter(user);
});

bind($("#reset-form"), async (form) => {
  await api("/api/auth/password-reset", { method: "POST", body: formValues(form) });
  say($("#reset-status"), "If an account uses this address, a reset link is on its way. It works for one hour.", "ok");
});

const tabs = initTabs($(".tabs"), {
  onChange: (id) => history.replaceState(null, "", id === "tab-signin" ? location.pathname + location.search : `#${id.slice(4)}`),
});
function tabFromHash() {
  const wanted = { "#register": "tab-register", "#apply": "tab-apply", "#signin": "tab-signin" }[location.hash];
  if (wanted) tabs.select(wanted);
}
window.addEventListener("hashchange", tabFromHash);
tabFromHash();
if (new URLSearchParams(location.search).get("reset") === "done") {
  say($("#page-notice"), "Your password was changed. Sign in with the new one.", "ok");
}
alreadySignedIn();

pageReady();
