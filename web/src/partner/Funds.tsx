// Marketing funds: balances, applying, requests with their claim deadlines, claiming and completing.

import { useState } from "react";
import { get, getAll, getPage, request } from "../api";
import {
  Badge, DataTable, Empty, FormStatus, LoadMore, Loaded, Money, ProblemAlert, Section, SelectField, TextArea, TextField, When,
  formValues, useEtagOf, useSubmit,
} from "../components";
import { todayIso } from "../format";
import { usePagedList, usePolled } from "../hooks";
import type { Claim, Fund, FundBalance, FundRequest, Page } from "../types";

export function Funds({ partnerId, isPartner }: { partnerId: string; isPartner: boolean }) {
  const balances = usePolled(
    () => getAll<FundBalance>(`/v1/partners/${encodeURIComponent(partnerId)}/fund-balances`),
    [partnerId],
  );
  const requests = usePagedList((cursor) => getPage<FundRequest>("/v1/fund-requests", { partner_id: partnerId }, cursor), [partnerId]);
  const claims = usePagedList((cursor) => getPage<Claim>("/v1/fund-claims", { partner_id: partnerId }, cursor), [partnerId]);
  return (
    <>
      <Section title="Fund balances">
        <Loaded state={balances} what="fund balances">
          {(items) =>
            items.length === 0 ? (
              <Empty>No fund is open to you yet. Funds that accrue from your sales appear here once you earn into them.</Empty>
            ) : (
              <DataTable
                caption="What you have earned, committed, been paid and can still use, per fund"
                rows={items}
                rowKey={(b) => b.fund_code}
                columns={[
                  { header: "Fund", cell: (b) => <>{b.fund_code} <span className="meta">{b.kind.toUpperCase()}</span></> },
                  { header: "Earned", cell: (b) => (b.earned === null ? (b.per_partner_limit ? <>limit <Money amount={b.per_partner_limit} currency={b.currency} /></> : "budget") : <Money amount={b.earned} currency={b.currency} />), className: "num" },
                  { header: "Committed", cell: (b) => <Money amount={b.committed} currency={b.currency} />, className: "num" },
                  { header: "Paid", cell: (b) => <Money amount={b.paid} currency={b.currency} />, className: "num" },
                  { header: "Lapsed", cell: (b) => <Money amount={b.lapsed} currency={b.currency} />, className: "num" },
                  { header: "Available", cell: (b) => <strong><Money amount={b.available} currency={b.currency} /></strong>, className: "num" },
                ]}
              />
            )
          }
        </Loaded>
      </Section>
      <Apply partnerId={partnerId} />
      <Section title="Fund requests">
        <Loaded state={requests} what="fund requests">
          {(items) =>
            items.length === 0 ? (
              <Empty>No requests yet. Apply above for an activity at least 10 working days before it starts.</Empty>
            ) : (
              <ul className="cards">
                {items.map((r) => (
                  <RequestCard key={r.id} request={r} isPartner={isPartner} />
                ))}
              </ul>
            )
          }
        </Loaded>
        <LoadMore list={requests} />
      </Section>
      <Section title="Claims">
        <Loaded state={claims} what="claims">
          {(items) =>
            items.length === 0 ? (
              <Empty>No claims yet. Once a request is approved and the activity has run, claim what it cost with a link to the proof.</Empty>
            ) : (
              <DataTable
                caption="Your claims"
                rows={items}
                rowKey={(c) => c.id}
                columns={[
                  { header: "Fund", cell: (c) => c.fund_code },
                  { header: "Amount", cell: (c) => <Money amount={c.amount} currency={c.currency} />, className: "num" },
                  { header: "Status", cell: (c) => <Badge value={c.status} /> },
                  { header: "Proof", cell: (c) => <a href={c.proof_uri} rel="noreferrer noopener" target="_blank">{c.proof_uri}</a> },
                  { header: "Submitted", cell: (c) => <When value={c.created_at} /> },
                  { header: "Decision", cell: (c) => (c.decided_at ? <>{c.decision_reason ?? "—"} · <When value={c.decided_at} /></> : "awaiting review") },
                ]}
              />
            )
          }
        </Loaded>
        <LoadMore list={claims} />
      </Section>
    </>
  );
}

function Apply({ partnerId }: { partnerId: string }) {
  const funds = usePolled(() => get<Page<Fund>>("/v1/funds?limit=200"), [], null);
  const submit = useSubmit();
  const errors = submit.fieldErrors;
  const open = funds.data?.items.filter((f) => f.open) ?? [];
  return (
    <Section title="Apply for funds">
      <ProblemAlert error={funds.error} title="Could not load the funds" />
      {funds.data && open.length === 0 ? (
        <Empty>No fund is open for applications right now.</Empty>
      ) : (
        <form
          className="form"
          onSubmit={async (event) => {
            event.preventDefault();
            const form = event.currentTarget;
            const v = formValues(form);
            const body = { partner_id: partnerId, amount: v.amount, activity: v.activity, planned_start: v.planned_start, planned_end: v.planned_end };
            const ok = await submit.run(async () => {
              const created = await request<FundRequest>(`/v1/funds/${encodeURIComponent(v.fund)}/requests`, {
                method: "POST",
                body,
                idempotencyKey: submit.idempotencyKeyFor({ fund: v.fund, body }),
              });
              return created.status === "approved"
                ? `Approved at once: ${created.amount} ${created.currency} for “${created.activity}”. Claim by ${new Date(created.claim_deadline).toLocaleDateString()}.`
                : `Submitted for review: ${created.amount} ${created.currency} for “${created.activity}”.`;
            });
            if (ok) form.reset();
          }}
        >
          <SelectField
            label="Fund"
            name="fund"
            required
            options={open.map((f) => ({ value: f.code, label: `${f.code} (${f.kind.toUpperCase()}, ${f.currency})` }))}
            error={errors.fund_code}
          />
          <div className="field-row">
            <TextField label="Amount" name="amount" required inputMode="decimal" error={errors.amount} hint="In the fund's currency, e.g. 250.00" />
            <TextField label="Planned start" name="planned_start" type="date" required defaultValue={todayIso(21)} error={errors.planned_start} hint="At least 10 working days from today" />
            <TextField label="Planned end" name="planned_end" type="date" required defaultValue={todayIso(35)} error={errors.planned_end} />
          </div>
          <TextArea label="Activity" name="activity" required error={errors.activity} hint="What the money pays for, e.g. a joint webinar" />
          <button type="submit" disabled={submit.busy}>
            {submit.busy ? "Applying…" : "Apply"}
          </button>
          <FormStatus submit={submit} />
        </form>
      )}
    </Section>
  );
}

