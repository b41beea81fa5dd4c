// Staff: accounts — list and create; one account's classification and owner (effective-dated), and its history.

import { useState } from "react";
import { get, getPage, request } from "../api";
import {
  Badge, DataTable, Empty, FormStatus, LoadMore, Loaded, Section, SelectField, TextArea, TextField, When, formValues, useSubmit,
} from "../components";
import { localInputToUtc, nowInput } from "../format";
import { usePagedList, usePolled } from "../hooks";
import { CLASSIFICATIONS, type Account, type AccountHistoryEntry } from "../types";

export function StaffAccounts({ selected }: { selected?: string }) {
  return selected ? <AccountDetail id={selected} /> : <AccountList />;
}

function AccountList() {
  const [filters, setFilters] = useState({ classification: "", owner_partner_id: "" });
  const list = usePagedList((c) => getPage<Account>("/v1/accounts", filters, c), [filters.classification, filters.owner_partner_id]);
  const submit = useSubmit();
  const errors = submit.fieldErrors;
  return (
    <>
      <Section title="All accounts">
        <form className="filters" onSubmit={(e) => {
          e.preventDefault();
          const v = formValues(e.currentTarget);
          setFilters({ classification: v.classification, owner_partner_id: v.owner_partner_id });
        }}>
          <SelectField label="Classification" name="classification" options={[{ value: "", label: "any" }, ...CLASSIFICATIONS]} />
          <TextField label="Owner partner id" name="owner_partner_id" />
          <button type="submit" className="secondary">Filter</button>
        </form>
        <Loaded state={list} what="accounts">
          {(items) =>
            items.length === 0 ? (
              <Empty>No account matches. Create one below.</Empty>
            ) : (
              <DataTable
                caption="Accounts"
                rows={items}
                rowKey={(a) => a.id}
                columns={[
                  { header: "Name", cell: (a) => <a href={`#/staff/accounts/${encodeURIComponent(a.id)}`}>{a.name}</a> },
                  { header: "Country", cell: (a) => a.country },
                  { header: "Industry", cell: (a) => a.industry },
                  { header: "Classification", cell: (a) => <Badge value={a.classification} /> },
                  { header: "Owner", cell: (a) => (a.owner_partner_id ? <a className="mono" href={`#/staff/partners/${a.owner_partner_id}`}>{a.owner_partner_id.slice(0, 8)}</a> : "unowned") },
                ]}
              />
            )
          }
        </Loaded>
        <LoadMore list={list} />
      </Section>
      <Section title="Create an account">
        <form
          className="form"
          onSubmit={async (event) => {
            event.preventDefault();
            const form = event.currentTarget;
            const v = formValues(form);
            const body = { name: v.name, country: v.country.toUpperCase(), industry: v.industry, classification: v.classification };
            const ok = await submit.run(async () => {
              const a = await request<Account>("/v1/accounts", { method: "POST", body, idempotencyKey: submit.idempotencyKeyFor(body) });
              return `Created ${a.name}.`;
            });
            if (ok) form.reset();
          }}
        >
          <div className="field-row">
            <TextField label="Name" name="name" required error={errors.name} />
            <TextField label="Country (2-letter code)" name="country" required error={errors.country} />
            <TextField label="Industry" name="industry" required error={errors.industry} />
            <SelectField label="Classification" name="classification" options={CLASSIFICATIONS} defaultValue="commercial" error={errors.classification} />
          </div>
          <button type="submit" disabled={submit.busy}>Create account</button>
          <FormStatus submit={submit} />
        </form>
      </Section>
    </>
  );
}

