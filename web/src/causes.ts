// What moved a ledger entry, in words: each entry's `cause` is the id of the event (or dispute) behind it,
// which the partner can follow to its account's history, its own history, the FX timelines or its disputes.

import { ApiError, get, getAll, query } from "./api";
import { formatDate, humanize } from "./format";
import type {
  Account,
  AccountHistoryEntry,
  Dispute,
  FxTimeline,
  LedgerEntry,
  PartnerHistoryEntry,
  RecalculationRun,
} from "./types";

export interface Cause {
  /** One sentence: what changed and why. */
  summary: string;
  at: string | null;
  actor: string | null;
  kind: string;
}

function str(value: unknown): string {
  return typeof value === "string" ? value : value === null || value === undefined ? "" : JSON.stringify(value);
}

function ownerWords(id: string | null, partnerId: string): string {
  if (!id) return "no partner";
  return id === partnerId ? "you" : "another partner";
}

function fromAccount(entry: AccountHistoryEntry, name: string, partnerId: string): Cause {
  const reason = entry.reason ? ` Reason: “${entry.reason}”.` : "";
  const when = `effective ${formatDate(entry.effective_from)}`;
  if (entry.kind === "classification") {
    return {
      kind: "account.reclassified",
      summary: `Account ${name} was reclassified from ${entry.from ?? "—"} to ${entry.to ?? "—"}, ${when}.${reason}`,
      at: entry.recorded_at,
      actor: entry.actor,
    };
  }
  return {
    kind: "account.ownership_changed",
    summary: `Account ${name} changed owner from ${ownerWords(entry.from, partnerId)} to ${ownerWords(entry.to, partnerId)}, ${when}.${reason}`,
    at: entry.recorded_at,
    actor: entry.actor,
  };
}

function fromPartner(entry: PartnerHistoryEntry): Cause {
  const d = entry.detail;
  let summary: string;
  switch (entry.change) {
    case "tier_changed":
      summary = `Your tier changed from ${str(d.from)} to ${str(d.to)}, effective ${formatDate(str(d.effective_from))}.`;
      break;
    case "status_changed":
      summary = `Your status changed from ${str(d.from)} to ${str(d.to)}${d.reason ? ` (“${str(d.reason)}”)` : ""}.`;
      break;
    case "certification_granted": {
      const c = (d.certification ?? {}) as Record<string, unknown>;
      summary = `Certification ${str(c.code)} was granted from ${formatDate(str(c.issued_at))}.`;
      break;
    }
    case "certification_revoked":
    case "certification_expired":
      summary = `Certification ${str(d.code ?? (d.certification as Record<string, unknown> | undefined)?.code)} ${entry.change === "certification_revoked" ? "was revoked" : "expired"}.`;
      break;
    default:
      summary = `Partner record: ${humanize(entry.change)}.`;
  }
  return { kind: `partner.${entry.change}`, summary, at: entry.at, actor: entry.actor };
}

function fromRun(run: RecalculationRun): Cause {
  const what = run.fx_pair ? `${humanize(run.trigger_type)} (${run.fx_pair})` : humanize(run.trigger_type);
  const from = run.effective_from ? `, effective ${formatDate(run.effective_from)}` : "";
  return {
    kind: run.trigger_type,
    summary: `A recalculation after ${what}${from} recomputed ${run.sales_recomputed} sale(s), ${run.sales_changed} changed.`,
    at: run.started_at,
    actor: null,
  };
}

async function quiet<T>(promise: Promise<T>): Promise<T | null> {
  try {
    return await promise;
  } catch (error) {
    if (error instanceof ApiError && error.status !== 401) return null;
    throw error;
  }
}

/**
 * Resolves the causes of the given entries that `known` does not hold yet. Entries whose cause cannot be
 * followed (a product or program change, readable only as the event id) get a plain sentence.
 */
