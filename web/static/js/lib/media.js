// The camera and microphone. Raw audio (echo cancellation, noise suppression and auto gain off) is for tests and
// measurements: open any page once with `?testmedia=1` (stored in localStorage as therapy.rawAudio = "1";
// `?testmedia=0` clears it), or set that key directly.
const RAW_KEY = "therapy.rawAudio";

(function readFlag() {
  const flag = new URLSearchParams(location.search).get("testmedia");
  if (flag === "1") localStorage.setItem(RAW_KEY, "1");
  if (flag === "0") localStorage.removeItem(RAW_KEY);
})();

export function rawAudio() {
  return localStorage.getItem(RAW_KEY) === "1";
}

function audioConstraints() {
  return rawAudio() ? { echoCancellation: false, noiseSuppression: false, autoGainControl: false } : true;
}

/** A sentence for a getUserMedia failure. */
export function mediaErrorText(err, what = "camera and microphone") {
  switch (err?.name) {
    case "NotAllowedError":
    case "SecurityError":
      return `You did not allow access to your ${what}. Allow it in your browser's site settings (the icon next to the address), then reload this page. You can still use the chat.`;
    case "NotFoundError":
    case "OverconstrainedError":
      return `No ${what} was found. Connect one and reload this page. You can still use the chat and hear the other person.`;
    case "NotReadableError":
    case "AbortError":
      return `Your ${what} is in use by another program or could not be started. Close the other program and reload this page.`;
    case "TypeError":
      return "This browser cannot use a camera here (the page must be opened over https).";
    default:
      return `Your ${what} could not be started (${err?.name || "unknown error"}).`;
  }
}

/**
 * Camera and microphone, falling back to whichever one works. Resolves to {stream, problem}: `stream` may lack a
 * track (or be null), `problem` is a sentence to show when something is missing.
 */
export async function openLocalMedia() {
  if (!navigator.mediaDevices?.getUserMedia) {
    return { stream: null, problem: mediaErrorText({ name: "TypeError" }) };
  }
  const audio = audioConstraints();
  const video = { width: { ideal: 1280 }, height: { ideal: 720 } };
  try {
    return { stream: await navigator.mediaDevices.getUserMedia({ audio, video }), problem: null };
  } catch (both) {
    if (both?.name === "NotAllowedError" || both?.name === "SecurityError") {
      return { stream: null, problem: mediaErrorText(both) };
    }
    try {
      const stream = await navigator.mediaDevices.getUserMedia({ audio });
      return { stream, problem: `${mediaErrorText(both, "camera")} The other person can still hear you.` };
    } catch {
      try {
        const stream = await navigator.mediaDevices.getUserMedia({ video });
        return { stream, problem: `${mediaErrorText(both, "microphone")} Use the chat to talk.` };
      } catch (none) {
        return { stream: null, problem: mediaErrorText(none) };
      }
    }
  }
}
