// A short two-tone chime made with WebAudio (no audio file). Browsers only let a page make sound after the user
// interacted with it: an audio context made before that (after a reload, say) stays suspended and plays nothing.
// The context is resumed on the first click or key press, and `watchSound` lets a page offer a "Turn on sound"
// button while it is suspended.
let context = null;
const watchers = new Set();

function audio() {
  if (!context) {
    const Ctor = window.AudioContext || window.webkitAudioContext;
    if (!Ctor) return null;
    context = new Ctor();
    context.addEventListener("statechange", () => watchers.forEach((watcher) => watcher(context.state)));
  }
  return context;
}

/** "running", "suspended" (the browser waits for a click), "closed", or "unsupported". */
export function soundState() {
  return audio()?.state || "unsupported";
}

/** Resume the audio context; call it from a click or key press. Resolves to the state afterwards. */
export async function enableSound() {
  const ctx = audio();
  if (ctx?.state === "suspended") {
    try {
      await ctx.resume();
    } catch {
      /* still suspended: the state says so */
    }
  }
  return soundState();
}

/** Call `onChange(state)` now and whenever the audio context's state changes. */
export function watchSound(onChange) {
  watchers.add(onChange);
  onChange(soundState());
}

export function unlockSoundOnInteraction() {
  audio();
  const unlock = async () => {
    if ((await enableSound()) !== "running") return; // keep listening: a later interaction may be allowed to
    document.removeEventListener("pointerdown", unlock, true);
    document.removeEventListener("keydown", unlock, true);
  };
  document.addEventListener("pointerdown", unlock, true);
  document.addEventListener("keydown", unlock, true);
}

let played = 0;
/** How many chimes were heard: played while the audio context ran (shown to tests through window.__therapyDashboard). */
export const chimes = () => played;

/** Play the chime; false when the browser keeps the page silent (the context is not running). */
export function chime() {
  const ctx = audio();
  if (!ctx || ctx.state !== "running") return false;
  played += 1;
  const start = ctx.currentTime + 0.01;
  [880, 1175].forEach((frequency, i) => {
    const osc = ctx.createOscillator();
    const gain = ctx.createGain();
    const t = start + i * 0.18;
    osc.type = "sine";
    osc.frequency.value = frequency;
    gain.gain.setValueAtTime(0.0001, t);
    gain.gain.exponentialRampToValueAtTime(0.25, t + 0.02);
    gain.gain.exponentialRampToValueAtTime(0.0001, t + 0.3);
    osc.connect(gain).connect(ctx.destination);
    osc.start(t);
    osc.stop(t + 0.32);
  });
  return true;
}
