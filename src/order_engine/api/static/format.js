// Formatting. Amounts arrive as exact decimal strings and are shown exactly (a trader
// must see the number the engine used); comparisons between them use BigInt, never floats.
// Prices are only displayed, so a float with limited significant digits is fine there.

const DASH = "—";

const pctFormat = new Intl.NumberFormat("en-US", { maximumSignificantDigits: 3 });

/** A relative difference: "+0.0000132%" (a router's gain on a small order is tiny). */
export function fmtSignedPct(pct) {
  if (pct === null || pct === undefined || !Number.isFinite(pct)) return "—";
  return `${pct > 0 ? "+" : ""}${pctFormat.format(pct)}%`;
}

/** "376043.577457" -> "376,043.577457" (digits kept exactly). */
export function fmtAmount(value) {
  if (value === null || value === undefined || value === "") return DASH;
  const text = String(value);
  const [whole, fraction] = text.split(".");
  const sign = whole.startsWith("-") ? "-" : "";
  const digits = sign ? whole.slice(1) : whole;
  const grouped = digits.replace(/\B(?=(\d{3})+(?!\d))/g, ",");
  return fraction === undefined ? sign + grouped : `${sign}${grouped}.${fraction}`;
}

const priceFormat = new Intl.NumberFormat("en-US", { maximumSignificantDigits: 7 });

/** Prices span 1e-7 (BONK/SOL) to 1e5: significant digits, never an exponent. */
export function fmtPrice(value) {
  if (value === null || value === undefined || value === "") return DASH;
  const number = Number(value);
  return Number.isFinite(number) ? priceFormat.format(number) : String(value);
}

export function fmtPct(value, digits = 2) {
  if (value === null || value === undefined || !Number.isFinite(Number(value))) return DASH;
  return `${Number(value).toFixed(digits)}%`;
}

export function fmtTime(iso) {
  if (!iso) return DASH;
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? DASH : date.toLocaleTimeString("en-GB", { hour12: false });
}

/** 08:13:50.217: stages last a few hundred milliseconds, seconds are not enough. */
export function fmtTimeMs(iso) {
  if (!iso) return DASH;
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return DASH;
  return `${fmtTime(iso)}.${String(date.getMilliseconds()).padStart(3, "0")}`;
}

export function fmtDuration(ms) {
  if (ms === null || ms === undefined || !Number.isFinite(ms)) return DASH;
  if (ms < 1000) return `${Math.max(0, Math.round(ms))} ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(ms < 10_000 ? 2 : 1)} s`;
  const minutes = Math.floor(ms / 60_000);
  const seconds = Math.round((ms % 60_000) / 1000);
  return `${minutes} m ${String(seconds).padStart(2, "0")} s`;
}

/** The middle of a long base58 signature, elided for tables. */
export function shortHash(hash, keep = 8) {
  if (!hash) return DASH;
  return hash.length <= keep * 2 + 1 ? hash : `${hash.slice(0, keep)}…${hash.slice(-keep)}`;
}

// --- exact decimals -------------------------------------------------------------------

/** "226.077337" -> { units: 226077337n, scale: 6 }, or null if it is not a decimal. */
function parseDecimal(text) {
  const match = /^(-?)(\d+)(?:\.(\d+))?$/.exec(String(text ?? "").trim());
  if (!match) return null;
  const fraction = match[3] ?? "";
  const units = BigInt(match[2] + fraction) * (match[1] ? -1n : 1n);
  return { units, scale: fraction.length };
}

function rescale({ units, scale }, to) {
  return units * 10n ** BigInt(to - scale);
}

function formatUnits(units, scale) {
  const negative = units < 0n;
  const digits = (negative ? -units : units).toString().padStart(scale + 1, "0");
  const whole = digits.slice(0, digits.length - scale);
  const fraction = scale ? digits.slice(digits.length - scale).replace(/0+$/, "") : "";
  return `${negative ? "-" : ""}${whole}${fraction ? `.${fraction}` : ""}`;
}

/** a - b exactly, and (a - b) / b in percent (a float: only shown); null if either is missing. */
export function compareDecimals(a, b) {
  const x = parseDecimal(a);
  const y = parseDecimal(b);
  if (!x || !y) return null;
  const scale = Math.max(x.scale, y.scale);
  const diff = rescale(x, scale) - rescale(y, scale);
  const base = rescale(y, scale);
  // 1e14 keeps ~12 significant digits of a tiny difference before the float.
  const pct = base === 0n ? null : Number((diff * 100_000_000_000_000n) / base) / 1e12;
  return { diff: formatUnits(diff, scale), sign: diff === 0n ? 0 : diff > 0n ? 1 : -1, pct };
}
