// The live orders table, fed by the firehose WebSocket /ws/orders: a snapshot on connect,
// then every event of every order of the key. Rows are updated in place; nothing polls.

import { api, REVOKED_REASON, reportUnauthorized, wsUrl } from "./api.js";
import { byId, h, mount, statusBadge } from "./dom.js";
import { fmtAmount, fmtTime } from "./format.js";
import { applyEvent, mergeOrder, routeVenues, TERMINAL } from "./orders.js";
import { openSocket } from "./socket.js";

const MAX_ROWS = 500;
const CLOSE_UNAUTHORIZED = 4401;

/** Start the table for this session; returns { noteSubmitted(orderId, body) }. */
export function startOrdersTable({ signal, onLiveState }) {
  const tbody = byId("orders-table").querySelector("tbody");
  const entries = new Map(); // orderId -> { order, row, cells }
  const fetching = new Set();
  tbody.replaceChildren();
  refreshCount();

  function createEntry(order) {
    const cells = {
      time: h("td", { class: "mono", "data-label": "Time" }),
      pair: h("td", { "data-label": "Pair" }),
      amount: h("td", { class: "num mono", "data-label": "Amount" }),
      status: h("td", { "data-label": "Status" }),
      venues: h("td", { "data-label": "Venue" }),
      out: h("td", { class: "num mono", "data-label": "Out" }),
      attempts: h("td", { class: "num", "data-label": "Attempts" }),
    };
    const open = () => { window.location.hash = `#/orders/${order.orderId}`; };
    const row = h("tr", {
      testid: `order-row-${order.orderId}`, tabindex: "0", class: "order-row",
      title: `Order ${order.orderId}`,
      onclick: open,
      onkeydown: (e) => { if (e.key === "Enter") open(); },
    }, Object.values(cells));
    const entry = { order, row, cells };
    entries.set(order.orderId, entry);
    insertSorted(entry);
    trim();
    return entry;
  }

  // Newest first, by creation time (an order's first event is its creation).
  function insertSorted(entry) {
    const created = entry.order.createdAt ?? "";
    for (const other of tbody.children) {
      const otherEntry = entries.get(other.dataset.testid.slice("order-row-".length));
      if ((otherEntry?.order.createdAt ?? "") < created) {
        tbody.insertBefore(entry.row, other);
        return;
      }
    }
    tbody.append(entry.row);
  }

  function trim() {
    while (tbody.children.length > MAX_ROWS) {
      const last = tbody.lastElementChild;
      entries.delete(last.dataset.testid.slice("order-row-".length));
      last.remove();
    }
  }

  function render(entry) {
    const { order, cells } = entry;
    cells.time.textContent = fmtTime(order.createdAt);
    cells.time.title = order.createdAt ?? "";
    cells.pair.textContent = order.inputToken ? `${order.inputToken} → ${order.outputToken}` : "…";
    cells.amount.textContent = order.amount ? `${fmtAmount(order.amount)} ${order.inputToken ?? ""}` : "…";
    const badge = cells.status.firstElementChild;
    if (badge?.textContent !== order.status) {
      mount(cells.status, statusBadge(order.status, `order-status-${order.orderId}`));
    }
    cells.status.title = order.failureReason ?? "";
    cells.venues.textContent = routeVenues(order.route).join(" + ") || "—";
    if (order.amountOut) {
      cells.out.textContent = `${fmtAmount(order.amountOut)} ${order.outputToken ?? ""}`;
      cells.out.classList.remove("muted");
    } else if (order.expectedAmountOut && !TERMINAL.has(order.status)) {
      // Not executed yet: what the route expects, marked as an estimate.
      cells.out.textContent = `≈ ${fmtAmount(order.expectedAmountOut)} ${order.outputToken ?? ""}`;
      cells.out.classList.add("muted");
    } else {
      cells.out.textContent = "—";
      cells.out.classList.add("muted");
    }
    cells.attempts.textContent = String(order.attempts ?? 0);
  }

  function upsert(order) {
    const entry = entries.get(order.orderId);
    if (!entry) {
      render(createEntry({ ...order }));
    } else {
      const created = entry.order.createdAt;
      mergeOrder(entry.order, order);
      if (entry.order.createdAt !== created) insertSorted(entry); // moves the row
      render(entry);
    }
    refreshCount();
  }

  function refreshCount() {
    const count = entries.size;
    byId("orders-count").textContent = count ? `${count} shown` : "";
    byId("orders-empty").hidden = count > 0;
  }

  // An event for an order we have not seen (placed elsewhere, or older than the snapshot):
  // its row starts from the event, and one GET fills in the pair and amount.
  async function fetchOrder(orderId) {
    if (fetching.has(orderId)) return;
    fetching.add(orderId);
    try {
      const order = await api(`/api/orders/${orderId}`);
      if (!signal.aborted) upsert(order);
    } catch {
      // The row keeps what the events told; the next snapshot fills it in.
    } finally {
      fetching.delete(orderId);
    }
  }

  function onEvent(event) {
    let entry = entries.get(event.orderId);
    if (!entry) {
      entry = createEntry({ orderId: event.orderId, status: event.status, attempts: 0,
        createdAt: event.timestamp });
      fetchOrder(event.orderId);
    }
    if (applyEvent(entry.order, event)) render(entry);
    refreshCount();
  }

  async function resync() {
    try {
      const { orders } = await api("/api/orders?limit=50");
      if (!signal.aborted) orders.forEach(upsert);
    } catch {
      // The next (re)connection's snapshot catches up.
    }
  }

  openSocket({
    url: () => wsUrl("/ws/orders"),
    signal,
    onOpen: () => onLiveState("live"),
    onClose: (code, reason) => {
      if (code === CLOSE_UNAUTHORIZED) reportUnauthorized(reason === REVOKED_REASON);
      else onLiveState(code === 1001 ? "restarting" : "reconnecting");
    },
    shouldReconnect: (code) => code !== CLOSE_UNAUTHORIZED,
    onMessage: (message) => {
      if (message.type === "snapshot") (message.orders ?? []).forEach(upsert);
      else if (message.type === "order.status") onEvent(message);
      else if (message.type === "resync") resync();
    },
  });

  return {
    /** Show a just-submitted order at once, before its first event arrives. */
    noteSubmitted(orderId, body) {
      if (!entries.has(orderId)) {
        upsert({ orderId, status: "pending", attempts: 0, inputToken: body.inputToken,
          outputToken: body.outputToken, amount: body.amount, slippageBps: body.slippageBps,
          createdAt: new Date().toISOString() });
      }
      // The server's own record: canonical amount and creation time (this clock may differ).
      fetchOrder(orderId);
    },
  };
}
