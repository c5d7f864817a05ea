// Loaded (as a classic script) before each page's module. Until that module has attached its handlers, which it
// says by calling `pageReady()` from lib/ui.js last, a submitted form is held instead of being sent by the browser:
// the browser would reload the page with the form's fields, a password among them, in the address. A held form is
// submitted again once the page is ready, so an early click is not lost either.
"use strict";
(() => {
  const held = new Map(); // form -> the button that submitted it (null: Enter in a field)
  document.addEventListener("submit", (event) => {
    if (window.__pageReady) return;
    event.preventDefault();
    held.set(event.target, event.submitter || null);
  }, true);
  window.__releaseHeldForms = () => {
    window.__pageReady = true;
    for (const [form, submitter] of held) {
      if (!form.isConnected) continue;
      if (submitter && submitter.form === form) form.requestSubmit(submitter);
      else form.requestSubmit();
    }
    held.clear();
  };
})();
