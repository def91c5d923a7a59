// The submit form and its live quote preview.

import { api, ApiError, newIdempotencyKey } from "./api.js";
import { byId, h, mount } from "./dom.js";
import { fmtAmount, fmtPct, fmtTime } from "./format.js";
import { facts, impactText, quotesTable, routeView, versusBestSingle } from "./routeview.js";

const QUOTE_DEBOUNCE_MS = 300;
// The market moves every second; a preview older than this would mislead.
const QUOTE_REFRESH_MS = 5000;

/** Start the form for this session. onSubmitted(orderId, body) after a 201. */
export async function startOrderForm({ signal, onSubmitted }) {
  const form = byId("order-form");
  const inputSelect = byId("order-input-token");
  const outputSelect = byId("order-output-token");
  const amountInput = byId("order-amount");
  const slippageInput = byId("order-slippage");
  const submitButton = byId("order-submit");
  const errorBox = byId("order-form-error");
  const submittedBox = byId("order-submitted");
  const preview = byId("quote-preview");

  let quoteTimer = null;
  let refreshTimer = null;
  let quoteSeq = 0; // only the newest quote request may draw the preview
  let retry = null; // { fingerprint, key } of a submission whose outcome we could not learn

  signal.addEventListener("abort", () => {
    clearTimeout(quoteTimer);
    clearTimeout(refreshTimer);
  });

  function values() {
    const slippageText = slippageInput.value.trim();
    const slippage = slippageText === "" ? 50 : Number(slippageText);
    return {
      inputToken: inputSelect.value,
      outputToken: outputSelect.value,
      amount: amountInput.value.trim(),
      // Not an integer: sent as typed, so the server's problem names the field.
      slippageBps: Number.isInteger(slippage) ? slippage : slippageText,
    };
  }

  function scheduleQuote(delay = QUOTE_DEBOUNCE_MS) {
    clearTimeout(quoteTimer);
    clearTimeout(refreshTimer);
    quoteTimer = setTimeout(runQuote, delay);
  }

  async function runQuote() {
    const mine = ++quoteSeq;
    const v = values();
    if (!v.amount) {
      mount(preview, h("p", { class: "muted" }, "Enter an amount to compare every venue live."));
      return;
    }
    if (!/^(\d+\.?\d*|\.\d+)$/.test(v.amount)) {
      // Mid-typing ("1.", "-"): not worth a request that can only be refused.
      mount(preview, h("p", { class: "muted" }, "The amount is a positive decimal, like 1.5."));
      return;
    }
    if (v.inputToken === v.outputToken) {
      mount(preview, h("p", { class: "muted" }, "Pick two different tokens."));
      return;
    }
    if (!Number.isInteger(v.slippageBps) || v.slippageBps < 1 || v.slippageBps > 5000) {
      mount(preview, h("p", { class: "muted" }, "Slippage is 1 to 5000 basis points."));
      return;
    }
    const query = new URLSearchParams({
      inputToken: v.inputToken, outputToken: v.outputToken, amount: v.amount,
      slippageBps: String(v.slippageBps),
    });
    preview.classList.add("loading");
    try {
      const quote = await api(`/api/quote?${query}`);
      if (mine !== quoteSeq || signal.aborted) return;
      renderQuote(preview, quote);
    } catch (error) {
      if (mine !== quoteSeq || signal.aborted) return;
      const lines = error instanceof ApiError ? error.lines : ["Could not reach the engine."];
      mount(preview, h("div", { class: "quote-error" },
        h("strong", {}, "No quote"), lines.map((line) => h("p", {}, line))));
    } finally {
      if (mine === quoteSeq) {
        preview.classList.remove("loading");
        if (!signal.aborted) refreshTimer = setTimeout(refreshIfVisible, QUOTE_REFRESH_MS);
      }
    }
  }

  function refreshIfVisible() {
    if (document.hidden || byId("home").hidden) {
      refreshTimer = setTimeout(refreshIfVisible, QUOTE_REFRESH_MS);
    } else {
      runQuote();
    }
  }

  function showErrors(lines) {
    if (!lines.length) {
      errorBox.hidden = true;
      errorBox.replaceChildren();
      return;
    }
    const [first, ...rest] = lines;
    mount(errorBox, h("p", {}, first), rest.length ? h("ul", {}, rest.map((l) => h("li", {}, l))) : null);
    errorBox.hidden = false;
  }

  async function submit(event) {
    event.preventDefault();
    const body = { type: "market", ...values() };
    const fingerprint = JSON.stringify(body);
    // One Idempotency-Key per submission; the same key again only to retry the very same
    // order after an outcome we could not learn (network error, 5xx, 409 in flight), so
    // such a retry can never create a second order.
    const key = retry?.fingerprint === fingerprint ? retry.key : newIdempotencyKey();
    submitButton.disabled = true;
    submitButton.textContent = "Submitting…";
    showErrors([]);
    try {
      const answer = await api("/api/orders", {
        method: "POST", body, headers: { "Idempotency-Key": key },
      });
      retry = null;
      mount(submittedBox, `Queued ${fmtAmount(body.amount)} ${body.inputToken} → ${body.outputToken}: order `,
        h("a", { href: `#/orders/${answer.orderId}`, class: "mono" }, answer.orderId.slice(0, 8)),
        " (follow it in Your orders)");
      submittedBox.dataset.orderId = answer.orderId;
      submittedBox.hidden = false;
      onSubmitted(answer.orderId, body);
    } catch (error) {
      const unknownOutcome = !(error instanceof ApiError) || error.status >= 500 || error.status === 409;
      retry = unknownOutcome ? { fingerprint, key } : null;
      if (error instanceof ApiError) showErrors(error.lines);
      else showErrors(["Could not reach the engine; submitting again is safe (same Idempotency-Key)."]);
    } finally {
      submitButton.disabled = false;
      submitButton.textContent = "Submit order";
    }
  }

  const opts = { signal };
  form.addEventListener("submit", submit, opts);
  for (const el of [inputSelect, outputSelect, slippageInput]) {
    el.addEventListener("change", () => scheduleQuote(), opts);
  }
  for (const el of [amountInput, slippageInput]) el.addEventListener("input", () => scheduleQuote(), opts);
  // An error is about what was submitted; once the form changes it no longer applies.
  form.addEventListener("input", () => showErrors([]), opts);
  form.addEventListener("change", () => showErrors([]), opts);
  byId("swap-tokens").addEventListener("click", () => {
    [inputSelect.value, outputSelect.value] = [outputSelect.value, inputSelect.value];
    scheduleQuote(0);
  }, opts);

  try {
    const { tokens } = await api("/api/tokens");
    fillTokens(inputSelect, tokens, "SOL");
    fillTokens(outputSelect, tokens, "USDC");
  } catch (error) {
    if (signal.aborted) return;
    showErrors(error instanceof ApiError ? error.lines : ["Could not load the token list."]);
    return;
  }
  scheduleQuote(0);
}

