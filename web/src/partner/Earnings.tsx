// Earnings this period and last, per currency: rebates, BIP bonus, adjustments; every accrual with its
// explanation, and every recalculation that moved the figures (what changed, why, by how much). Live.

import { memo, useRef } from "react";
import { getAll, request } from "../api";
import { resolveCauses, type Cause } from "../causes";
import { Badge, DataTable, Empty, Loaded, Money, Section, When, type Column } from "../components";
import { currentPeriod, formatPeriod, previousPeriod } from "../format";
import { usePolled } from "../hooks";
import { totalsByCurrency } from "../money";
import { usePartnerLink } from "../nav";
import type { Accrual, LedgerEntry, Statement } from "../types";

interface PeriodData {
  period: string;
  statement: Statement;
  accruals: Accrual[];
  ledger: LedgerEntry[];
}

interface EarningsData {
  periods: PeriodData[];
  causes: Record<string, Cause>;
}

/** Entries that say something moved: repricings, BIP months settled again, dispute settlements. */
function isChange(entry: LedgerEntry): boolean {
  return entry.kind === "adjustment" || entry.kind === "dispute_settlement" || (entry.kind === "bip" && entry.revision > 1);
}

export function Earnings({ partnerId, staff }: { partnerId: string; staff: boolean }) {
  const causeCache = useRef(new Map<string, Cause>());
  const base = `/v1/partners/${encodeURIComponent(partnerId)}`;
  const state = usePolled<EarningsData>(async () => {
    const now = currentPeriod();
    const periods = [now, previousPeriod(now)];
    const loaded = await Promise.all(
      periods.map(async (period): Promise<PeriodData> => {
        const [statement, accruals, ledger] = await Promise.all([
          request<Statement>(`${base}/statements/${period}`),
          getAll<Accrual>(`${base}/accruals`, { period }),
          getAll<LedgerEntry>(`${base}/ledger`, { period }),
        ]);
        return { period, statement, accruals, ledger };
      }),
    );
    const changes = loaded.flatMap((p) => p.ledger.filter(isChange));
    causeCache.current = await resolveCauses(changes, partnerId, staff, causeCache.current);
    const causes: Record<string, Cause> = {};
    for (const entry of changes) {
      const cause = causeCache.current.get(entry.cause);
      if (cause) causes[entry.cause] = cause;
    }
    return { periods: loaded, causes };
  }, [partnerId, staff]);

  const latest = state.data?.periods
    .flatMap((p) => p.ledger.filter(isChange))
    .sort((a, b) => b.created_at.localeCompare(a.created_at))[0];

  return (
    <div className="earnings">
      <p className="live-note">
        <span className="live-dot" aria-hidden="true" /> Live: these figures refresh every second while this tab is open.
      </p>
      <div className="live-region" role="status" aria-live="polite" aria-atomic="true">
        {latest && state.data && (
          <p>
            Latest change: <Money amount={latest.amount} currency={latest.currency} signed /> on{" "}
            {latest.sale_id ? `sale ${latest.sale_id}` : latest.program_code}: {state.data.causes[latest.cause]?.summary}
          </p>
        )}
      </div>
      <Loaded state={state} what="earnings">
        {(data) =>
          data.periods.map((period, index) => (
            <PeriodPanel key={period.period} data={period} causes={data.causes} label={index === 0 ? "This period" : "Last period"} />
          ))
        }
      </Loaded>
    </div>
  );
}

const PeriodPanel = memo(function PeriodPanel({ data, causes, label }: { data: PeriodData; causes: Record<string, Cause>; label: string }) {
  const link = usePartnerLink();
  const changes = data.ledger.filter(isChange);
  return (
    <Section title={`${label}: ${formatPeriod(data.period)}`}>
      <p className="meta">
        Statement <Badge value={data.statement.status} />
        {data.statement.status === "open"
          ? " — figures follow every recalculation until the period is closed."
          : " — closed: its figures are final; later changes post into the next open period."}
      </p>
      <Totals statement={data.statement} />
      <Section title={`Accruals, ${formatPeriod(data.period)}`} level={3}>
        {data.accruals.length === 0 ? (
          <Empty>
            No sale of yours booked in {formatPeriod(data.period)} has been recorded yet. Sales appear here moments after your
            vendor's systems record them; preregister customers under <a href={link("accounts")}>Accounts</a> so their sales are
            credited to you.
          </Empty>
        ) : (
          <AccrualTable accruals={data.accruals} ledger={data.ledger} causes={causes} period={data.period} />
        )}
      </Section>
      <Section title={`Recalculations that moved ${formatPeriod(data.period)}`} level={3}>
        {changes.length === 0 ? (
          <Empty>Nothing has been repriced in this period. When a reclassification, a tier or rate change moves a figure, it is listed here with its cause.</Empty>
        ) : (
          <ChangeList entries={changes} causes={causes} />
        )}
      </Section>
    </Section>
  );
});

