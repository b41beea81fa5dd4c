// Staff: partners — list and register; one partner's status, tier and certifications, and its history.

import { useState } from "react";
import { get, getPage, request } from "../api";
import {
  Badge, Checkbox, DataTable, Empty, FormStatus, LoadMore, Loaded, Section, SelectField, TextArea, TextField, When,
  formList, formValues, useSubmit,
} from "../components";
import { humanize, localInputToUtc, nowInput } from "../format";
import { usePagedList, usePolled } from "../hooks";
import { PARTNER_STATUSES, PARTNER_TYPES, TIERS, type CertificationRecord, type Partner, type PartnerHistoryEntry } from "../types";

export function StaffPartners({ selected }: { selected?: string }) {
  return selected ? <PartnerDetail id={selected} /> : <PartnerList />;
}

function PartnerList() {
  const [filters, setFilters] = useState({ status: "", tier: "" });
  const list = usePagedList((c) => getPage<Partner>("/v1/partners", filters, c), [filters.status, filters.tier]);
  return (
    <>
      <Section title="All partners">
        <form className="filters" onSubmit={(e) => e.preventDefault()}>
          <SelectField label="Status" name="status" options={[{ value: "", label: "any" }, ...PARTNER_STATUSES]} onChange={(status) => setFilters((f) => ({ ...f, status }))} />
          <SelectField label="Tier" name="tier" options={[{ value: "", label: "any" }, ...TIERS]} onChange={(tier) => setFilters((f) => ({ ...f, tier }))} />
        </form>
        <Loaded state={list} what="partners">
          {(items) =>
            items.length === 0 ? (
              <Empty>No partner matches. Register one below.</Empty>
            ) : (
              <DataTable
                caption="Partners"
                rows={items}
                rowKey={(p) => p.id}
                columns={[
                  { header: "Name", cell: (p) => <a href={`#/staff/partners/${encodeURIComponent(p.id)}`}>{p.name}</a> },
                  { header: "Country", cell: (p) => `${p.country} · ${p.region}` },
                  { header: "Tier", cell: (p) => <Badge value={p.tier} /> },
                  { header: "Status", cell: (p) => <Badge value={p.status} /> },
                  { header: "Certifications", cell: (p) => p.certifications.map((c) => c.code).join(", ") || "—" },
                ]}
              />
            )
          }
        </Loaded>
        <LoadMore list={list} />
      </Section>
      <RegisterPartner />
    </>
  );
}

function RegisterPartner() {
  const submit = useSubmit();
  const errors = submit.fieldErrors;
  return (
    <Section title="Register a partner">
      <form
        className="form"
        onSubmit={async (event) => {
          event.preventDefault();
          const form = event.currentTarget;
          const v = formValues(form);
          const body = { name: v.name, country: v.country.toUpperCase(), region: v.region, types: formList(form, "types") };
          const ok = await submit.run(async () => {
            const p = await request<Partner>("/v1/partners", { method: "POST", body, idempotencyKey: submit.idempotencyKeyFor(body) });
            return `Registered ${p.name} (pending). Activate it from its page.`;
          });
          if (ok) form.reset();
        }}
      >
        <div className="field-row">
          <TextField label="Name" name="name" required error={errors.name} />
          <TextField label="Country (2-letter code)" name="country" required error={errors.country} />
          <TextField label="Region" name="region" required error={errors.region} hint="e.g. EMEA, APAC" />
        </div>
        <fieldset className="checks">
          <legend>Types</legend>
          {PARTNER_TYPES.map((t) => (
            <Checkbox key={t} label={humanize(t)} name="types" value={t} defaultChecked={t === "sales"} />
          ))}
        </fieldset>
        {errors.types && <p className="field-error">{errors.types}</p>}
        <button type="submit" disabled={submit.busy}>Register partner</button>
        <FormStatus submit={submit} />
      </form>
    </Section>
  );
}

