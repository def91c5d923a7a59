// Views shared by the quote preview and the order page: each venue's quote, the route's
// legs with their percentages, and how the route compares with the best single venue.

import { h } from "./dom.js";
import { compareDecimals, fmtAmount, fmtPct, fmtPrice, fmtSignedPct } from "./format.js";
import { routePaths, routeVenues } from "./orders.js";

export function venueChip(venue) {
  return h("span", { class: `venue venue-${venue}` }, venue);
}

/** One row per venue: what it alone gives for the whole amount. testidPrefix + venue. */
export function quotesTable(quotes, { route, outputToken, inputToken, testidPrefix }) {
  if (!quotes?.length) return h("p", { class: "muted" }, "No venue quoted.");
  const used = new Set(routeVenues(route));
  const best = quotes.reduce(
    (top, q) => (top === null || (compareDecimals(q.amountOut, top.amountOut)?.sign ?? 0) > 0 ? q : top),
    null,
  );
  // Scrolls sideways on its own when amounts are long (BONK), never the whole page.
  return h("div", { class: "table-scroll" }, h("table", { class: "mini-table quotes-table" },
    h("thead", {}, h("tr", {},
      h("th", { scope: "col" }, "Venue · fee"),
      h("th", { scope: "col", class: "num" }, `Out${outputToken ? ` (${outputToken})` : ""}`),
      h("th", { scope: "col", class: "num" }, "Price"),
    )),
    h("tbody", {}, quotes.map((q) => h("tr", {
      testid: `${testidPrefix}${q.venue}`,
      title: used.has(q.venue) ? `${q.venue} is in the route` : `${q.venue} is not in the route`,
    },
      // The route itself is drawn right below; here only the best single venue is marked.
      // The fee sits under the venue: three columns fit the form's narrow column.
      h("td", {},
        h("div", {}, venueChip(q.venue), q === best ? h("span", { class: "tag tag-best" }, "best") : null),
        h("div", { class: "muted small fee" }, `fee ${fmtAmount(q.fee)} ${inputToken ?? ""}`)),
      h("td", { class: "num mono" }, fmtAmount(q.amountOut)),
      h("td", { class: "num mono" }, fmtPrice(q.price)),
    ))),
  ));
}

/** The route, path by path: a split order shows every path with the share it carries. */
export function routeView(route, testid) {
  const paths = routePaths(route);
  if (!paths.length) return h("p", { class: "muted", testid }, "No route yet.");
  return h("ol", { class: "route", testid }, paths.map((path) => {
    const percent = Number(path.percent ?? 100);
    return h("li", { class: "route-path" },
      h("div", { class: "route-path-head" },
        h("span", {}, paths.length > 1 ? `Path ${path.path + 1}` : "Route"),
        h("span", { class: "mono" }, `${path.percent ?? "100"}%`)),
      h("div", { class: "bar", role: "presentation" },
        h("span", { style: { width: `${Math.max(1, Math.min(100, percent))}%` } })),
      h("ul", { class: "legs" }, path.legs.map((leg) => h("li", { class: "leg" },
        venueChip(leg.venue),
        h("span", { class: "leg-pair" }, `${leg.inputToken} → ${leg.outputToken}`),
        h("span", { class: "leg-amounts mono" },
          `${fmtAmount(leg.amountIn)} → ${fmtAmount(leg.amountOut)}`),
        h("span", { class: "leg-pool muted small" }, leg.pool),
      ))),
    );
  }));
}

/** "+0.12% (+0.27 USDC) vs meteora alone": the reason to use a router at all. */
export function versusBestSingle(expected, best, outputToken) {
  if (!best) return "no single venue fills it";
  const cmp = compareDecimals(expected, best.amountOut);
  if (!cmp) return "—";
  if (cmp.sign === 0) return `same as ${best.venue} alone`;
  const sign = cmp.sign > 0 ? "+" : "";
  const pct = cmp.pct === null ? "" : `${fmtSignedPct(cmp.pct)} `;
  const word = cmp.sign > 0 ? "better than" : "vs";
  const unit = outputToken ? ` ${outputToken}` : "";
  return `${pct}(${sign}${fmtAmount(cmp.diff)}${unit}) ${word} ${best.venue} alone`;
}

/** A definition list from [label, value, {testid, className}] rows; null rows are skipped. */
export function facts(rows) {
  return h("dl", { class: "facts" }, rows.filter(Boolean).map(([label, value, opts = {}]) => [
    h("dt", {}, label),
    h("dd", { testid: opts.testid, class: opts.className }, value),
  ]));
}

export function impactText(priceImpactPct) {
  return priceImpactPct === null || priceImpactPct === undefined ? "—" : fmtPct(priceImpactPct, 4);
}
