// The stats panel: orders in flight, counts by status, and per minute the throughput
// (confirmed and failed) and the end-to-end latency (p50, p95) of the last 10 minutes.

import { api, ApiError } from "./api.js";
import { byId, h, mount, statusBadge } from "./dom.js";
import { fmtDuration } from "./format.js";
import { bucketLines, chartFrame, stackedBars } from "./charts.js";

const POLL_MS = 5000;
const MINUTES = 10;
const STATUS_ORDER = ["pending", "routing", "building", "submitted", "retrying", "confirmed", "failed"];

export function startStats({ signal }) {
  const body = byId("stats-body");
  let timer = null;
  signal.addEventListener("abort", () => clearTimeout(timer));

  async function poll() {
    if (!document.hidden) {
      try {
        const stats = await api(`/api/stats?minutes=${MINUTES}`);
        if (signal.aborted) return;
        render(body, stats);
      } catch (error) {
        if (signal.aborted) return;
        const why = error instanceof ApiError ? `HTTP ${error.status}` : "unreachable";
        const note = body.querySelector(".stats-stale") ?? h("p", { class: "stats-stale muted small" });
        note.textContent = `Stats unavailable (${why}); retrying.`;
        if (!note.isConnected) body.append(note);
      }
    }
    if (!signal.aborted) timer = setTimeout(poll, POLL_MS);
  }
  poll();
}

function minuteLabel(iso) {
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return "";
  return date.toLocaleTimeString("en-GB", { hour: "2-digit", minute: "2-digit", hour12: false });
}

/** One bucket per minute of the window, oldest first: the API lists only minutes in which
 * something finished, and an idle minute must still take its place on the time axis. */
function everyMinute(stats) {
  const known = new Map((stats.buckets ?? []).map((b) => [Math.floor(Date.parse(b.start) / 60_000), b]));
  const now = Math.floor(Date.now() / 60_000);
  const latestKnown = Math.max(now, ...known.keys()); // this clock may lag the server's
  const minutes = stats.windowMinutes ?? MINUTES;
  const buckets = [];
  for (let m = latestKnown - minutes + 1; m <= latestKnown; m += 1) {
    buckets.push(known.get(m) ?? { start: new Date(m * 60_000).toISOString(), confirmed: 0, failed: 0,
      latencyP50Ms: null, latencyP95Ms: null });
  }
  return buckets;
}

function render(body, stats) {
  const buckets = everyMinute(stats);
  const byStatus = stats.byStatus ?? {};
  const statuses = [...STATUS_ORDER, ...Object.keys(byStatus).filter((s) => !STATUS_ORDER.includes(s))]
    .filter((s) => byStatus[s]);
  const confirmed = buckets.reduce((n, b) => n + (b.confirmed ?? 0), 0);
  const failed = buckets.reduce((n, b) => n + (b.failed ?? 0), 0);
  const latest = [...buckets].reverse().find((b) => b.latencyP50Ms !== null && b.latencyP50Ms !== undefined);
  const first = buckets[0]?.start;
  const last = buckets[buckets.length - 1]?.start;
  const axis = { startLabel: minuteLabel(first), endLabel: minuteLabel(last) };

  mount(body,
    h("div", { class: "kpis" },
      kpi("In flight", String(stats.inFlight ?? 0), "stats-in-flight"),
      kpi("Finished", `${confirmed + failed}`, "stats-done",
        failed ? `${failed} failed` : null),
      kpi("Latency p50", latest ? fmtDuration(latest.latencyP50Ms) : "—", "stats-p50",
        latest?.latencyP95Ms !== null && latest?.latencyP95Ms !== undefined
          ? `p95 ${fmtDuration(latest.latencyP95Ms)}` : null),
    ),
    statuses.length
      ? h("div", { class: "status-counts", testid: "stats-by-status" },
        statuses.map((s) => h("span", { class: "status-count" }, statusBadge(s), h("span", { class: "mono" }, byStatus[s]))))
      : null,
    chartFrame("Orders per minute",
      stackedBars(buckets, [{ key: "confirmed", className: "bar-confirmed" },
        { key: "failed", className: "bar-failed" }], "orders per minute"),
      { ...axis, maxLabel: (max) => String(max),
        legend: [h("i", { class: "key key-confirmed" }), "confirmed ", h("i", { class: "key key-failed" }), "failed"] }),
    chartFrame("End-to-end latency",
      bucketLines(buckets, [{ key: "latencyP50Ms", className: "p50" },
        { key: "latencyP95Ms", className: "p95" }], "latency per minute"),
      { ...axis, maxLabel: (max) => fmtDuration(max),
        legend: [h("i", { class: "key key-p50" }), "p50 ", h("i", { class: "key key-p95" }), "p95"] }),
  );
}

function kpi(label, value, testid, note) {
  return h("div", { class: "kpi" },
    h("span", { class: "kpi-label muted small" }, label),
    h("span", { class: "kpi-value", testid }, value),
    note ? h("span", { class: "kpi-note muted small" }, note) : h("span", { class: "kpi-note small" }, " "));
}
