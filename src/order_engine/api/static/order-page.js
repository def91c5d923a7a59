// The order page (#/orders/<id>): the order, and its timeline live from
// /ws/orders/<id>, which sends the history, then live events, and closes 1000 at the end.

import { api, ApiError, REVOKED_REASON, reportUnauthorized, wsUrl } from "./api.js";
import { h, mount, statusBadge } from "./dom.js";
import { compareDecimals, fmtAmount, fmtDuration, fmtPrice, fmtTime, fmtTimeMs } from "./format.js";
import { applyEvent, mergeOrder, routeVenues, TERMINAL } from "./orders.js";
import { facts, impactText, quotesTable, routeView, venueChip, versusBestSingle } from "./routeview.js";
import { openSocket } from "./socket.js";

const CLOSE_NORMAL = 1000;
const CLOSE_UNAUTHORIZED = 4401;
const CLOSE_NOT_FOUND = 4404;
const TICK_MS = 250;

export function showOrderPage(root, orderId, { signal }) {
  const order = { orderId, status: "pending", attempts: 0 };
  const events = new Map(); // seq -> event: a reconnect replays the history, keep each once
  let loaded = false;
  let notFound = false;
  let ticker = null;

  mount(root, backLink(), h("p", { class: "muted" }, "Loading order…"));
  signal.addEventListener("abort", () => clearInterval(ticker));

  function sortedEvents() {
    return [...events.values()].sort((a, b) => a.seq - b.seq);
  }

  function terminalSeen() {
    return sortedEvents().some((e) => TERMINAL.has(e.status));
  }

  function showNotFound() {
    notFound = true;
    clearInterval(ticker);
    document.title = "Order not found · order-engine";
    mount(root, backLink(), h("div", { class: "panel not-found", testid: "order-not-found" },
      h("h2", {}, "Order not found"),
      h("p", { class: "muted" }, `No order ${orderId} for this API key.`)));
  }

  function render() {
    if (notFound || signal.aborted) return;
    if (!loaded && !events.size) return;
    const list = sortedEvents();
    document.title = `${order.status} · order ${orderId.slice(0, 8)} · order-engine`;
    mount(root, backLink(), header(order, stageSummary(list)),
      h("div", { class: "order-grid" },
        h("section", { class: "panel" }, h("h3", {}, "Timeline"), timeline(list)),
        h("div", { class: "order-side" },
          h("section", { class: "panel" }, h("h3", {}, "Execution"), execution(order)),
          h("section", { class: "panel" }, h("h3", {}, "Quotes and route"),
            quotesTable(order.quotes, { route: order.route, outputToken: order.outputToken,
              inputToken: order.inputToken, testidPrefix: "order-quote-" }),
            routeView(order.route, "order-route")),
          retries(list))));
    clearInterval(ticker);
    // The current stage's "so far" counts up until the next event or the end.
    if (list.length && !TERMINAL.has(list[list.length - 1].status)) {
      ticker = setInterval(() => {
        const since = root.querySelector("[data-since]");
        if (since) since.textContent = `for ${fmtDuration(Date.now() - Number(since.dataset.since))} so far`;
      }, TICK_MS);
    }
  }

  function onEvent(event) {
    if (event.orderId !== orderId || events.has(event.seq)) return;
    events.set(event.seq, event);
    applyEvent(order, event);
    render();
  }

  async function load() {
    try {
      mergeOrder(order, await api(`/api/orders/${encodeURIComponent(orderId)}`));
      loaded = true;
      render();
    } catch (error) {
      if (signal.aborted) return;
      if (error instanceof ApiError && error.status === 404) {
        // The socket is left to end itself (the server sends an error, then 4404).
        showNotFound();
      } else if (!events.size) {
        mount(root, backLink(), h("p", { class: "form-error" }, `Could not load the order: ${error.message}`));
      }
    }
  }

  openSocket({
    url: () => wsUrl(`/ws/orders/${encodeURIComponent(orderId)}`),
    signal,
    onMessage: (message) => {
      if (message.type === "order.status") onEvent(message);
    },
    onClose: (code, reason) => {
      if (code === CLOSE_NOT_FOUND) showNotFound();
      else if (code === CLOSE_UNAUTHORIZED) reportUnauthorized(reason === REVOKED_REASON);
      else if (code === CLOSE_NORMAL && terminalSeen()) load(); // the final record, once
    },
    // 1000 ends it only after a terminal event; 1001 (server restart) and drops reconnect,
    // and the replayed history is deduplicated by seq.
    shouldReconnect: (code) => (code === CLOSE_NORMAL ? !terminalSeen()
      : code !== CLOSE_NOT_FOUND && code !== CLOSE_UNAUTHORIZED),
  });
  load();
}

