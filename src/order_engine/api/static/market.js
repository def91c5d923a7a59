// The market panel: every pair's price on each venue, the spread, and a sparkline of
// the last minutes. The API gives only the current prices, so the history is kept here.

import { api, ApiError } from "./api.js";
import { byId, h, mount } from "./dom.js";
import { fmtPrice, fmtTime } from "./format.js";
import { paddedDomain, sparkline } from "./charts.js";
import { venueChip } from "./routeview.js";

const POLL_MS = 2000;
const HISTORY_MS = 5 * 60_000;

// pair -> venue -> [{t, v}]; survives a new session (the market is the same for every key).
const history = new Map();

export function startMarket({ signal }) {
  const body = byId("market-body");
  const updated = byId("market-updated");
  let timer = null;
  signal.addEventListener("abort", () => clearTimeout(timer));

  async function poll() {
    if (document.hidden) {
      timer = setTimeout(poll, POLL_MS); // no one is looking; the history resumes on return
      return;
    }
    try {
      const market = await api("/api/market");
      if (signal.aborted) return;
      record(market);
      render(body, market);
      updated.textContent = `· ${fmtTime(market.timestamp ?? new Date().toISOString())}`;
      updated.classList.remove("stale");
    } catch (error) {
      if (signal.aborted) return;
      updated.textContent = `· unavailable${error instanceof ApiError ? ` (HTTP ${error.status})` : ""}`;
      updated.classList.add("stale");
    }
    if (!signal.aborted) timer = setTimeout(poll, POLL_MS);
  }
  poll();
}

function record(market) {
  const t = Date.parse(market.timestamp) || Date.now();
  for (const pair of market.pairs ?? []) {
    if (!history.has(pair.pair)) history.set(pair.pair, new Map());
    const venues = history.get(pair.pair);
    for (const quote of pair.venues ?? []) {
      const v = Number(quote.price);
      if (!Number.isFinite(v)) continue;
      if (!venues.has(quote.venue)) venues.set(quote.venue, []);
      const points = venues.get(quote.venue);
      if (points.length && points[points.length - 1].t >= t) continue; // same tick twice
      points.push({ t, v });
      while (points.length && points[0].t < t - HISTORY_MS) points.shift();
    }
  }
}

function render(body, market) {
  const pairs = market.pairs ?? [];
  if (!pairs.length) {
    mount(body, h("p", { class: "muted" }, "No pools."));
    return;
  }
  mount(body, pairs.map((pair) => {
    const venues = history.get(pair.pair) ?? new Map();
    const all = [...venues.values()].flat();
    const domain = {
      tMin: Math.min(...all.map((p) => p.t)), tMax: Math.max(...all.map((p) => p.t)),
      ...paddedDomain(all.map((p) => p.v)),
    };
    const spread = pair.spreadBps === null || pair.spreadBps === undefined
      ? "—" : `${Number(pair.spreadBps).toFixed(1)} bps`;
    return h("section", { class: "market-pair", testid: `market-pair-${pair.base}-${pair.quote}` },
      h("header", { class: "market-pair-head" },
        h("strong", {}, pair.pair),
        h("span", { class: "muted small", title: "spread between the venues' prices" },
          `spread ${spread}`)),
      (pair.venues ?? []).map((quote) => h("div", {
        class: "market-venue", testid: `market-venue-${pair.base}-${pair.quote}-${quote.venue}`,
        title: quote.pool,
      },
      venueChip(quote.venue),
      sparkline(venues.get(quote.venue) ?? [], domain, `venue-line-${quote.venue}`),
      h("span", { class: "mono price" }, fmtPrice(quote.price)),
      )),
    );
  }));
}
