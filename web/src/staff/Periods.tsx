// Staff: closing a period (and every earlier one still open). Closing is final.

import { request } from "../api";
import { Checkbox, FormStatus, Section, TextField, formValues, useSubmit } from "../components";
import { formatPeriod, currentPeriod, previousPeriod } from "../format";
import type { PeriodClosed } from "../types";

export function Periods() {
  const submit = useSubmit();
  const errors = submit.fieldErrors;
  return (
    <Section title="Close a period">
      <p>
        Closing a month freezes its statements for every partner, and every earlier month still open with it. A later change to one
        of its sales posts an adjustment into the earliest open month instead. There is no reopening.
      </p>
      <form
        className="form"
        onSubmit={async (event) => {
          event.preventDefault();
          const v = formValues(event.currentTarget);
          if (v.confirm !== "on") {
            await submit.run(async () => {
              throw new Error("Tick the box to confirm that closing cannot be undone.");
            });
            return;
          }
          await submit.run(async () => {
            const answer = await request<PeriodClosed>(`/v1/periods/${encodeURIComponent(v.period)}/close`, { method: "POST" });
            return answer.newly_closed.length
              ? `Closed ${answer.newly_closed.map(formatPeriod).join(", ")}; closed through ${formatPeriod(answer.closed_through)}.`
              : `${formatPeriod(answer.period)} was already closed; nothing changed.`;
          });
        }}
      >
        <TextField label="Period" name="period" type="month" required defaultValue={previousPeriod(currentPeriod())} error={errors.period} />
        <Checkbox label="I understand that closing cannot be undone" name="confirm" />
        <button type="submit" className="danger" disabled={submit.busy}>Close period</button>
        <FormStatus submit={submit} />
      </form>
    </Section>
  );
}
