// Amounts arrive as decimal strings with two places ("1250.00", "-3.50"); sums are made in integer cents
// (BigInt) so no figure ever passes through floating point.

export function toCents(amount: string): bigint {
  const match = /^([+-]?)(\d+)(?:\.(\d{1,2}))?$/.exec(amount.trim());
  if (!match) throw new Error(`not a money amount: ${amount}`);
  const [, sign, whole, fraction = ""] = match;
  const cents = BigInt(whole) * 100n + BigInt((fraction + "00").slice(0, 2));
  return sign === "-" ? -cents : cents;
}

export function fromCents(cents: bigint): string {
  const negative = cents < 0n;
  const abs = negative ? -cents : cents;
  const whole = abs / 100n;
  const fraction = (abs % 100n).toString().padStart(2, "0");
  return `${negative ? "-" : ""}${whole}.${fraction}`;
}

export function sumAmounts(amounts: Iterable<string>): string {
  let total = 0n;
  for (const amount of amounts) total += toCents(amount);
  return fromCents(total);
}

export function isNegative(amount: string): boolean {
  return toCents(amount) < 0n;
}

export function isZero(amount: string): boolean {
  return toCents(amount) === 0n;
}

const formatters = new Map<string, Intl.NumberFormat>();

/** The amount in the user's locale and the currency's own symbol, formatted from the decimal string itself. */
export function formatMoney(amount: string, currency: string, signed = false): string {
  const key = `${currency}:${signed}`;
  let formatter = formatters.get(key);
  if (!formatter) {
    formatter = new Intl.NumberFormat(undefined, {
      style: "currency",
      currency,
      signDisplay: signed ? "exceptZero" : "auto",
    });
    formatters.set(key, formatter);
  }
  // Intl formats a decimal string exactly (no conversion to a binary float).
  return formatter.format(amount as Intl.StringNumericLiteral);
}

/** Groups amounts by currency and sums each group in cents. */
export function totalsByCurrency<T>(rows: T[], currency: (row: T) => string, amount: (row: T) => string) {
  const totals = new Map<string, bigint>();
  for (const row of rows) {
    const code = currency(row);
    totals.set(code, (totals.get(code) ?? 0n) + toCents(amount(row)));
  }
  return [...totals.entries()]
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([code, cents]) => ({ currency: code, amount: fromCents(cents) }));
}

/** The ratio of two amounts as a fraction in [0, 1], for drawing only (never for a figure shown as money). */
export function ratio(part: string, whole: string): number {
  const w = toCents(whole);
  if (w <= 0n) return 0;
  const p = toCents(part);
  if (p <= 0n) return 0;
  if (p >= w) return 1;
  return Number((p * 10000n) / w) / 10000;
}
