// Statements: a month's totals and lines, CSV and PDF downloads, confirmation, disputes (open, withdraw).

import { useId, useState } from "react";
import { download, get, getPage, request } from "../api";
import {
  Badge, DataTable, Empty, FormStatus, LoadMore, Loaded, Money, ProblemAlert, Section, SelectField, TextArea, TextField, When,
  formValues, useSubmit,
} from "../components";
import { currentPeriod, formatPeriod, humanize, previousPeriod } from "../format";
import { usePagedList, usePolled } from "../hooks";
import { usePartnerLink } from "../nav";
import type { Dispute, Statement, StatementLine } from "../types";

export function Statements({ partnerId, period, isPartner }: { partnerId: string; period?: string; isPartner: boolean }) {
  const now = currentPeriod();
  const chosen = period && /^\d{4}-\d{2}$/.test(period) ? period : previousPeriod(now);
  return (
    <>
      <PeriodPicker chosen={chosen} />
      <StatementView key={chosen} partnerId={partnerId} period={chosen} isPartner={isPartner} />
      <Disputes partnerId={partnerId} isPartner={isPartner} />
    </>
  );
}

function PeriodPicker({ chosen }: { chosen: string }) {
  const link = usePartnerLink();
  const id = useId();
  const now = currentPeriod();
  const recent = [now, previousPeriod(now), previousPeriod(previousPeriod(now))];
  return (
    <div className="period-picker">
      <nav aria-label="Recent statements">
        <ul className="pills">
          {recent.map((p) => (
            <li key={p}>
              <a href={link(`statements/${p}`)} aria-current={p === chosen ? "page" : undefined}>
                {formatPeriod(p)}
              </a>
            </li>
          ))}
        </ul>
      </nav>
      <form
        className="inline"
        onSubmit={(event) => {
          event.preventDefault();
          const value = String(new FormData(event.currentTarget).get("period") ?? "");
          if (/^\d{4}-\d{2}$/.test(value)) window.location.hash = link(`statements/${value}`);
        }}
      >
        <label htmlFor={id}>Another month</label>
        <input id={id} name="period" type="month" defaultValue={chosen} required />
        <button type="submit" className="secondary">
          Show
        </button>
      </form>
    </div>
  );
}

function StatementView({ partnerId, period, isPartner }: { partnerId: string; period: string; isPartner: boolean }) {
  const base = `/v1/partners/${encodeURIComponent(partnerId)}/statements/${period}`;
  const statement = usePolled(() => get<Statement>(base), [base]);
  const lines = usePagedList((cursor) => getPage<StatementLine>(`${base}/lines`, { limit: 100 }, cursor), [base]);
  const files = useSubmit();
  const confirm = useSubmit();
  const [showDispute, setShowDispute] = useState(false);

  return (
    <Section title={`Statement for ${formatPeriod(period)}`}>
      <Loaded state={statement} what="the statement">
        {(s) => (
          <>
            <p className="meta">
              <Badge value={s.status} />{" "}
              {s.status === "open"
                ? "This month is still open: its figures follow every recalculation until it is closed."
                : s.confirmed_at
                  ? <>Confirmed by {s.confirmed_by} on <When value={s.confirmed_at} />.</>
                  : "Closed: its figures are final. Confirm it, or dispute what you believe is wrong."}
            </p>
            {s.totals.length === 0 ? (
              <Empty>Nothing was posted into {formatPeriod(period)}. Pick another month above.</Empty>
            ) : (
              <DataTable
                caption={`Totals per currency, ${formatPeriod(period)}`}
                rows={s.totals}
                rowKey={(t) => t.currency}
                columns={[
                  { header: "Currency", cell: (t) => t.currency },
                  { header: "Eligible revenue", cell: (t) => <Money amount={t.eligible_revenue} currency={t.currency} />, className: "num" },
                  { header: "Rebates", cell: (t) => <Money amount={t.rebate} currency={t.currency} />, className: "num" },
                  { header: "BIP bonus", cell: (t) => <Money amount={t.bip_bonus} currency={t.currency} />, className: "num" },
                  { header: "Adjustments", cell: (t) => <Money amount={t.adjustments} currency={t.currency} signed />, className: "num" },
                  { header: "Total", cell: (t) => <strong><Money amount={t.total} currency={t.currency} /></strong>, className: "num" },
                ]}
              />
            )}
            <div className="actions">
              <button
                type="button"
                className="secondary"
                disabled={files.busy}
                onClick={() => files.run(async () => `Downloaded ${await download(base, "text/csv", `statement-${partnerId}-${period}.csv`)}.`)}
              >
                Download CSV
              </button>
              <button
                type="button"
                className="secondary"
                disabled={files.busy}
                onClick={() => files.run(async () => `Downloaded ${await download(base, "application/pdf", `statement-${partnerId}-${period}.pdf`)}.`)}
              >
                Download PDF
              </button>
              {isPartner && s.status === "closed" && !s.confirmed_at && (
                <button
                  type="button"
                  disabled={confirm.busy}
                  onClick={() => confirm.run(async () => {
                    await request<Statement>(`${base}/confirmation`, { method: "POST" });
                    return `You confirmed the statement for ${formatPeriod(period)}.`;
                  })}
                >
                  Confirm statement
                </button>
              )}
              {s.status === "closed" && (
                <button type="button" className="secondary" aria-expanded={showDispute} onClick={() => setShowDispute((v) => !v)}>
                  Dispute…
                </button>
              )}
            </div>
            <FormStatus submit={files} />
            <FormStatus submit={confirm} />
            {showDispute && <DisputeForm partnerId={partnerId} period={period} currencies={s.totals.map((t) => t.currency)} />}
          </>
        )}
      </Loaded>
      <Section title="Lines" level={3}>
        <Loaded state={lines} what="the statement's lines">
          {(items) =>
            items.length === 0 ? (
              <Empty>No lines: no ledger entry was posted into this month.</Empty>
            ) : (
              <DataTable
                caption={`Every ledger entry posted into ${formatPeriod(period)}`}
                rows={items}
                rowKey={(l) => l.entry_id}
                columns={[
                  { header: "Posted", cell: (l) => <When value={l.posted_at} /> },
                  { header: "Kind", cell: (l) => <Badge value={l.kind} /> },
                  { header: "Sale", cell: (l) => (l.sale_id ? <span className="mono">{l.sale_id}</span> : "—") },
                  { header: "Program", cell: (l) => l.program_code ?? "—" },
                  { header: "Amount", cell: (l) => <Money amount={l.amount} currency={l.currency} signed />, className: "num" },
                  { header: "Explanation", cell: (l) => l.explanation, className: "wide" },
                ]}
              />
            )
          }
        </Loaded>
        <LoadMore list={lines} />
      </Section>
    </Section>
  );
}

