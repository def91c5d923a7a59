// What the dashboard knows about the order lifecycle: statuses, and how an order object
// is brought up to date by `order.status` events.

export const TERMINAL = new Set(["confirmed", "failed"]);
export const LIFECYCLE = ["pending", "routing", "building", "submitted", "confirmed"];

// Where a status sits inside one attempt. An attempt goes routing -> building ->
// submitted, then retrying (and the next attempt starts at routing again).
const STAGE = { pending: 0, routing: 1, building: 2, submitted: 3, retrying: 4 };

/** How far an order has come. Snapshots, refetches and events can arrive in any order
 * (a reconnect's snapshot may be newer than an event still in flight); an update that
 * would move an order backwards is stale and is dropped. */
export function progress(status, attempt) {
  if (TERMINAL.has(status)) return Number.POSITIVE_INFINITY;
  return (attempt ?? 0) * 10 + (STAGE[status] ?? 0);
}

function orderProgress(order) {
  return progress(order.status, order.attempts);
}

/** Fields an event carries, in order-object names (failed's `reason` is `failureReason`). */
export function eventFields(event) {
  const fields = { status: event.status, updatedAt: event.timestamp };
  for (const name of ["quotes", "route", "expectedAmountOut", "minAmountOut", "priceImpactPct",
    "bestSingleVenue", "txHash", "amountOut", "executionPrice"]) {
    if (event[name] !== undefined) fields[name] = event[name];
  }
  if (event.reason !== undefined) fields.failureReason = event.reason;
  return fields;
}

/** Apply an event to an order object in place. Returns false when the event is stale. */
export function applyEvent(order, event) {
  if (progress(event.status, event.attempt) < orderProgress(order)) return false;
  Object.assign(order, eventFields(event));
  order.attempts = Math.max(order.attempts ?? 0, event.attempt ?? 0);
  return true;
}

const STATIC_FIELDS = ["orderId", "type", "inputToken", "outputToken", "amount", "slippageBps",
  "createdAt"];

/** Merge a full order object (snapshot, GET) into what we have, unless it is older. */
export function mergeOrder(order, incoming) {
  if (orderProgress(incoming) < orderProgress(order)) {
    // An older status, but what never changes (pair, amount, creation) is still right,
    // and better than what a placeholder row guessed.
    for (const name of STATIC_FIELDS) {
      if (incoming[name] !== undefined && incoming[name] !== null) order[name] = incoming[name];
    }
    return false;
  }
  for (const [name, value] of Object.entries(incoming)) {
    // A null in a full object means "not known yet", never "forget what an event said".
    if (value !== null || order[name] === undefined) order[name] = value;
  }
  return true;
}

/** The venues an order's route uses, each once, in route order. */
export function routeVenues(route) {
  return [...new Set((route ?? []).map((leg) => leg.venue))];
}

/** The route's legs grouped by path: [{ path, percent, legs: [...] }]. */
export function routePaths(route) {
  const paths = new Map();
  for (const leg of route ?? []) {
    const key = leg.path ?? 0;
    if (!paths.has(key)) paths.set(key, { path: key, percent: leg.percent, legs: [] });
    paths.get(key).legs.push(leg);
  }
  return [...paths.values()];
}
