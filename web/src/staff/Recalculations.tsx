// Staff: recalculation runs, what triggered each, how many sales it recomputed and by how much they moved.

import { useState } from "react";
import { getPage } from "../api";
import { Badge, DataTable, Empty, LoadMore, Loaded, Money, Section, TextField, When, formValues } from "../components";
import { humanize } from "../format";
import { usePagedList } from "../hooks";
import type { RecalculationRun } from "../types";

export function Recalculations() {
  const [filters, setFilters] = useState({ account_id: "", partner_id: "" });
  const list = usePagedList((c) => getPage<RecalculationRun>("/v1/recalculations", filters, c), [filters.account_id, filters.partner_id]);
  return (
    <Section title="Runs, newest first">
      <form className="filters" onSubmit={(e) => {
        e.preventDefault();
        const v = formValues(e.currentTarget);
        setFilters({ account_id: v.account_id, partner_id: v.partner_id });
      }}>
        <TextField label="Account id" name="account_id" />
        <TextField label="Partner id" name="partner_id" />
        <button type="submit" className="secondary">Filter</button>
      </form>
      <Loaded state={list} what="recalculation runs">
        {(items) =>
          items.length === 0 ? (
            <Empty>No runs. A reclassification, an ownership, tier, status or certification change, a rate or a new program starts one.</Empty>
          ) : (
            <DataTable
              caption="Recalculation runs"
              rows={items}
              rowKey={(r) => r.id}
              columns={[
                { header: "Started", cell: (r) => <When value={r.started_at} /> },
                { header: "Trigger", cell: (r) => <>{humanize(r.trigger_type)}{r.fx_pair ? ` ${r.fx_pair}` : ""}</> },
                { header: "For", cell: (r) => r.account_id ? <a className="mono" href={`#/staff/accounts/${r.account_id}`}>account {r.account_id.slice(0, 8)}</a> : r.partner_id ? <a className="mono" href={`#/staff/partners/${r.partner_id}`}>partner {r.partner_id.slice(0, 8)}</a> : r.sku ? `sku ${r.sku}` : r.program_code ? `program ${r.program_code}` : "—" },
                { header: "Effective from", cell: (r) => <When value={r.effective_from} /> },
                { header: "Sales", cell: (r) => `${r.sales_changed} of ${r.sales_recomputed} changed`, className: "num" },
                { header: "Delta", cell: (r) => r.delta.length ? r.delta.map((d, i) => <span key={d.currency}>{i > 0 && ", "}<Money amount={d.amount} currency={d.currency} signed /></span>) : "none", className: "num" },
                { header: "Status", cell: (r) => <Badge value={r.status} /> },
              ]}
            />
          )
        }
      </Loaded>
      <LoadMore list={list} />
    </Section>
  );
}
