// The Socket.IO connection (websocket transport only, token in the handshake's auth object) and acknowledged
// requests that always resolve to the server's {ok, ...} shape.
import { io } from "/vendor/socket.io-client/socket.io.esm.min.js";
import { getToken, toSignIn } from "./api.js";

/**
 * Open the connection. `onStatus(state)` hears "online", "offline" and "reconnecting". The server closes a
 * connection itself when the user's status changes (an admin approved a therapist): reconnect with the same token;
 * a revoked token then fails with invalid_token and the user signs in again. The token is read at every
 * (re)connection, so a reconnect always sends the token the page holds now.
 */
export function connectSocket({ onStatus } = {}) {
  const socket = io({ auth: (cb) => cb({ token: getToken() }), transports: ["websocket"], reconnectionDelayMax: 4000 });
  socket.on("connect", () => onStatus?.("online"));
  socket.on("connect_error", (err) => {
    if (err?.data?.code === "invalid_token") {
      socket.disconnect();
      toSignIn();
      return;
    }
    onStatus?.("reconnecting");
  });
  socket.on("disconnect", (reason) => {
    onStatus?.(reason === "io client disconnect" ? "offline" : "reconnecting");
    if (reason === "io server disconnect") setTimeout(() => socket.connect(), 300);
  });
  return socket;
}

/** Emit with an acknowledgement; resolves to the ack, or to an error ack when the server does not answer in time. */
export async function request(socket, event, payload = {}, timeoutMs = 10000) {
  try {
    return await socket.timeout(timeoutMs).emitWithAck(event, payload);
  } catch {
    return { ok: false, error: { code: "timeout", message: "The server did not answer in time. Please try again." } };
  }
}