function fillTokens(select, tokens, preferred) {
  const current = select.value || preferred;
  mount(select, tokens.map((t) => h("option", { value: t.symbol, title: `${t.name} · ${t.mint}` }, t.symbol)));
  if (tokens.some((t) => t.symbol === current)) select.value = current;
}

function renderQuote(preview, q) {
  const out = q.outputToken;
  mount(preview,
    h("div", { class: "quote-head" },
      h("strong", {}, `${fmtAmount(q.amount)} ${q.inputToken} → ${out}`),
      h("span", { class: "muted small" }, `quoted ${fmtTime(new Date().toISOString())}`)),
    quotesTable(q.quotes, {
      route: q.route, outputToken: out, inputToken: q.inputToken, testidPrefix: "quote-venue-",
    }),
    routeView(q.route, "quote-route"),
    facts([
      ["Expected out", `${fmtAmount(q.expectedAmountOut)} ${out}`, { testid: "quote-expected" }],
      [`Min out (${q.slippageBps} bps)`, `${fmtAmount(q.minAmountOut)} ${out}`, { testid: "quote-min" }],
      ["Price impact", q.priceImpactOverLimit
        // The order would fail before anything is sent (price_impact_too_high).
        ? `${impactText(q.priceImpactPct)}, over the ${fmtPct(q.maxPriceImpactBps / 100)} limit: an order would fail`
        : impactText(q.priceImpactPct), { testid: "quote-impact" }],
      ["vs single venue", versusBestSingle(q.expectedAmountOut, q.bestSingleVenue, out),
        { testid: "quote-vs-best" }],
    ]),
  );
}