function backLink() {
  return h("a", { href: "#/", class: "back-link", testid: "back-home" }, "← All orders");
}

function header(order, stages) {
  return h("section", { class: "panel order-head" },
    h("div", { class: "order-title" },
      h("h2", {}, order.amount
        ? `${fmtAmount(order.amount)} ${order.inputToken} → ${order.outputToken}`
        : `${order.inputToken ?? "?"} → ${order.outputToken ?? "?"}`),
      statusBadge(order.status, "order-page-status")),
    h("p", { class: "mono small muted order-id" }, order.orderId),
    facts([
      ["Amount", `${fmtAmount(order.amount)} ${order.inputToken ?? ""}`, { testid: "order-amount-value" }],
      ["Slippage", order.slippageBps === undefined ? "—" : `${order.slippageBps} bps`],
      ["Attempts", String(order.attempts ?? 0), { testid: "order-attempts" }],
      ["Created", fmtTime(order.createdAt)],
      ["Type", order.type ?? "market"],
    ]),
    stages);
}

/** Each stage's share of the order's life so far: one horizontal bar, and its legend. */
function stageSummary(list) {
  if (list.length < 2) return null;
  const start = Date.parse(list[0].timestamp);
  const total = Math.max(1, Date.parse(list[list.length - 1].timestamp) - start);
  const stages = list.slice(0, -1).map((event, i) => ({
    status: event.status, ms: Date.parse(list[i + 1].timestamp) - Date.parse(event.timestamp),
  }));
  return h("div", { class: "stage-summary", testid: "order-stages" },
    h("div", { class: "stage-bar", role: "img", "aria-label": "time spent in each stage" },
      stages.map(({ status, ms }) => h("span", {
        class: `stage stage-${status}`,
        // A floor, so that a 2 ms stage is still a visible sliver.
        style: { flexGrow: String(Math.max(ms, total / 100)) },
        title: `${status}: ${fmtDuration(ms)}`,
      }))),
    h("ul", { class: "stage-legend" },
      stages.map(({ status, ms }) => h("li", {},
        h("i", { class: `key stage stage-${status}` }), `${status} ${fmtDuration(ms)}`)),
      h("li", { class: "muted" }, `total ${fmtDuration(total)}`)));
}

function timeline(list) {
  if (!list.length) return h("p", { class: "muted", testid: "order-timeline" }, "No events yet.");
  const start = Date.parse(list[0].timestamp);
  return h("ol", { class: "timeline", testid: "order-timeline" }, list.map((event, i) => {
    const at = Date.parse(event.timestamp);
    const next = list[i + 1];
    let duration;
    if (next) {
      duration = h("span", { class: "tl-duration" },
        `in ${event.status} for ${fmtDuration(Date.parse(next.timestamp) - at)}`);
    } else if (TERMINAL.has(event.status)) {
      duration = h("span", { class: "tl-duration" }, `total ${fmtDuration(at - start)}`);
    } else {
      duration = h("span", { class: "tl-duration live", "data-since": String(at) },
        `for ${fmtDuration(Date.now() - at)} so far`);
    }
    return h("li", { class: `timeline-item tl-${event.status}`, testid: `timeline-item-${event.status}`,
      dataset: { seq: String(event.seq) } },
    h("div", { class: "tl-head" },
      statusBadge(event.status),
      h("span", { class: "mono small" }, fmtTimeMs(event.timestamp)),
      event.attempt ? h("span", { class: "muted small" }, `attempt ${event.attempt}`) : null),
    duration,
    eventDetail(event));
  }));
}

