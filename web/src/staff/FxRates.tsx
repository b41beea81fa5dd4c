// Staff: FX rate timelines (every rate ever entered) and entering a rate, which reprices what it governs.

import { useState } from "react";
import { get, request } from "../api";
import { DataTable, Empty, FormStatus, Loaded, Money, Section, TextField, When, formValues, useSubmit } from "../components";
import { localInputToUtc } from "../format";
import { usePolled } from "../hooks";
import type { FxRateChanged, FxTimeline } from "../types";

export function FxRates() {
  const timelines = usePolled(() => get<{ items: FxTimeline[] }>("/v1/fx-rates?history=true"), []);
  const submit = useSubmit();
  const [result, setResult] = useState<FxRateChanged | null>(null);
  const errors = submit.fieldErrors;
  return (
    <>
      <Section title="Enter a rate">
        <form
          className="form"
          onSubmit={async (event) => {
            event.preventDefault();
            const v = formValues(event.currentTarget);
            setResult(null);
            await submit.run(async () => {
              const answer = await request<FxRateChanged>(
                `/v1/fx-rates/${encodeURIComponent(v.base.toUpperCase())}/${encodeURIComponent(v.quote.toUpperCase())}`,
                { method: "PUT", body: { rate: v.rate, effective_from: localInputToUtc(v.effective_from) } },
              );
              setResult(answer);
              return answer.recalculation
                ? `Saved: ${answer.recalculation.sales_recomputed} sale(s) recomputed, ${answer.recalculation.sales_changed} changed.`
                : "Saved: the same rate was already in force, nothing changed.";
            });
          }}
        >
          <div className="field-row">
            <TextField label="Base currency" name="base" required error={errors.base} hint="1 base = rate quote" />
            <TextField label="Quote currency" name="quote" required error={errors.quote} />
            <TextField label="Rate" name="rate" required inputMode="decimal" error={errors.rate} hint="Up to 10 decimals" />
            <TextField label="Effective from (UTC)" name="effective_from" type="datetime-local" required error={errors.effective_from} />
          </div>
          <button type="submit" disabled={submit.busy}>Save rate</button>
          <FormStatus submit={submit} />
          {result?.recalculation && result.recalculation.delta.length > 0 && (
            <p>
              Moved:{" "}
              {result.recalculation.delta.map((d, i) => (
                <span key={d.currency}>{i > 0 && ", "}<Money amount={d.amount} currency={d.currency} signed /></span>
              ))}
            </p>
          )}
        </form>
      </Section>
      <Section title="Timelines">
        <Loaded state={timelines} what="FX rates">
          {({ items }) =>
            items.length === 0 ? (
              <Empty>No rates yet. A program that settles in another currency prices a sale once the pair's rate for its date is entered above.</Empty>
            ) : (
              items.map((t) => (
                <DataTable
                  key={`${t.base}/${t.quote}`}
                  caption={`${t.base}/${t.quote}: every rate entered`}
                  rows={t.rates}
                  rowKey={(r) => r.event_id}
                  columns={[
                    { header: "Effective from", cell: (r) => <When value={r.effective_from} /> },
                    { header: "Rate", cell: (r) => <span className="mono">{r.rate}</span>, className: "num" },
                    { header: "Replaced", cell: (r) => r.replaced_rate ?? "—", className: "num" },
                    { header: "Entered by", cell: (r) => r.recorded_by },
                    { header: "Entered", cell: (r) => <When value={r.recorded_at} /> },
                  ]}
                />
              ))
            )
          }
        </Loaded>
      </Section>
    </>
  );
}
