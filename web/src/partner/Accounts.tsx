// The partner's accounts and customer preregistrations; preregister an existing account or a prospect.

import { useState } from "react";
import { getPage, request } from "../api";
import {
  Badge, DataTable, Empty, FormStatus, LoadMore, Loaded, Section, SelectField, TextField, When, formValues, useSubmit,
} from "../components";
import { usePagedList } from "../hooks";
import type { Account, Registration } from "../types";

export function PartnerAccounts({ partnerId, canRegister }: { partnerId: string; canRegister: boolean }) {
  const accounts = usePagedList((cursor) => getPage<Account>("/v1/accounts", { owner_partner_id: partnerId }, cursor), [partnerId]);
  const registrations = usePagedList((cursor) => getPage<Registration>("/v1/registrations", { partner_id: partnerId }, cursor), [partnerId]);
  return (
    <>
      <Section title="Your accounts">
        <Loaded state={accounts} what="accounts">
          {(items) =>
            items.length === 0 ? (
              <Empty>You own no accounts yet. Preregister a customer below: once approved, its sales are credited to you.</Empty>
            ) : (
              <DataTable
                caption="Accounts you own"
                rows={items}
                rowKey={(a) => a.id}
                columns={[
                  { header: "Name", cell: (a) => a.name },
                  { header: "Country", cell: (a) => a.country },
                  { header: "Industry", cell: (a) => a.industry },
                  { header: "Classification", cell: (a) => <Badge value={a.classification} /> },
                  { header: "Account id", cell: (a) => <span className="mono">{a.id}</span> },
                ]}
              />
            )
          }
        </Loaded>
        <LoadMore list={accounts} />
      </Section>
      <Section title="Preregistrations">
        <Loaded state={registrations} what="preregistrations">
          {(items) =>
            items.length === 0 ? (
              <Empty>No preregistrations yet. A preregistration holds a customer for you for 15 days while it is reviewed.</Empty>
            ) : (
              <DataTable
                caption="Your customer preregistrations"
                rows={items}
                rowKey={(r) => r.id}
                columns={[
                  { header: "Account", cell: (r) => <span className="mono">{r.account_id}</span> },
                  { header: "Kind", cell: (r) => (r.prospect ? "new prospect" : "existing account") },
                  { header: "Status", cell: (r) => <Badge value={r.status} /> },
                  { header: "Expires", cell: (r) => <When value={r.expires_at} /> },
                  { header: "Decision", cell: (r) => (r.decided_at ? <>{r.reason ?? "—"} (<When value={r.decided_at} />)</> : "awaiting review") },
                ]}
              />
            )
          }
        </Loaded>
        <LoadMore list={registrations} />
      </Section>
      {canRegister && <Preregister partnerId={partnerId} />}
    </>
  );
}

function Preregister({ partnerId }: { partnerId: string }) {
  const submit = useSubmit();
  const [kind, setKind] = useState("prospect");
  const errors = submit.fieldErrors;
  return (
    <Section title="Preregister a customer">
      <form
        className="form"
        onSubmit={async (event) => {
          event.preventDefault();
          const form = event.currentTarget;
          const v = formValues(form);
          const body =
            kind === "account"
              ? { account_id: v.account_id }
              : { prospect: { name: v.name, country: v.country.toUpperCase(), industry: v.industry } };
          const ok = await submit.run(async () => {
            const created = await request<Registration>("/v1/registrations", {
              method: "POST",
              body,
              idempotencyKey: submit.idempotencyKeyFor({ partnerId, body }),
            });
            return `Preregistered: account ${created.account_id}, pending review until ${new Date(created.expires_at).toLocaleDateString()}.`;
          });
          if (ok) form.reset();
        }}
      >
        <SelectField
          label="Customer"
          name="kind"
          defaultValue="prospect"
          onChange={setKind}
          options={[
            { value: "prospect", label: "A new prospect" },
            { value: "account", label: "An account already known (by id)" },
          ]}
        />
        {kind === "account" ? (
          <TextField label="Account id" name="account_id" required error={errors.account_id} />
        ) : (
          <div className="field-row">
            <TextField label="Company name" name="name" required error={errors.name} />
            <TextField label="Country (2-letter code)" name="country" required error={errors.country} hint="ISO 3166-1, e.g. DE, SE, US" />
            <TextField label="Industry" name="industry" required error={errors.industry} />
          </div>
        )}
        <button type="submit" disabled={submit.busy}>
          {submit.busy ? "Preregistering…" : "Preregister"}
        </button>
        <FormStatus submit={submit} />
      </form>
    </Section>
  );
}
