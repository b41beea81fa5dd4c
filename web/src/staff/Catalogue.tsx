// Staff: programs (create, end early) and products (the published list of what earns rebates).

import { useState } from "react";
import { getPage, request } from "../api";
import {
  Badge, Checkbox, DataTable, Empty, FormStatus, LoadMore, Loaded, Section, SelectField, TextField, When, formValues, useEtagOf, useSubmit,
} from "../components";
import { humanize, localInputToUtc, nowInput } from "../format";
import { usePagedList } from "../hooks";
import { CLASSIFICATIONS, TIERS, type Product, type Program, type Rule } from "../types";

export function Catalogue() {
  const programs = usePagedList((c) => getPage<Program>("/v1/programs", {}, c), []);
  const products = usePagedList((c) => getPage<Product>("/v1/products", {}, c), []);
  const [ending, setEnding] = useState("");
  return (
    <>
      <Section title="Programs">
        <Loaded state={programs} what="programs">
          {(items) =>
            items.length === 0 ? (
              <Empty>No programs yet. Create one below: it prices the sales already recorded in its window.</Empty>
            ) : (
              <DataTable
                caption="Programs and their rules"
                rows={items}
                rowKey={(p) => p.code}
                columns={[
                  { header: "Code", cell: (p) => <strong>{p.code}</strong> },
                  { header: "Name", cell: (p) => p.name },
                  { header: "Kind", cell: (p) => humanize(p.kind) },
                  { header: "Valid", cell: (p) => <><When value={p.valid_from} dateOnly /> – {p.valid_to ? <When value={p.valid_to} dateOnly /> : "open"}</> },
                  { header: "Terms", cell: (p) => [p.target && `target ${p.target}`, p.required_certification && `needs ${p.required_certification}`, p.settlement_currency && `settles in ${p.settlement_currency}`].filter(Boolean).join(" · ") || "—" },
                  { header: "Rules", cell: (p) => <ul className="plain">{p.rules.map((r, i) => <li key={i}>{r.classification}/{r.tier}/{r.category}: {r.rate}</li>)}</ul> },
                  {
                    header: "End",
                    cell: (p) => (
                      <>
                        <button type="button" className="secondary small" aria-expanded={ending === p.code} onClick={() => setEnding(ending === p.code ? "" : p.code)}>
                          End early<span className="visually-hidden"> {p.code}</span>
                        </button>
                        {ending === p.code && <EndProgram code={p.code} />}
                      </>
                    ),
                  },
                ]}
              />
            )
          }
        </Loaded>
        <LoadMore list={programs} />
      </Section>
      <CreateProgram />
      <Section title="Products">
        <Loaded state={products} what="products">
          {(items) =>
            items.length === 0 ? (
              <Empty>No products yet. Publish one below.</Empty>
            ) : (
              <DataTable
                caption="Products"
                rows={items}
                rowKey={(p) => p.sku}
                columns={[
                  { header: "SKU", cell: (p) => <span className="mono">{p.sku}</span> },
                  { header: "Name", cell: (p) => p.name },
                  { header: "Category", cell: (p) => p.category },
                  { header: "Rebate eligible", cell: (p) => <Badge value={p.rebate_eligible ? "eligible" : "not_eligible"} /> },
                  { header: "Standalone software", cell: (p) => (p.standalone_software ? "yes" : "no") },
                  { header: "Updated", cell: (p) => <When value={p.updated_at} /> },
                ]}
              />
            )
          }
        </Loaded>
        <LoadMore list={products} />
      </Section>
      <PutProduct />
    </>
  );
}

function EndProgram({ code }: { code: string }) {
  const resource = `/v1/programs/${encodeURIComponent(code)}`;
  const etag = useEtagOf(resource);
  const submit = useSubmit();
  return (
    <form
      className="form inline-form"
      aria-label={`End ${code} early`}
      onSubmit={(event) => {
        event.preventDefault();
        const v = formValues(event.currentTarget);
        void submit
          .run(async () => {
            await request<Program>(resource, { method: "PATCH", body: { valid_to: localInputToUtc(v.valid_to) }, resource });
            return `${code} now ends then.`;
          })
          .then(() => etag.reload());
      }}
    >
      <TextField label="Valid to (UTC)" name="valid_to" type="datetime-local" required defaultValue={nowInput()} error={submit.fieldErrors.valid_to} />
      <button type="submit" disabled={submit.busy || !etag.ready}>End program</button>
      <FormStatus submit={submit} />
    </form>
  );
}

const emptyRule = (): Rule => ({ classification: "*", tier: "*", category: "*", rate: "" });

