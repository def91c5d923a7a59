// Small inline-SVG charts. Drawn in a fixed viewBox stretched to the container
// (preserveAspectRatio="none"), with non-scaling strokes; any text is HTML beside the
// SVG, because stretched SVG text would be distorted.

import { h, svg } from "./dom.js";

const W = 300;
const H = 60;

/** One line over time. points: [{t, v}]; domain: {tMin, tMax, vMin, vMax} shared by the
 * lines that are compared (a pair's venues), so their heights mean the same price. */
export function sparkline(points, domain, className) {
  const chart = svg("svg", {
    class: `sparkline ${className ?? ""}`, viewBox: `0 0 ${W} ${H}`, preserveAspectRatio: "none",
    role: "img", "aria-label": "price history",
  });
  if (points.length < 2) return chart;
  const x = scale(domain.tMin, domain.tMax, 2, W - 2);
  const y = scale(domain.vMin, domain.vMax, H - 4, 4);
  const coords = points.map((p) => `${x(p.t).toFixed(1)},${y(p.v).toFixed(1)}`).join(" ");
  chart.append(svg("polyline", { points: coords, class: "line", "vector-effect": "non-scaling-stroke" }));
  return chart;
}

/** Min and max with a little headroom; a flat series gets a band around it. */
export function paddedDomain(values) {
  let lo = Math.min(...values);
  let hi = Math.max(...values);
  if (!Number.isFinite(lo) || !Number.isFinite(hi)) return { vMin: 0, vMax: 1 };
  if (hi === lo) {
    const pad = Math.abs(hi) * 1e-4 || 1e-12;
    lo -= pad;
    hi += pad;
  }
  const pad = (hi - lo) * 0.08;
  return { vMin: lo - pad, vMax: hi + pad };
}

/** Stacked bars per bucket: stacks = [{key, className}], buckets carry bucket[key]. */
export function stackedBars(buckets, stacks, label) {
  const max = Math.max(1, ...buckets.map((b) => stacks.reduce((n, s) => n + (b[s.key] ?? 0), 0)));
  const chart = svg("svg", { class: "bars", viewBox: `0 0 ${W} ${H}`, preserveAspectRatio: "none",
    role: "img", "aria-label": label });
  const slot = W / Math.max(1, buckets.length);
  buckets.forEach((bucket, i) => {
    let top = H;
    for (const stack of stacks) {
      const value = bucket[stack.key] ?? 0;
      if (!value) continue;
      const height = (value / max) * (H - 2);
      top -= height;
      chart.append(svg("rect", {
        x: (i * slot + slot * 0.15).toFixed(1), width: (slot * 0.7).toFixed(1),
        y: top.toFixed(1), height: height.toFixed(1), class: stack.className,
      }, svg("title", {}, `${stack.key}: ${value}`)));
    }
  });
  return { chart, max };
}

/** Lines per bucket (nulls are gaps): series = [{key, className}]. */
export function bucketLines(buckets, series, label) {
  const values = buckets.flatMap((b) => series.map((s) => b[s.key])).filter((v) => v !== null && v !== undefined);
  const max = Math.max(1, ...values);
  const chart = svg("svg", { class: "lines", viewBox: `0 0 ${W} ${H}`, preserveAspectRatio: "none",
    role: "img", "aria-label": label });
  const slot = W / Math.max(1, buckets.length);
  const y = scale(0, max, H - 2, 6); // room for a dot's radius at the top
  for (const s of series) {
    // Split into runs of known values, so an empty minute is a gap, not a drop to zero.
    let run = [];
    const flush = () => {
      if (run.length === 1) {
        chart.append(svg("circle", { cx: run[0][0], cy: run[0][1], r: 2.5, class: `dot ${s.className}` }));
      } else if (run.length > 1) {
        chart.append(svg("polyline", { points: run.map((p) => p.join(",")).join(" "),
          class: `line ${s.className}`, "vector-effect": "non-scaling-stroke" }));
      }
      run = [];
    };
    buckets.forEach((b, i) => {
      const v = b[s.key];
      if (v === null || v === undefined) flush();
      else run.push([(i * slot + slot / 2).toFixed(1), y(v).toFixed(1)]);
    });
    flush();
  }
  return { chart, max };
}

/** A chart with its scale and time labels in HTML around it. */
export function chartFrame(title, { chart, max }, { maxLabel, startLabel, endLabel, legend }) {
  return h("figure", { class: "chart" },
    h("figcaption", {}, h("span", {}, title), legend ? h("span", { class: "legend" }, legend) : null),
    h("div", { class: "chart-body" },
      h("span", { class: "chart-max muted small" }, maxLabel(max)),
      chart),
    h("div", { class: "chart-axis muted small" }, h("span", {}, startLabel), h("span", {}, endLabel)),
  );
}

function scale(d0, d1, r0, r1) {
  const span = d1 - d0 || 1;
  return (v) => r0 + ((v - d0) / span) * (r1 - r0);
}
