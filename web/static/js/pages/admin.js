// Admin: review therapist applications (approve / refuse) and open test sessions for approved therapists.
import { api, requireUser } from "../lib/api.js";
import { $, busy, clear, errorText, formatDateTime, formError, h, initChrome, pageReady, say } from "../lib/ui.js";

const me = await requireUser(["admin"]);
initChrome(me);

async function loadApplications() {
  const status = $("#app-status").value;
  const list = $("#applications");
  try {
    const { applications } = await api(`/api/admin/applications?status=${encodeURIComponent(status)}`);
    clear(list);
    $("#apps-empty").hidden = applications.length > 0;
    for (const app of applications) list.append(card(app));
  } catch (err) {
    say($("#apps-notice"), errorText(err), "error");
  }
}

function card(app) {
  const rows = [
    ["E-mail", `${app.email} (${app.email_verified ? "verified" : "not verified yet: approval waits for it"})`],
    ["Qualifications", app.qualifications],
    ["Registration", `${app.registration_body} ${app.registration_number}`],
    ["Insurance", `${app.insurance_provider}, until ${app.insurance_expiry}`],
    ["Applied", formatDateTime(app.applied_at)],
  ];
  if (app.reviewed_at) rows.push(["Reviewed", formatDateTime(app.reviewed_at)]);
  const decide = (action) => h("button", {
    type: "button",
    class: action === "approve" ? "primary" : "danger",
    text: action === "approve" ? "Approve" : "Refuse",
    "aria-label": `${action === "approve" ? "Approve" : "Refuse"} ${app.display_name}`,
    on: { click: (event) => review(app, action, event.target) },
  });
  return h("li", { class: "card", dataset: { applicationId: app.id } },
    h("div", { class: "card-head" },
      h("strong", { text: app.display_name }),
      h("span", { class: `badge ${app.status === "approved" ? "ok" : app.status === "refused" ? "danger" : "warn"}`, text: app.status })),
    h("dl", { class: "details" }, rows.flatMap(([k, v]) => [h("dt", { text: k }), h("dd", { text: v })])),
    h("div", { class: "actions" },
      app.status !== "approved" ? decide("approve") : null,
      app.status !== "refused" ? decide("refuse") : null));
}

async function review(app, action, button) {
  await busy(button, async () => {
    try {
      await api(`/api/admin/applications/${app.id}/${action}`, { method: "POST" });
      say($("#apps-notice"), `${app.display_name} is ${action === "approve" ? "approved" : "refused"}.`, "ok");
      await loadApplications();
      await loadApprovedTherapists();
    } catch (err) {
      say($("#apps-notice"), errorText(err), "error");
    }
  });
}

async function loadApprovedTherapists() {
  const select = $("#test-therapist");
  try {
    const { applications } = await api("/api/admin/applications?status=approved&limit=500");
    clear(select).append(...applications.map((a) => h("option", { value: a.id, text: `${a.display_name} (${a.email})` })));
  } catch (err) {
    formError($("#test-call-form"), err);
  }
}

$("#app-status").addEventListener("change", loadApplications);

$("#test-call-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = event.target;
  formError(form, null);
  await busy(form.querySelector("button"), async () => {
    try {
      const opened = await api("/api/admin/test-calls", {
        method: "POST",
        body: { therapist_id: Number($("#test-therapist").value), recording_consent: $("#test-recording").checked },
      });
      $("#test-result-text").textContent = `Test session ${opened.call.id} is open. The therapist's dashboard takes them to it; the demo client is account ${opened.demo_client.id}.`;
      $("#demo-token").value = opened.demo_client.token;
      showDemoLink(opened.call.id, opened.demo_client.token);
      $("#test-result").hidden = false;
    } catch (err) {
      formError(form, err);
    }
  });
});

/**
 * "Demo client link": opens the session as the demo client in a new window. The token rides in the URL fragment,
 * which browsers never send to the server (nor in a Referer); the call page moves it into that window's
 * sessionStorage and removes it from the address. `noopener`: the new window starts without this admin's session.
 */
function showDemoLink(callId, token) {
  let link = $("#demo-link");
  if (!link) {
    link = h("a", { id: "demo-link", target: "_blank", rel: "noopener noreferrer", class: "button" });
    $("#test-result-text").after(h("p", {}, link));
  }
  link.href = `/call/${callId}#token=${encodeURIComponent(token)}`;
  link.textContent = `Demo client link: join session ${callId} as the demo client (new window)`;
}

loadApplications();
loadApprovedTherapists();

pageReady();
