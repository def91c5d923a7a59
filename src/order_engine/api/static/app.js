// Entry point: the API key gate, the session (everything that runs with a key), and the
// hash router (#/ home, #/orders/<id> the order page).
//
// A session is one AbortController: a refused key (401, or 4401 on a socket) aborts it,
// which stops every poll and socket at once, and the key form comes back.

import { clearKey, getKey, keyHint, onUnauthorized, setKey, takeKeyFromUrl } from "./api.js";
import { byId } from "./dom.js";
import { startOrderForm } from "./form.js";
import { startMarket } from "./market.js";
import { showOrderPage } from "./order-page.js";
import { startStats } from "./stats.js";
import { startOrdersTable } from "./table.js";

let session = null; // AbortController of the running session
let page = null; // AbortController of the open order page

let linkedKey = null; // a key a link carried while another was held: offered, not taken

/** A link carried another key than the one held: say so, and let the person choose. */
function offerLinkedKey(key) {
  linkedKey = key;
  byId("key-notice-held").textContent = keyHint(getKey() ?? "");
  byId("key-notice-linked").textContent = keyHint(key);
  byId("key-notice").hidden = false;
}

function dropLinkedKey() {
  linkedKey = null;
  byId("key-notice").hidden = true;
}

function showGate(message) {
  dropLinkedKey();
  byId("app").hidden = true;
  byId("key-gate").hidden = false;
  byId("key-message").textContent = message ?? "Enter your API key to see your orders.";
  byId("key-message").classList.toggle("form-error", Boolean(message));
  const input = byId("key-input");
  input.value = "";
  input.focus();
}

function setLiveState(state) {
  const badge = byId("live-state");
  badge.dataset.state = state;
  badge.textContent = { live: "live", restarting: "server restarting…", reconnecting: "reconnecting…",
    connecting: "connecting" }[state] ?? state;
}

function startSession() {
  stopSession();
  session = new AbortController();
  const { signal } = session;
  byId("key-gate").hidden = true;
  byId("app").hidden = false;
  setLiveState("connecting");
  const table = startOrdersTable({ signal, onLiveState: setLiveState });
  startOrderForm({ signal, onSubmitted: (orderId, body) => table.noteSubmitted(orderId, body) });
  startMarket({ signal });
  startStats({ signal });
  route();
}

function stopSession() {
  page?.abort();
  page = null;
  session?.abort();
  session = null;
}

function route() {
  if (!session) return;
  page?.abort();
  page = null;
  const home = byId("home");
  const orderPage = byId("order-page");
  const match = /^#\/orders\/([^/?#]+)\/?$/.exec(window.location.hash);
  if (match) {
    home.hidden = true;
    orderPage.hidden = false;
    page = new AbortController();
    showOrderPage(orderPage, decodeURIComponent(match[1]), { signal: page.signal });
    window.scrollTo(0, 0);
  } else {
    orderPage.hidden = true;
    orderPage.replaceChildren();
    home.hidden = false;
    document.title = "order-engine";
  }
}

function boot() {
  const offered = takeKeyFromUrl();
  onUnauthorized((revoked) => {
    if (!session) return; // several requests may be refused at once; react to the first
    stopSession();
    showGate(revoked ? "That API key was revoked. Enter another key."
      : "That API key was refused. Enter a valid key.");
  });
  byId("key-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const key = byId("key-input").value.trim();
    if (!key) return;
    setKey(key);
    startSession();
  });
  byId("forget-key").addEventListener("click", () => {
    clearKey();
    stopSession();
    showGate();
  });
  byId("key-notice-keep").addEventListener("click", dropLinkedKey);
  byId("key-notice-use").addEventListener("click", () => {
    const key = linkedKey;
    dropLinkedKey();
    if (!key) return;
    setKey(key);
    startSession();
  });
  window.addEventListener("hashchange", route);
  if (getKey()) {
    startSession();
    if (offered) offerLinkedKey(offered);
  } else showGate();
}

boot();
