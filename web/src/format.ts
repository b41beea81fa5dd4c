// Dates and times in the user's own locale; the APIs speak RFC 3339 UTC.

const dateTime = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short" });
const dateOnly = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeZone: "UTC" });
const monthOnly = new Intl.DateTimeFormat(undefined, { year: "numeric", month: "long", timeZone: "UTC" });

export function formatDateTime(value: string | null | undefined): string {
  if (!value) return "—";
  const date = new Date(value);
  return Number.isNaN(date.getTime()) ? value : dateTime.format(date);
}

/** A calendar date (deadlines, effective dates at midnight UTC) shown without a time of day. */
export function formatDate(value: string | null | undefined): string {
  if (!value) return "—";
  const date = new Date(value.length === 10 ? `${value}T00:00:00Z` : value);
  return Number.isNaN(date.getTime()) ? value : dateOnly.format(date);
}

/** A period "2026-11" as "November 2026". */
export function formatPeriod(period: string): string {
  const date = new Date(`${period}-01T00:00:00Z`);
  return Number.isNaN(date.getTime()) ? period : monthOnly.format(date);
}

export function periodOf(date: Date): string {
  return `${date.getUTCFullYear()}-${String(date.getUTCMonth() + 1).padStart(2, "0")}`;
}

export function previousPeriod(period: string): string {
  const [year, month] = period.split("-").map(Number);
  return month === 1 ? `${year - 1}-12` : `${year}-${String(month - 1).padStart(2, "0")}`;
}

export function currentPeriod(): string {
  return periodOf(new Date());
}

/** A value for <input type="datetime-local"> as an RFC 3339 UTC timestamp (the input is read as UTC). */
export function localInputToUtc(value: string): string {
  if (!value) return value;
  return value.length === 16 ? `${value}:00Z` : `${value}Z`;
}

export function todayIso(offsetDays = 0): string {
  const date = new Date(Date.now() + offsetDays * 86_400_000);
  return date.toISOString().slice(0, 10);
}

export function nowInput(): string {
  return new Date().toISOString().slice(0, 16);
}

export function shortId(id: string): string {
  return id.length > 12 ? id.slice(0, 8) : id;
}

export function humanize(value: string): string {
  return value.replace(/[_.]/g, " ");
}