function CreateProgram() {
  const submit = useSubmit();
  const [rules, setRules] = useState<Rule[]>([emptyRule()]);
  const [kind, setKind] = useState("base_rebate");
  const errors = submit.fieldErrors;
  return (
    <Section title="Create a program">
      <form
        className="form"
        onSubmit={async (event) => {
          event.preventDefault();
          const form = event.currentTarget;
          const v = formValues(form);
          const body = {
            code: v.code,
            name: v.name,
            kind: v.kind,
            valid_from: localInputToUtc(v.valid_from),
            valid_to: v.valid_to ? localInputToUtc(v.valid_to) : null,
            required_certification: v.required_certification || null,
            target: v.target || null,
            settlement_currency: v.settlement_currency ? v.settlement_currency.toUpperCase() : null,
            rules: rules.map((_, i) => ({
              classification: v[`rule-${i}-classification`],
              tier: v[`rule-${i}-tier`],
              category: v[`rule-${i}-category`] || "*",
              rate: v[`rule-${i}-rate`],
            })),
          };
          const ok = await submit.run(async () => {
            const p = await request<Program>("/v1/programs", { method: "POST", body, idempotencyKey: submit.idempotencyKeyFor(body) });
            return `Created ${p.code}; the sales already recorded in its window are being priced.`;
          });
          if (ok) {
            form.reset();
            setRules([emptyRule()]);
          }
        }}
      >
        <div className="field-row">
          <TextField label="Code" name="code" required error={errors.code} />
          <TextField label="Name" name="name" required error={errors.name} />
          <SelectField label="Kind" name="kind" options={["base_rebate", "capability_rebate", "bip"]} onChange={setKind} error={errors.kind} />
        </div>
        <div className="field-row">
          <TextField label="Valid from (UTC)" name="valid_from" type="datetime-local" required defaultValue={nowInput()} error={errors.valid_from} />
          <TextField label="Valid to (UTC, optional)" name="valid_to" type="datetime-local" error={errors.valid_to} />
          <TextField label="Settlement currency (optional)" name="settlement_currency" error={errors.settlement_currency} hint="e.g. USD; empty: each sale's own" />
        </div>
        <div className="field-row">
          {kind === "capability_rebate" && <TextField label="Required certification" name="required_certification" required error={errors.required_certification} />}
          {kind === "bip" && <TextField label="Monthly target" name="target" required inputMode="decimal" error={errors.target} />}
        </div>
        <fieldset className="rules">
          <legend>Rules (the most specific match applies; * matches anything)</legend>
          {rules.map((_, i) => (
            <div className="field-row rule" key={i} role="group" aria-label={`Rule ${i + 1}`}>
              <SelectField label={`Rule ${i + 1} classification`} name={`rule-${i}-classification`} options={["*", ...CLASSIFICATIONS]} />
              <SelectField label={`Rule ${i + 1} tier`} name={`rule-${i}-tier`} options={["*", ...TIERS]} />
              <TextField label={`Rule ${i + 1} category`} name={`rule-${i}-category`} defaultValue="*" />
              <TextField label={`Rule ${i + 1} rate`} name={`rule-${i}-rate`} required inputMode="decimal" hint="e.g. 0.05" />
            </div>
          ))}
          <div className="actions">
            <button type="button" className="secondary" onClick={() => setRules((r) => [...r, emptyRule()])}>Add a rule</button>
            {rules.length > 1 && (
              <button type="button" className="secondary" onClick={() => setRules((r) => r.slice(0, -1))}>Remove the last rule</button>
            )}
          </div>
          {errors.rules && <p className="field-error">{errors.rules}</p>}
        </fieldset>
        <button type="submit" disabled={submit.busy}>Create program</button>
        <FormStatus submit={submit} />
      </form>
    </Section>
  );
}

function PutProduct() {
  const submit = useSubmit();
  const errors = submit.fieldErrors;
  return (
    <Section title="Publish or change a product">
      <form
        className="form"
        onSubmit={async (event) => {
          event.preventDefault();
          const form = event.currentTarget;
          const v = formValues(form);
          const body: Record<string, unknown> = {
            name: v.name,
            category: v.category,
            rebate_eligible: v.rebate_eligible === "on",
            standalone_software: v.standalone_software === "on",
          };
          if (v.effective_from) body.effective_from = localInputToUtc(v.effective_from);
          const ok = await submit.run(async () => {
            const p = await request<Product>(`/v1/products/${encodeURIComponent(v.sku)}`, { method: "PUT", body });
            return `Saved ${p.sku}.`;
          });
          if (ok) form.reset();
        }}
      >
        <div className="field-row">
          <TextField label="SKU" name="sku" required error={errors.sku} />
          <TextField label="Name" name="name" required error={errors.name} />
          <TextField label="Category" name="category" required error={errors.category} />
          <TextField label="Eligibility change effective from (UTC, optional)" name="effective_from" type="datetime-local" error={errors.effective_from} />
        </div>
        <div className="field-row">
          <Checkbox label="Rebate eligible" name="rebate_eligible" defaultChecked />
          <Checkbox label="Standalone software" name="standalone_software" />
        </div>
        <button type="submit" disabled={submit.busy}>Save product</button>
        <FormStatus submit={submit} />
      </form>
    </Section>
  );
}