function Totals({ statement }: { statement: Statement }) {
  if (statement.totals.length === 0) {
    return <Empty>No earnings in this period yet.</Empty>;
  }
  return (
    <div className="totals">
      {statement.totals.map((t) => (
        <dl className="total-card" key={t.currency} aria-label={`Totals in ${t.currency}`}>
          <div>
            <dt>Rebates</dt>
            <dd><Money amount={t.rebate} currency={t.currency} /></dd>
          </div>
          <div>
            <dt>BIP bonus</dt>
            <dd><Money amount={t.bip_bonus} currency={t.currency} /></dd>
          </div>
          <div>
            <dt>Adjustments</dt>
            <dd><Money amount={t.adjustments} currency={t.currency} signed /></dd>
          </div>
          <div className="grand">
            <dt>Total {t.currency}</dt>
            <dd><Money amount={t.total} currency={t.currency} /></dd>
          </div>
          <div className="sub">
            <dt>Eligible revenue</dt>
            <dd><Money amount={t.eligible_revenue} currency={t.currency} /></dd>
          </div>
        </dl>
      ))}
    </div>
  );
}

function AccrualTable({ accruals, ledger, causes, period }: { accruals: Accrual[]; ledger: LedgerEntry[]; causes: Record<string, Cause>; period: string }) {
  const columns: Column<Accrual>[] = [
    { header: "Sale", cell: (a) => <span className="mono nowrap">{a.sale_id}</span> },
    { header: "Program", cell: (a) => a.program_code ?? "—" },
    {
      header: "Sale amount",
      cell: (a) => (
        <>
          <Money amount={a.base_amount} currency={a.base_currency} />
          {a.fx_rate && a.fx_rate !== "1" && <span className="meta"> at {a.fx_rate}</span>}
        </>
      ),
      className: "num",
    },
    { header: "Rate", cell: (a) => a.rate ?? "—", className: "num" },
    { header: "Earned", cell: (a) => <Money amount={a.amount} currency={a.currency} />, className: "num" },
    { header: "Status", cell: (a) => <Badge value={a.status} /> },
    {
      header: "Why",
      cell: (a) => {
        const moves = ledger.filter((e) => e.sale_id === a.sale_id && e.program_code === a.program_code && isChange(e));
        return (
          <>
            <p className="explanation">{a.explanation}</p>
            {moves.length > 0 && (
              <ul className="moves" aria-label={`Changes to sale ${a.sale_id}`}>
                {moves.map((m) => (
                  <li key={m.id}>
                    <Money amount={m.amount} currency={m.currency} signed />: {causes[m.cause]?.summary ?? "repriced"}
                  </li>
                ))}
              </ul>
            )}
          </>
        );
      },
      className: "wide",
    },
  ];
  const sums = totalsByCurrency(accruals, (a) => a.currency, (a) => a.amount);
  return (
    <>
      <DataTable caption={`Each sale's accrual in ${formatPeriod(period)}, as it stands now`} rows={accruals} columns={columns} rowKey={(a) => `${a.sale_id}:${a.program_code}`} />
      <p className="meta">
        Accrued on these sales:{" "}
        {sums.map((s, i) => (
          <span key={s.currency}>
            {i > 0 && ", "}
            <Money amount={s.amount} currency={s.currency} />
          </span>
        ))}
      </p>
    </>
  );
}

function ChangeList({ entries, causes }: { entries: LedgerEntry[]; causes: Record<string, Cause> }) {
  const groups = new Map<string, LedgerEntry[]>();
  for (const entry of entries) groups.set(entry.cause, [...(groups.get(entry.cause) ?? []), entry]);
  const ordered = [...groups.entries()].sort(
    ([, a], [, b]) => b[0].created_at.localeCompare(a[0].created_at),
  );
  return (
    <ol className="changes">
      {ordered.map(([cause, group]) => (
        <ChangeGroup key={cause} cause={causes[cause]} entries={group} />
      ))}
    </ol>
  );
}

const ChangeGroup = memo(function ChangeGroup({ cause, entries }: { cause: Cause | undefined; entries: LedgerEntry[] }) {
  const sums = totalsByCurrency(entries, (e) => e.currency, (e) => e.amount);
  return (
    <li className="change">
      <p className="change-head">
        <strong>
          {sums.map((s, i) => (
            <span key={s.currency}>
              {i > 0 && ", "}
              <Money amount={s.amount} currency={s.currency} signed />
            </span>
          ))}
        </strong>{" "}
        — {cause?.summary ?? "Working out what caused this…"}
      </p>
      <p className="meta">
        Recorded <When value={entries[0].created_at} />
        {cause?.actor ? ` · changed by ${cause.actor}` : ""}
        {entries[0].run_id ? ` · recalculation run ${entries[0].run_id.slice(0, 8)}` : ""}
      </p>
      <ul>
        {entries.map((e) => (
          <li key={e.id}>
            {e.sale_id ? <>Sale <span className="mono">{e.sale_id}</span></> : "Business incentive month"}
            {e.program_code ? ` under ${e.program_code}` : ""}
            {e.sale_period !== e.period ? ` (a sale of ${formatPeriod(e.sale_period)})` : ""}:{" "}
            <Money amount={e.amount} currency={e.currency} signed />
          </li>
        ))}
      </ul>
    </li>
  );
});
