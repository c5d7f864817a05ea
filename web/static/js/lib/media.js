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
 * A sentence for one device that failed while the other works: what is missing, what the other person still gets
 * (`still`), and how to fix it.
 */
export function missingDeviceText(err, device, still) {
  const [problem, fix] = {
    NotAllowedError: ["is off or blocked", "allow it in your browser's site settings (the icon next to the address), then reload this page"],
    SecurityError: ["is off or blocked", "allow it in your browser's site settings (the icon next to the address), then reload this page"],
    NotFoundError: ["was not found", "connect one and reload this page"],
    OverconstrainedError: ["was not found", "connect one and reload this page"],
    NotReadableError: ["is in use by another program", "close the other program and reload this page"],
    AbortError: ["is in use by another program", "close the other program and reload this page"],
  }[err?.name] || [`could not be started (${err?.name || "unknown error"})`, "reload this page to try again"];
  return `Your ${device} ${problem} — ${still}. To use it, ${fix}.`;
}

async function attempt(constraints) {
  try {
    return { stream: await navigator.mediaDevices.getUserMedia(constraints), error: null };
  } catch (error) {
    return { stream: null, error };
  }
}

/**
 * Camera and microphone, falling back to whichever one works: a refused or missing camera fails the request for
 * both, so each is then asked for alone. Resolves to {stream, problem}: `stream` may lack a track (or be null),
 * `problem` is a sentence naming what is missing.
 */
export async function openLocalMedia() {
  if (!navigator.mediaDevices?.getUserMedia) {
    return { stream: null, problem: mediaErrorText({ name: "TypeError" }) };
  }
  const audio = audioConstraints();
  const video = { width: { ideal: 1280 }, height: { ideal: 720 } };
  const both = await attempt({ audio, video });
  if (both.stream) return { stream: both.stream, problem: null };
  if (both.error?.name === "TypeError") return { stream: null, problem: mediaErrorText(both.error) };
  const mic = await attempt({ audio });
  const camera = await attempt({ video });
  if (mic.stream && camera.stream) {
    return { stream: new MediaStream([...mic.stream.getTracks(), ...camera.stream.getTracks()]), problem: null };
  }
  if (mic.stream) {
    return { stream: mic.stream, problem: missingDeviceText(camera.error, "camera", "the other person can still hear you") };
  }
  if (camera.stream) {
    return {
      stream: camera.stream,
      problem: missingDeviceText(mic.error, "microphone", "the other person can see you but not hear you; use the chat to talk"),
    };
  }
  const missing = mic.error?.name === "NotFoundError" && camera.error?.name === "NotFoundError";
  return { stream: null, problem: mediaErrorText(missing ? mic.error : both.error, missing ? "camera or microphone" : undefined) };
}