export async function resolveCauses(
  entries: LedgerEntry[],
  partnerId: string,
  staff: boolean,
  known: Map<string, Cause>,
): Promise<Map<string, Cause>> {
  const missing = entries.filter((entry) => !known.has(entry.cause));
  if (!missing.length) return known;
  const found = new Map(known);
  const wanted = new Set(missing.map((entry) => entry.cause));
  const accountIds = [...new Set(missing.map((entry) => entry.account_id).filter((id): id is string => Boolean(id)))];

  const [accounts, partnerHistory, fx, runs] = await Promise.all([
    quiet(getAll<Account>("/v1/accounts", staff ? {} : { owner_partner_id: partnerId }, 4)),
    quiet(get<PartnerHistoryEntry[]>(`/v1/partners/${encodeURIComponent(partnerId)}/history`)),
    missing.some((entry) => entry.kind === "adjustment") ? quiet(get<{ items: FxTimeline[] }>("/v1/fx-rates?history=true")) : null,
    staff ? quiet(getAll<RecalculationRun>("/v1/recalculations", { partner_id: partnerId }, 2)) : null,
  ]);
  const names = new Map((accounts ?? []).map((a) => [a.id, a.name]));
  const histories = await Promise.all(
    accountIds.map((id) => quiet(get<AccountHistoryEntry[]>(`/v1/accounts/${encodeURIComponent(id)}/history`))),
  );
  histories.forEach((history, index) => {
    for (const entry of history ?? []) {
      if (wanted.has(entry.event_id) && entry.cause !== "created") {
        found.set(entry.event_id, fromAccount(entry, names.get(accountIds[index]) ?? "(account)", partnerId));
      }
    }
  });
  for (const entry of partnerHistory ?? []) {
    if (entry.event_id && wanted.has(entry.event_id) && !found.has(entry.event_id)) found.set(entry.event_id, fromPartner(entry));
  }
  for (const timeline of fx?.items ?? []) {
    for (const point of timeline.rates) {
      if (wanted.has(point.event_id) && !found.has(point.event_id)) {
        const replaced = point.replaced_rate ? `, correcting ${point.replaced_rate}` : "";
        found.set(point.event_id, {
          kind: "fx_rate.changed",
          summary: `The ${timeline.base}/${timeline.quote} rate from ${formatDate(point.effective_from)} was set to ${point.rate}${replaced}.`,
          at: point.recorded_at,
          actor: point.recorded_by,
        });
      }
    }
  }
  for (const run of runs ?? []) {
    if (wanted.has(run.trigger_event_id) && !found.has(run.trigger_event_id)) found.set(run.trigger_event_id, fromRun(run));
  }
  const settlements = missing.filter((entry) => entry.kind === "dispute_settlement" && !found.has(entry.cause));
  await Promise.all(
    settlements.map(async (entry) => {
      const dispute = await quiet(get<Dispute>(`/v1/disputes/${encodeURIComponent(entry.cause)}`));
      found.set(entry.cause, {
        kind: "dispute.resolved",
        summary: dispute
          ? `Your dispute about ${dispute.period}${dispute.sale_id ? ` (sale ${dispute.sale_id})` : ""} was accepted: “${dispute.decision_reason ?? ""}”.`
          : "A dispute settlement.",
        at: dispute?.decided_at ?? null,
        actor: dispute?.decided_by ?? null,
      });
    }),
  );
  for (const entry of missing) {
    if (!found.has(entry.cause)) {
      found.set(entry.cause, {
        kind: entry.kind,
        summary:
          entry.kind === "original"
            ? "The sale was first priced."
            : entry.kind === "bip"
              ? "The month's eligible revenue moved, so the business incentive bonus was settled again."
              : "Repriced after a change to a product, a program or the sale itself.",
        at: null,
        actor: null,
      });
    }
  }
  return found;
}

export const runsQuery = (partnerId: string) => `/v1/recalculations${query({ partner_id: partnerId })}`;