function AccountDetail({ id }: { id: string }) {
  const resource = `/v1/accounts/${encodeURIComponent(id)}`;
  const state = usePolled(async () => {
    const [account, history] = await Promise.all([get<Account>(resource), get<AccountHistoryEntry[]>(`${resource}/history`)]);
    return { account, history };
  }, [resource]);
  const classify = useSubmit();
  const owner = useSubmit();
  return (
    <>
      <p><a href="#/staff/accounts">← All accounts</a></p>
      <Loaded state={state} what="the account">
        {({ account, history }) => (
          <>
            <Section title={account.name}>
              <dl className="facts">
                <div><dt>Classification</dt><dd><Badge value={account.classification} /></dd></div>
                <div><dt>Owner</dt><dd>{account.owner_partner_id ? <a className="mono" href={`#/staff/partners/${account.owner_partner_id}`}>{account.owner_partner_id}</a> : "unowned"}</dd></div>
                <div><dt>Country</dt><dd>{account.country}</dd></div>
                <div><dt>Industry</dt><dd>{account.industry}</dd></div>
              </dl>
            </Section>
            <div className="grid-2">
              <Section title="Reclassify" level={3}>
                <form
                  className="form"
                  onSubmit={async (event) => {
                    event.preventDefault();
                    const v = formValues(event.currentTarget);
                    await classify.run(async () => {
                      const a = await request<Account>(`${resource}/classification`, {
                        method: "PUT",
                        body: { classification: v.classification, effective_from: localInputToUtc(v.effective_from), reason: v.reason || null },
                        resource,
                      });
                      return `Reclassified as ${a.classification}: its sales from then are repriced.`;
                    });
                  }}
                >
                  <SelectField label="New classification" name="classification" options={CLASSIFICATIONS} defaultValue={account.classification} error={classify.fieldErrors.classification} />
                  <TextField label="Effective from (UTC)" name="effective_from" type="datetime-local" required defaultValue={nowInput()} error={classify.fieldErrors.effective_from} />
                  <TextArea label="Reason" name="reason" error={classify.fieldErrors.reason} />
                  <button type="submit" disabled={classify.busy}>Reclassify</button>
                  <FormStatus submit={classify} />
                </form>
              </Section>
              <Section title="Change owner" level={3}>
                <form
                  className="form"
                  onSubmit={async (event) => {
                    event.preventDefault();
                    const v = formValues(event.currentTarget);
                    await owner.run(async () => {
                      const a = await request<Account>(`${resource}/owner`, {
                        method: "PUT",
                        body: { partner_id: v.partner_id || null, effective_from: localInputToUtc(v.effective_from), reason: v.reason || null },
                        resource,
                      });
                      return a.owner_partner_id ? `Now owned by ${a.owner_partner_id}.` : "Now unowned.";
                    });
                  }}
                >
                  <TextField label="Owner partner id (empty: unowned)" name="partner_id" defaultValue={account.owner_partner_id ?? ""} error={owner.fieldErrors.partner_id} />
                  <TextField label="Effective from (UTC)" name="effective_from" type="datetime-local" required defaultValue={nowInput()} error={owner.fieldErrors.effective_from} />
                  <TextArea label="Reason" name="reason" error={owner.fieldErrors.reason} />
                  <button type="submit" disabled={owner.busy}>Change owner</button>
                  <FormStatus submit={owner} />
                </form>
              </Section>
            </div>
            <Section title="History" level={3}>
              <DataTable
                caption="Classification and ownership timeline, with causes"
                rows={[...history].reverse()}
                rowKey={(h) => `${h.event_id}:${h.kind}`}
                columns={[
                  { header: "Effective", cell: (h) => <When value={h.effective_from} /> },
                  { header: "Kind", cell: (h) => h.kind },
                  { header: "Change", cell: (h) => `${h.from ?? "—"} → ${h.to ?? "—"}` },
                  { header: "Cause", cell: (h) => h.cause },
                  { header: "By", cell: (h) => h.actor },
                  { header: "Reason", cell: (h) => h.reason ?? "—" },
                  { header: "Recorded", cell: (h) => <When value={h.recorded_at} /> },
                ]}
              />
            </Section>
          </>
        )}
      </Loaded>
    </>
  );
}
