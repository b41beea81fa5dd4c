// One inline decision (approve/reject, accept/reject) on a reviewed resource, sent with its ETag when it has one.

import { useState } from "react";
import { request } from "../api";
import { FormStatus, ProblemAlert, SelectField, TextArea, TextField, formValues, useEtagOf, useSubmit } from "../components";

export function DecisionForm({
  label,
  resource,
  action,
  decisions,
  amountFor,
  defaultAmount,
  withEtag = true,
  onDecided,
}: {
  label: string;
  resource: string;
  action: string;
  decisions: { value: string; label: string }[];
  /** The decision that needs an amount (a dispute's accept: the settlement). */
  amountFor?: string;
  defaultAmount?: string;
  withEtag?: boolean;
  onDecided?: (message: string) => void;
}) {
  const etag = useEtagOf(withEtag ? resource : "");
  const submit = useSubmit();
  const [decision, setDecision] = useState(decisions[0].value);
  const errors = submit.fieldErrors;
  const ready = !withEtag || etag.ready;
  return (
    <form
      className="form inline-form"
      aria-label={label}
      onSubmit={async (event) => {
        event.preventDefault();
        const v = formValues(event.currentTarget);
        const body: Record<string, string> = { decision: v.decision };
        if (v.reason) body.reason = v.reason;
        if (amountFor && v.decision === amountFor) body.amount = v.amount;
        const message = `${label}: ${v.decision} recorded.`;
        const ok = await submit.run(async () => {
          await request(action, { method: "POST", body, resource: withEtag ? resource : undefined });
          return message;
        });
        if (ok) onDecided?.(message);
        else if (withEtag) etag.reload(); // a 412: read it again before the next try
      }}
    >
      {withEtag && <ProblemAlert error={etag.error} />}
      <div className="field-row">
        <SelectField label="Decision" name="decision" options={decisions} onChange={setDecision} error={errors.decision} />
        {amountFor && decision === amountFor && (
          <TextField label="Settlement amount" name="amount" required inputMode="decimal" defaultValue={defaultAmount} error={errors.amount} hint="Signed; may differ from the claim" />
        )}
      </div>
      <TextArea label="Reason" name="reason" required={Boolean(amountFor)} error={errors.reason} />
      <button type="submit" disabled={submit.busy || !ready}>
        {submit.busy ? "Recording…" : "Record decision"}
      </button>
      <FormStatus submit={submit} />
    </form>
  );
}
