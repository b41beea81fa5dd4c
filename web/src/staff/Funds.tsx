// Staff: the marketing funds with their budget, commitments and payouts, and creating a fund.

import { getPage, request } from "../api";
import {
  Badge, DataTable, Empty, FormStatus, LoadMore, Loaded, Money, Section, SelectField, TextField, When, formValues, useSubmit,
} from "../components";
import { localInputToUtc } from "../format";
import { usePagedList } from "../hooks";
import type { Fund } from "../types";

export function StaffFunds() {
  const list = usePagedList((c) => getPage<Fund>("/v1/funds", {}, c), []);
  const submit = useSubmit();
  const errors = submit.fieldErrors;
  return (
    <>
      <Section title="Funds">
        <Loaded state={list} what="funds">
          {(items) =>
            items.length === 0 ? (
              <Empty>No funds yet. Create one below: an accrual fund is earned by partners' eligible sales, a budget fund is applied to.</Empty>
            ) : (
              <DataTable
                caption="Funds, their budget and what is committed and paid"
                rows={items}
                rowKey={(f) => f.code}
                columns={[
                  { header: "Code", cell: (f) => <strong>{f.code}</strong> },
                  { header: "Kind", cell: (f) => f.kind.toUpperCase() },
                  { header: "Earned by", cell: (f) => (f.accrual_rate ? `${f.accrual_rate} × eligible revenue` : f.per_partner_limit ? `applications, up to ${f.per_partner_limit} a partner` : "applications") },
                  { header: "Valid", cell: (f) => <><When value={f.valid_from} dateOnly /> – <When value={f.valid_to} dateOnly /></> },
                  { header: "Budget", cell: (f) => <Money amount={f.budget} currency={f.currency} />, className: "num" },
                  { header: "Committed", cell: (f) => (f.committed ? <Money amount={f.committed} currency={f.currency} /> : "—"), className: "num" },
                  { header: "Paid", cell: (f) => (f.paid ? <Money amount={f.paid} currency={f.currency} /> : "—"), className: "num" },
                  { header: "Available", cell: (f) => <strong><Money amount={f.available} currency={f.currency} /></strong>, className: "num" },
                  { header: "Open", cell: (f) => <Badge value={f.open ? "open" : "closed"} /> },
                ]}
              />
            )
          }
        </Loaded>
        <LoadMore list={list} />
      </Section>
      <Section title="Create a fund">
        <form
          className="form"
          onSubmit={async (event) => {
            event.preventDefault();
            const form = event.currentTarget;
            const v = formValues(form);
            const body = {
              code: v.code,
              kind: v.kind,
              currency: v.currency.toUpperCase(),
              budget: v.budget,
              valid_from: localInputToUtc(v.valid_from),
              valid_to: localInputToUtc(v.valid_to),
              accrual_rate: v.accrual_rate || null,
              per_partner_limit: v.per_partner_limit || null,
            };
            const ok = await submit.run(async () => {
              const fund = await request<Fund>("/v1/funds", { method: "POST", body, idempotencyKey: submit.idempotencyKeyFor(body) });
              return `Created ${fund.code}.`;
            });
            if (ok) form.reset();
          }}
        >
          <div className="field-row">
            <TextField label="Code" name="code" required error={errors.code} />
            <SelectField label="Kind" name="kind" options={[{ value: "mdf", label: "MDF" }, { value: "jmf", label: "JMF" }, { value: "adif", label: "ADIF" }, { value: "gpif", label: "GPIF" }]} error={errors.kind} />
            <TextField label="Currency" name="currency" required defaultValue="USD" error={errors.currency} />
            <TextField label="Budget" name="budget" required inputMode="decimal" error={errors.budget} />
          </div>
          <div className="field-row">
            <TextField label="Valid from (UTC)" name="valid_from" type="datetime-local" required error={errors.valid_from} />
            <TextField label="Valid to (UTC)" name="valid_to" type="datetime-local" required error={errors.valid_to} />
            <TextField label="Accrual rate (optional)" name="accrual_rate" inputMode="decimal" error={errors.accrual_rate} hint="e.g. 0.02: earned from eligible revenue" />
            <TextField label="Per-partner limit (optional)" name="per_partner_limit" inputMode="decimal" error={errors.per_partner_limit} />
          </div>
          <button type="submit" disabled={submit.busy}>Create fund</button>
          <FormStatus submit={submit} />
        </form>
      </Section>
    </>
  );
}
