// WebRTC for the call: the peer-to-peer connection between the two members (perfect negotiation, trickle ICE
// through call.signal) and the audio-only link to the server (no trickle: the offer goes once gathering is done).

/** How long a connection may stay "disconnected" before we restart ICE (the browser may recover by itself first). */
export const DISCONNECTED_RESTART_MS = 3000;

/**
 * The connection to the other member. `send(message)` relays {kind, sdp|candidate, ice_restart?} through
 * call.signal and resolves to its ack. The member who arrives second makes the offer (`start()`); the other waits
 * for it (a `negotiationneeded` before that is remembered, not sent: nobody would receive it). Crossing offers
 * are settled by `polite`, as in WebRTC "perfect negotiation". A connection that failed, stayed "disconnected" for
 * DISCONNECTED_RESTART_MS, or whose browser came back `online` is renegotiated with an ICE restart; the call goes on.
 */
export class CallPeer {
  constructor({ config, polite, stream, send, onTrack, onState }) {
    Object.assign(this, { config, polite, stream, send, onTrack, onState });
    this.queue = Promise.resolve();
    this.pc = null;
    this.restartTimer = null;
    this.onOnline = () => this.restartIce();
    window.addEventListener("online", this.onOnline);
    this.create();
  }

  create() {
    const pc = new RTCPeerConnection(this.config);
    this.pc = pc;
    this.makingOffer = false;
    this.ignoreOffer = false;
    this.mayOffer = false;
    const tracks = this.stream ? this.stream.getTracks() : [];
    for (const track of tracks) pc.addTrack(track, this.stream);
    // always receive both kinds, even without a camera or microphone of our own
    if (!tracks.some((t) => t.kind === "audio")) pc.addTransceiver("audio", { direction: "recvonly" });
    if (!tracks.some((t) => t.kind === "video")) pc.addTransceiver("video", { direction: "recvonly" });
    pc.onnegotiationneeded = () => {
      if (pc === this.pc) this.negotiate();
    };
    pc.onicecandidate = ({ candidate }) => {
      if (pc !== this.pc || !candidate) return;
      this.send({
        kind: "candidate",
        candidate: { candidate: candidate.candidate, sdpMid: candidate.sdpMid, sdpMLineIndex: candidate.sdpMLineIndex },
      });
    };
    pc.ontrack = ({ track, streams }) => {
      if (pc === this.pc) this.onTrack?.(track, streams[0] || null);
    };
    pc.onconnectionstatechange = () => {
      if (pc !== this.pc) return;
      this.onState?.(pc.connectionState);
      clearTimeout(this.restartTimer);
      if (pc.connectionState === "failed") this.restartIce();
      else if (pc.connectionState === "disconnected") {
        this.restartTimer = setTimeout(() => {
          if (pc === this.pc && pc.connectionState === "disconnected") this.restartIce();
        }, DISCONNECTED_RESTART_MS);
      }
    };
    this.onState?.(pc.connectionState);
  }

  /** The network changed or the connection broke: renegotiate with new ICE candidates (both members stay in the call). */
  restartIce() {
    const pc = this.pc;
    if (!this.mayOffer || !pc.remoteDescription || pc.connectionState === "closed") return undefined;
    return this.negotiate({ iceRestart: true });
  }

  /** We arrived second (or came back): make the offer. */
  start() {
    this.mayOffer = true;
    return this.negotiate();
  }

  async negotiate({ iceRestart = false } = {}) {
    const pc = this.pc;
    if (!this.mayOffer || pc.signalingState !== "stable") return;
    try {
      this.makingOffer = true;
      if (iceRestart) await pc.setLocalDescription(await pc.createOffer({ iceRestart: true }));
      else await pc.setLocalDescription();
      if (pc !== this.pc || pc.localDescription?.type !== "offer") return;
      const message = { kind: "offer", sdp: pc.localDescription.sdp };
      if (iceRestart) message.ice_restart = true;
      await this.send(message);
    } catch (err) {
      console.warn("offer failed", err);
    } finally {
      this.makingOffer = false;
    }
  }

  /** A relayed call.signal from the other member; handled one at a time, in order. */
  handle(message) {
    this.queue = this.queue.then(() => this.process(message)).catch((err) => console.warn("signal failed", err));
    return this.queue;
  }

  async process(message) {
    const pc = this.pc;
    if (message.kind === "candidate") {
      if (!message.candidate || !message.candidate.candidate) return;
      try {
        await pc.addIceCandidate(message.candidate);
      } catch (err) {
        if (!this.ignoreOffer) console.warn("candidate refused", err);
      }
      return;
    }
    const offerCollision = message.kind === "offer" && (this.makingOffer || pc.signalingState !== "stable");
    this.ignoreOffer = !this.polite && offerCollision;
    if (this.ignoreOffer) return;
    if (message.kind === "answer" && pc.signalingState !== "have-local-offer") return;
    await pc.setRemoteDescription({ type: message.kind, sdp: message.sdp }); // rolls our own offer back if polite
    this.mayOffer = true;
    if (message.kind === "offer") {
      await pc.setLocalDescription();
      await this.send({ kind: "answer", sdp: pc.localDescription.sdp });
    }
  }

  /** The other member left (or came back on a new connection): start over with a fresh connection. */
  reset() {
    clearTimeout(this.restartTimer);
    this.queue = this.queue.then(() => {
      const old = this.pc;
      this.create();
      old.close();
    });
    return this.queue;
  }

  get hasRemote() {
    return Boolean(this.pc.remoteDescription);
  }

  close() {
    clearTimeout(this.restartTimer);
    window.removeEventListener("online", this.onOnline);
    this.pc.close();
    this.onState?.("closed");
  }
}

function gatheringComplete(pc, timeoutMs) {
  if (pc.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(done, timeoutMs);
    function done() {
      clearTimeout(timer);
      pc.removeEventListener("icegatheringstatechange", check);
      resolve();
    }
    function check() {
      if (pc.iceGatheringState === "complete") done();
    }
    pc.addEventListener("icegatheringstatechange", check);
  });
}

/**
 * The audio-only link to the server (calls with recording consent): one sending audio track, no video, and the
 * offer sent once ICE gathering is complete (the server's aiortc has no trickle ICE). `offer(sdp)` sends
 * call.media.offer and resolves to its ack.
 */
export class ServerLink {
  constructor({ config, track, offer, onState }) {
    Object.assign(this, { config, track, offer, onState });
    this.pc = null;
  }

  async open() {
    this.close();
    const pc = new RTCPeerConnection({ iceServers: this.config.iceServers || [], iceTransportPolicy: this.config.iceTransportPolicy || "all" });
    this.pc = pc;
    pc.onconnectionstatechange = () => {
      if (pc === this.pc) this.onState?.(pc.connectionState);
    };
    pc.addTransceiver(this.track, { direction: "sendonly" });
    await pc.setLocalDescription(await pc.createOffer());
    await gatheringComplete(pc, 5000);
    if (pc !== this.pc) return { ok: false, error: { code: "replaced", message: "replaced" } };
    const ack = await this.offer(pc.localDescription.sdp);
    if (pc !== this.pc) return ack;
    if (!ack.ok) {
      this.close();
      return ack;
    }
    await pc.setRemoteDescription({ type: "answer", sdp: ack.sdp });
    return ack;
  }

  close() {
    if (this.pc) {
      const pc = this.pc;
      this.pc = null;
      pc.close();
      this.onState?.("closed");
    }
  }
}