function RequestCard({ request: r, isPartner }: { request: FundRequest; isPartner: boolean }) {
  const [open, setOpen] = useState<"" | "claim" | "complete">("");
  const claimable = r.status === "approved";
  return (
    <li className="card" aria-label={`Request ${r.activity}`}>
      <div className="card-head">
        <strong>{r.activity}</strong> <Badge value={r.status} />
      </div>
      <dl className="facts">
        <div><dt>Fund</dt><dd>{r.fund_code}</dd></div>
        <div><dt>Amount</dt><dd><Money amount={r.amount} currency={r.currency} /></dd></div>
        <div><dt>Activity runs</dt><dd><When value={r.planned_start} dateOnly /> – <When value={r.planned_end} dateOnly /></dd></div>
        <div><dt>Claim by</dt><dd><When value={r.claim_deadline} dateOnly /></dd></div>
        <div><dt>Claimed</dt><dd><Money amount={r.claimed} currency={r.currency} /></dd></div>
        <div><dt>Paid</dt><dd><Money amount={r.paid} currency={r.currency} /></dd></div>
        <div><dt>Released</dt><dd><Money amount={r.released} currency={r.currency} /></dd></div>
      </dl>
      {(r.decision_reason || r.review_reason) && <p className="meta">Review: {r.decision_reason ?? r.review_reason}</p>}
      {claimable && (
        <div className="actions">
          {isPartner && (
            <button type="button" className="secondary" aria-expanded={open === "claim"} onClick={() => setOpen(open === "claim" ? "" : "claim")}>
              Claim
            </button>
          )}
          <button type="button" className="secondary" aria-expanded={open === "complete"} onClick={() => setOpen(open === "complete" ? "" : "complete")}>
            Complete
          </button>
        </div>
      )}
      {open === "claim" && <ClaimForm request={r} />}
      {open === "complete" && <CompleteForm request={r} onDone={() => setOpen("")} />}
    </li>
  );
}

function ClaimForm({ request: r }: { request: FundRequest }) {
  const resource = `/v1/fund-requests/${encodeURIComponent(r.id)}`;
  const etag = useEtagOf(resource);
  const submit = useSubmit();
  const errors = submit.fieldErrors;
  return (
    <form
      className="form inline-form"
      aria-label={`Claim against ${r.activity}`}
      onSubmit={async (event) => {
        event.preventDefault();
        const form = event.currentTarget;
        const v = formValues(form);
        const body = { amount: v.amount, proof_uri: v.proof_uri };
        const ok = await submit.run(async () => {
          const claim = await request<Claim>(`${resource}/claims`, {
            method: "POST",
            body,
            resource,
            answersResource: false,
            idempotencyKey: submit.idempotencyKeyFor({ id: r.id, body }),
          });
          return `Claim of ${claim.amount} ${claim.currency} submitted.`;
        });
        if (ok) form.reset();
        etag.reload();
      }}
    >
      <ProblemAlert error={etag.error} />
      <div className="field-row">
        <TextField label="Claim amount" name="amount" required inputMode="decimal" error={errors.amount} hint={`Up to ${r.amount} ${r.currency} in all`} />
        <TextField label="Proof (link)" name="proof_uri" type="url" required error={errors.proof_uri} hint="e.g. https://… invoice or report" />
      </div>
      <button type="submit" disabled={submit.busy || !etag.ready}>
        {submit.busy ? "Claiming…" : "Submit claim"}
      </button>
      <FormStatus submit={submit} />
    </form>
  );
}

function CompleteForm({ request: r, onDone }: { request: FundRequest; onDone: () => void }) {
  const resource = `/v1/fund-requests/${encodeURIComponent(r.id)}`;
  const etag = useEtagOf(resource);
  const submit = useSubmit();
  return (
    <div className="inline-form" role="group" aria-label={`Complete ${r.activity}`}>
      <ProblemAlert error={etag.error} />
      <p>Completing releases the unclaimed rest of this request back to the fund. Claims already made stay.</p>
      <button
        type="button"
        disabled={submit.busy || !etag.ready}
        onClick={async () => {
          const ok = await submit.run(async () => {
            await request<FundRequest>(`${resource}/complete`, { method: "POST", resource });
            return "Completed.";
          });
          if (ok) onDone();
          else etag.reload();
        }}
      >
        Confirm: complete this request
      </button>
      <FormStatus submit={submit} />
    </div>
  );
}