function eventDetail(event) {
  const detail = (text, className = "") => h("div", { class: `tl-detail ${className}` }, text);
  switch (event.status) {
    case "pending": return detail("accepted and queued");
    case "routing": return detail("quoting every venue");
    case "building": return detail([
      "via ", routeVenues(event.route).map((v, i) => [i ? " + " : "", venueChip(v)]),
      ` expecting ${fmtAmount(event.expectedAmountOut)} (min ${fmtAmount(event.minAmountOut)})`]);
    case "submitted": return detail(["tx ", h("span", { class: "mono", title: event.txHash }, shortHash(event.txHash))]);
    case "confirmed": return detail(
      `received ${fmtAmount(event.amountOut)} at ${fmtPrice(event.executionPrice)}`);
    case "retrying": return detail(
      `${event.error ?? "transient failure"}${event.retryInMs !== undefined ? `; retry in ${fmtDuration(event.retryInMs)}` : ""}`,
      "tl-error");
    case "failed": return detail(event.reason ?? "failed", "tl-error");
    default: return null;
  }
}

function shortHash(hash) {
  return hash && hash.length > 20 ? `${hash.slice(0, 10)}…${hash.slice(-6)}` : hash ?? "—";
}

function execution(order) {
  const out = order.outputToken ?? "";
  let actual = "—";
  if (order.amountOut) {
    const cmp = compareDecimals(order.amountOut, order.expectedAmountOut);
    const vs = cmp && cmp.sign !== 0 ? ` (${cmp.sign > 0 ? "+" : ""}${fmtAmount(cmp.diff)} vs expected)` : "";
    actual = `${fmtAmount(order.amountOut)} ${out}${vs}`;
  }
  return facts([
    ["Expected out", order.expectedAmountOut ? `${fmtAmount(order.expectedAmountOut)} ${out}` : "—",
      { testid: "order-expected-out" }],
    ["Actual out", actual, { testid: "order-actual-out" }],
    ["Min out", order.minAmountOut ? `${fmtAmount(order.minAmountOut)} ${out}` : "—"],
    ["Execution price", order.executionPrice
      ? `${fmtPrice(order.executionPrice)} ${out}/${order.inputToken ?? ""}` : "—"],
    ["Price impact", impactText(order.priceImpactPct)],
    ["vs single venue", order.expectedAmountOut
      ? versusBestSingle(order.expectedAmountOut, order.bestSingleVenue, out) : "—"],
    // A failed order may carry the signature of its last transaction, which never landed.
    [order.status === "failed" ? "Last tx (not landed)" : "Tx hash", order.txHash ?? "—",
      { testid: "order-tx-hash", className: "mono hash" }],
    order.failureReason
      ? ["Failure", order.failureReason, { testid: "order-failure-reason", className: "failure" }]
      : null,
  ]);
}

function retries(list) {
  const retrying = list.filter((e) => e.status === "retrying");
  if (!retrying.length) return null;
  return h("section", { class: "panel" }, h("h3", {}, "Retries"),
    h("ul", { class: "retries", testid: "order-retries" }, retrying.map((e) => h("li", {},
      h("span", { class: "muted small" }, `attempt ${e.attempt} · ${fmtTimeMs(e.timestamp)}`),
      h("span", { class: "tl-error" }, e.error ?? "transient failure"),
      e.retryInMs !== undefined ? h("span", { class: "muted small" }, `next attempt after ${fmtDuration(e.retryInMs)}`) : null))));
}
