// A short two-tone chime made with WebAudio (no audio file). Browsers only let a page make sound after the user
// interacted with it, so the audio context is unlocked on the first click or key press.
let context = null;

function audio() {
  if (!context) {
    const Ctor = window.AudioContext || window.webkitAudioContext;
    if (!Ctor) return null;
    context = new Ctor();
  }
  if (context.state === "suspended") context.resume().catch(() => {});
  return context;
}

export function unlockSoundOnInteraction() {
  const unlock = () => audio();
  document.addEventListener("pointerdown", unlock, { once: true, capture: true });
  document.addEventListener("keydown", unlock, { once: true, capture: true });
}

let played = 0;
/** How many chimes were played (shown to tests through window.__therapyDashboard). */
export const chimes = () => played;

export function chime() {
  played += 1;
  const ctx = audio();
  if (!ctx) return;
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
}