function DisputeForm({ partnerId, period, currencies }: { partnerId: string; period: string; currencies: string[] }) {
  const submit = useSubmit();
  const errors = submit.fieldErrors;
  return (
    <form
      className="form inline-form"
      aria-label={`Dispute the statement for ${formatPeriod(period)}`}
      onSubmit={async (event) => {
        event.preventDefault();
        const form = event.currentTarget;
        const v = formValues(form);
        const body = {
          partner_id: partnerId,
          period,
          sale_id: v.sale_id || null,
          program_code: v.program_code || null,
          currency: v.currency,
          claimed_amount: v.claimed_amount,
          reason: v.reason,
        };
        const ok = await submit.run(async () => {
          const dispute = await request<Dispute>("/v1/disputes", { method: "POST", body, idempotencyKey: submit.idempotencyKeyFor(body) });
          return `Dispute opened (${dispute.id.slice(0, 8)}): ${dispute.claimed_amount} ${dispute.currency}. Staff will review it.`;
        });
        if (ok) form.reset();
      }}
    >
      <h3>Open a dispute</h3>
      <p className="hint">Dispute the whole statement, one sale, or one sale under one program.</p>
      <div className="field-row">
        <TextField label="Sale id (optional)" name="sale_id" error={errors.sale_id} />
        <TextField label="Program code (optional)" name="program_code" error={errors.program_code} />
        {currencies.length > 0 ? (
          <SelectField label="Currency" name="currency" required options={currencies.map((c) => ({ value: c, label: c }))} error={errors.currency} />
        ) : (
          <TextField label="Currency" name="currency" required error={errors.currency} />
        )}
        <TextField label="Amount you believe you are owed" name="claimed_amount" required inputMode="decimal" error={errors.claimed_amount} hint="Beyond the statement; negative if overpaid" />
      </div>
      <TextArea label="Reason" name="reason" required error={errors.reason} />
      <button type="submit" disabled={submit.busy}>
        {submit.busy ? "Opening…" : "Open dispute"}
      </button>
      <FormStatus submit={submit} />
    </form>
  );
}

function Disputes({ partnerId, isPartner }: { partnerId: string; isPartner: boolean }) {
  const list = usePagedList((cursor) => getPage<Dispute>("/v1/disputes", { partner_id: partnerId }, cursor), [partnerId]);
  const withdraw = useSubmit();
  return (
    <Section title="Disputes">
      <ProblemAlert error={withdraw.error} />
      <Loaded state={list} what="disputes">
        {(items) =>
          items.length === 0 ? (
            <Empty>No disputes. If a closed statement looks wrong, choose “Dispute…” on it.</Empty>
          ) : (
            <DataTable
              caption="Your disputes and their outcome"
              rows={items}
              rowKey={(d) => d.id}
              columns={[
                { header: "Opened", cell: (d) => <When value={d.created_at} /> },
                { header: "Statement", cell: (d) => formatPeriod(d.period) },
                { header: "About", cell: (d) => [d.sale_id && `sale ${d.sale_id}`, d.program_code].filter(Boolean).join(" under ") || "whole statement" },
                { header: "Claimed", cell: (d) => <Money amount={d.claimed_amount} currency={d.currency} signed />, className: "num" },
                { header: "Status", cell: (d) => <Badge value={d.status} /> },
                {
                  header: "Outcome",
                  cell: (d) =>
                    d.status === "open" ? (
                      isPartner ? (
                        <button type="button" className="secondary small" disabled={withdraw.busy} onClick={() => withdraw.run(async () => {
                          await request(`/v1/disputes/${encodeURIComponent(d.id)}/withdraw`, { method: "POST" });
                          return "Dispute withdrawn.";
                        })}>
                          Withdraw
                        </button>
                      ) : "awaiting review"
                    ) : (
                      <>
                        {humanize(d.status)}
                        {d.settlement && <> · settled <Money amount={d.settlement.amount} currency={d.currency} signed /> in {formatPeriod(d.settlement.period)}</>}
                        {d.decision_reason && <> · “{d.decision_reason}”</>}
                      </>
                    ),
                  className: "wide",
                },
              ]}
            />
          )
        }
      </Loaded>
      <LoadMore list={list} />
      <p className="success" role="status">{withdraw.message}</p>
    </Section>
  );
}
