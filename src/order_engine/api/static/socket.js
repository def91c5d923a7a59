// A WebSocket that reconnects with capped, jittered exponential back-off until stopped.

const BASE_DELAY_MS = 250;
const MAX_DELAY_MS = 10_000;
const decoder = new TextDecoder();

/**
 * url: a function (the key may change between connections).
 * shouldReconnect(code): false ends it (e.g. 1000 after a terminal order, 4404, 4401);
 * 1001 (server restarting) and abnormal closes (1006) reconnect.
 * Returns { stop() }; an AbortSignal stops it too.
 */
export function openSocket({ url, onMessage, onOpen, onClose, shouldReconnect = () => true, signal }) {
  let ws = null;
  let failures = 0;
  let timer = null;
  let stopped = false;

  function connect() {
    if (stopped) return;
    ws = new WebSocket(url());
    // The server may send JSON as binary frames (orjson bytes); read them as UTF-8.
    ws.binaryType = "arraybuffer";
    ws.onopen = () => {
      failures = 0;
      onOpen?.();
    };
    ws.onmessage = (event) => {
      let message;
      try {
        const text = typeof event.data === "string" ? event.data : decoder.decode(event.data);
        message = JSON.parse(text);
      } catch {
        return; // not ours to interpret; the contract is JSON text frames
      }
      onMessage(message);
    };
    ws.onclose = (event) => {
      if (stopped) return;
      onClose?.(event.code, event.reason);
      if (!shouldReconnect(event.code)) return;
      const span = Math.min(MAX_DELAY_MS, BASE_DELAY_MS * 2 ** failures);
      failures += 1;
      // Jitter, so that every dashboard does not come back at the same instant after a restart.
      timer = setTimeout(connect, span / 2 + Math.random() * (span / 2));
    };
  }

  function stop() {
    if (stopped) return;
    stopped = true;
    clearTimeout(timer);
    if (!ws) return;
    if (ws.readyState === WebSocket.CONNECTING) {
      // Closing a socket that is still connecting logs a browser error; close it once open.
      ws.onopen = () => ws.close(1000);
    } else if (ws.readyState === WebSocket.OPEN) {
      ws.close(1000);
    }
  }

  signal?.addEventListener("abort", stop, { once: true });
  connect();
  return { stop };
}