function PartnerDetail({ id }: { id: string }) {
  const resource = `/v1/partners/${encodeURIComponent(id)}`;
  const state = usePolled(async () => {
    const [partner, certifications, history] = await Promise.all([
      get<Partner>(resource),
      get<CertificationRecord[]>(`${resource}/certifications`),
      get<PartnerHistoryEntry[]>(`${resource}/history`),
    ]);
    return { partner, certifications, history };
  }, [resource]);
  const status = useSubmit();
  const tier = useSubmit();
  const cert = useSubmit();
  const revoke = useSubmit();
  return (
    <>
      <p><a href="#/staff/partners">← All partners</a></p>
      <Loaded state={state} what="the partner">
        {({ partner, certifications, history }) => (
          <>
            <Section title={partner.name}>
              <dl className="facts">
                <div><dt>Tier</dt><dd><Badge value={partner.tier} /></dd></div>
                <div><dt>Status</dt><dd><Badge value={partner.status} /></dd></div>
                <div><dt>Country, region</dt><dd>{partner.country}, {partner.region}</dd></div>
                <div><dt>Types</dt><dd>{partner.types.join(", ")}</dd></div>
                <div><dt>Id</dt><dd className="mono">{partner.id}</dd></div>
              </dl>
              <p>
                <a href={`#/partner/${encodeURIComponent(partner.id)}/earnings`}>Open this partner's workspace (earnings, funds, statements)</a>
              </p>
            </Section>
            <div className="grid-2">
              <Section title="Change status" level={3}>
                <form
                  className="form"
                  onSubmit={async (event) => {
                    event.preventDefault();
                    const v = formValues(event.currentTarget);
                    await status.run(async () => {
                      const p = await request<Partner>(`${resource}/status`, { method: "POST", body: { status: v.status, reason: v.reason || null }, resource });
                      return `Status is now ${p.status}.`;
                    });
                  }}
                >
                  <SelectField label="New status" name="status" options={PARTNER_STATUSES} defaultValue={partner.status === "pending" ? "active" : partner.status} error={status.fieldErrors.status} />
                  <TextArea label="Reason" name="reason" error={status.fieldErrors.reason} />
                  <button type="submit" disabled={status.busy}>Change status</button>
                  <FormStatus submit={status} />
                </form>
              </Section>
              <Section title="Change tier" level={3}>
                <form
                  className="form"
                  onSubmit={async (event) => {
                    event.preventDefault();
                    const v = formValues(event.currentTarget);
                    await tier.run(async () => {
                      const p = await request<Partner>(`${resource}/tier`, { method: "PUT", body: { tier: v.tier, effective_from: localInputToUtc(v.effective_from) }, resource });
                      return `Tier is now ${p.tier}; the partner's sales from then are repriced.`;
                    });
                  }}
                >
                  <SelectField label="New tier" name="tier" options={TIERS} defaultValue={partner.tier} error={tier.fieldErrors.tier} />
                  <TextField label="Effective from (UTC)" name="effective_from" type="datetime-local" required defaultValue={nowInput()} error={tier.fieldErrors.effective_from} />
                  <button type="submit" disabled={tier.busy}>Change tier</button>
                  <FormStatus submit={tier} />
                </form>
              </Section>
            </div>
            <Section title="Certifications" level={3}>
              {certifications.length === 0 ? (
                <Empty>No certifications. Grant one below.</Empty>
              ) : (
                <DataTable
                  caption="Certifications"
                  rows={certifications}
                  rowKey={(c) => `${c.code}:${c.issued_at}`}
                  columns={[
                    { header: "Code", cell: (c) => c.code },
                    { header: "State", cell: (c) => <Badge value={c.state} /> },
                    { header: "Issued", cell: (c) => <When value={c.issued_at} dateOnly /> },
                    { header: "Expires", cell: (c) => <When value={c.expires_at} dateOnly /> },
                    {
                      header: "Revoke",
                      cell: (c) =>
                        c.state === "held" || c.state === "scheduled" ? (
                          <button type="button" className="danger small" disabled={revoke.busy} onClick={() => revoke.run(async () => {
                            await request(`${resource}/certifications/${encodeURIComponent(c.code)}`, { method: "DELETE", resource });
                            return `Revoked ${c.code}.`;
                          })}>
                            Revoke {c.code}
                          </button>
                        ) : "—",
                    },
                  ]}
                />
              )}
              <FormStatus submit={revoke} />
              <form
                className="form"
                onSubmit={async (event) => {
                  event.preventDefault();
                  const form = event.currentTarget;
                  const v = formValues(form);
                  const body = { code: v.code, issued_at: localInputToUtc(v.issued_at), expires_at: v.expires_at ? localInputToUtc(v.expires_at) : null };
                  const ok = await cert.run(async () => {
                    await request(`${resource}/certifications`, { method: "POST", body, resource, idempotencyKey: cert.idempotencyKeyFor(body) });
                    return `Granted ${v.code}.`;
                  });
                  if (ok) form.reset();
                }}
              >
                <div className="field-row">
                  <TextField label="Certification code" name="code" required error={cert.fieldErrors.code} />
                  <TextField label="Issued at (UTC)" name="issued_at" type="datetime-local" required defaultValue={nowInput()} error={cert.fieldErrors.issued_at} />
                  <TextField label="Expires at (UTC, optional)" name="expires_at" type="datetime-local" error={cert.fieldErrors.expires_at} />
                </div>
                <button type="submit" disabled={cert.busy}>Grant certification</button>
                <FormStatus submit={cert} />
              </form>
            </Section>
            <Section title="History" level={3}>
              <DataTable
                caption="Every change to this partner"
                rows={[...history].reverse()}
                rowKey={(h) => `${h.event_id}:${h.at}:${h.change}`}
                columns={[
                  { header: "When", cell: (h) => <When value={h.at} /> },
                  { header: "Change", cell: (h) => humanize(h.change) },
                  { header: "By", cell: (h) => h.actor },
                  { header: "Detail", cell: (h) => <DetailList detail={h.detail} />, className: "wide" },
                ]}
              />
            </Section>
          </>
        )}
      </Loaded>
    </>
  );
}

function DetailList({ detail }: { detail: Record<string, unknown> }) {
  const entries = Object.entries(detail).filter(([, value]) => value !== null && value !== undefined && value !== "");
  if (!entries.length) return <>—</>;
  return (
    <ul className="plain small">
      {entries.map(([key, value]) => (
        <li key={key}>
          {humanize(key)}: {typeof value === "object" ? Object.entries(value as Record<string, unknown>).map(([k, v]) => `${humanize(k)} ${String(v)}`).join(", ") : String(value)}
        </li>
      ))}
    </ul>
  );
}
