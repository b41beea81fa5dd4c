// Webhook subscriptions: create (the secret is shown once), pause/resume, delete, and their deliveries.

import { useState } from "react";
import { getPage, request } from "../api";
import {
  Badge, Checkbox, DataTable, Empty, FormStatus, LoadMore, Loaded, ProblemAlert, Section, TextField, When, formList, formValues,
  useEtagOf, useSubmit,
} from "../components";
import { localInputToUtc } from "../format";
import { usePagedList } from "../hooks";
import { EVENT_TYPES, type Delivery, type Subscription } from "../types";

export function Webhooks({ partnerId }: { partnerId: string | null }) {
  const list = usePagedList((cursor) => getPage<Subscription>("/v1/webhooks", { partner_id: partnerId }, cursor), [partnerId]);
  return (
    <>
      <Section title="Subscriptions">
        <p className="hint">
          Your own systems can receive events as they happen instead of polling. Each delivery is signed per Standard Webhooks with
          the subscription's secret.
        </p>
        <Loaded state={list} what="subscriptions">
          {(items) =>
            items.length === 0 ? (
              <Empty>No subscriptions yet. Create one below with the address of your receiver.</Empty>
            ) : (
              <ul className="cards">
                {items.map((s) => (
                  <SubscriptionCard key={s.id} subscription={s} />
                ))}
              </ul>
            )
          }
        </Loaded>
        <LoadMore list={list} />
      </Section>
      <CreateSubscription partnerId={partnerId} />
    </>
  );
}

function CreateSubscription({ partnerId }: { partnerId: string | null }) {
  const submit = useSubmit();
  const [secret, setSecret] = useState<string | null>(null);
  const errors = submit.fieldErrors;
  return (
    <Section title="Create a subscription">
      <form
        className="form"
        onSubmit={async (event) => {
          event.preventDefault();
          const form = event.currentTarget;
          const v = formValues(form);
          const types = formList(form, "event_types");
          const body: Record<string, unknown> = { url: v.url, event_types: types.length ? types : ["*"] };
          if (partnerId) body.partner_id = partnerId;
          else if (v.partner_id) body.partner_id = v.partner_id;
          setSecret(null);
          const ok = await submit.run(async () => {
            const created = await request<Subscription & { secret: string }>("/v1/webhooks", {
              method: "POST",
              body,
              idempotencyKey: submit.idempotencyKeyFor(body),
            });
            setSecret(created.secret);
            return `Subscription created for ${created.url}.`;
          });
          if (ok) form.reset();
        }}
      >
        <TextField label="Receiver URL" name="url" type="url" required error={errors.url} hint="https:// in production" />
        {!partnerId && <TextField label="Partner id (empty: every partner)" name="partner_id" error={errors.partner_id} />}
        <fieldset className="checks">
          <legend>Event types (none chosen: all)</legend>
          {EVENT_TYPES.map((type) => (
            <Checkbox key={type} label={type} name="event_types" value={type} />
          ))}
        </fieldset>
        {errors.event_types && <p className="field-error">{errors.event_types}</p>}
        <button type="submit" disabled={submit.busy}>
          {submit.busy ? "Creating…" : "Create subscription"}
        </button>
        <FormStatus submit={submit} />
        {secret && (
          <div className="secret" role="note">
            <p>
              <strong>Signing secret — shown only now.</strong> Store it in your receiver:
            </p>
            <code className="mono">{secret}</code>
          </div>
        )}
      </form>
    </Section>
  );
}

function SubscriptionCard({ subscription: s }: { subscription: Subscription }) {
  const [open, setOpen] = useState<"" | "manage" | "deliveries">("");
  return (
    <li className="card" aria-label={`Subscription ${s.url}`}>
      <div className="card-head">
        <strong className="mono">{s.url}</strong> <Badge value={s.status} />
      </div>
      <p className="meta">
        {s.event_types.join(", ")} · since <When value={s.created_at} />
        {s.partner_id === null ? " · every partner" : ""}
      </p>
      <div className="actions">
        <button type="button" className="secondary" aria-expanded={open === "manage"} onClick={() => setOpen(open === "manage" ? "" : "manage")}>
          Manage
        </button>
        <button type="button" className="secondary" aria-expanded={open === "deliveries"} onClick={() => setOpen(open === "deliveries" ? "" : "deliveries")}>
          Deliveries
        </button>
      </div>
      {open === "manage" && <Manage subscription={s} />}
      {open === "deliveries" && <Deliveries subscription={s} />}
    </li>
  );
}

function Manage({ subscription: s }: { subscription: Subscription }) {
  const resource = `/v1/webhooks/${encodeURIComponent(s.id)}`;
  const etag = useEtagOf(resource);
  const submit = useSubmit();
  const [confirmDelete, setConfirmDelete] = useState(false);
  const [secret, setSecret] = useState<string | null>(null);
  const next = s.status === "active" ? "paused" : "active";
  return (
    <div className="inline-form" role="group" aria-label={`Manage ${s.url}`}>
      <ProblemAlert error={etag.error} />
      <div className="actions">
        <button
          type="button"
          disabled={submit.busy || !etag.ready}
          onClick={async () => {
            await submit.run(async () => {
              await request<Subscription>(resource, { method: "PATCH", body: { status: next }, resource });
              return next === "paused" ? "Paused: nothing is delivered while paused (a replay fills the gap)." : "Resumed.";
            });
            etag.reload();
          }}
        >
          {s.status === "active" ? "Pause" : "Resume"}
        </button>
        {!confirmDelete ? (
          <button type="button" className="danger" onClick={() => setConfirmDelete(true)}>
            Delete…
          </button>
        ) : (
          <button
            type="button"
            className="danger"
            disabled={submit.busy || !etag.ready}
            onClick={async () => {
              const ok = await submit.run(async () => {
                await request(resource, { method: "DELETE", resource });
                return "Deleted: nothing more is delivered to it.";
              });
              if (!ok) etag.reload();
            }}
          >
            Confirm delete
          </button>
        )}
      </div>
      <FormStatus submit={submit} />
      <form
        className="form"
        onSubmit={(event) => {
          event.preventDefault();
          const since = localInputToUtc(formValues(event.currentTarget).since);
          void submit.run(async () => {
            const answer = await request<{ deliveries: number }>(`${resource}/replay`, { method: "POST", body: { since } });
            return `Replaying ${answer.deliveries} event(s) since then.`;
          });
        }}
      >
        <TextField label="Deliver again every matching event since (UTC)" name="since" type="datetime-local" required error={submit.fieldErrors.since} />
        <button type="submit" className="secondary" disabled={submit.busy}>Replay</button>
      </form>
      <div className="actions">
        <button
          type="button"
          className="secondary"
          disabled={submit.busy}
          onClick={() => submit.run(async () => {
            const answer = await request<{ secret: string }>(`${resource}/secret`, { method: "POST" });
            setSecret(answer.secret);
            return "New signing secret made: the old one keeps signing alongside it for 24 hours.";
          })}
        >
          Rotate the signing secret
        </button>
      </div>
      {secret && (
        <div className="secret" role="note">
          <p><strong>New signing secret — shown only now:</strong></p>
          <code className="mono">{secret}</code>
        </div>
      )}
    </div>
  );
}

function Deliveries({ subscription: s }: { subscription: Subscription }) {
  const base = `/v1/webhooks/${encodeURIComponent(s.id)}`;
  const list = usePagedList((cursor) => getPage<Delivery>(`${base}/deliveries`, { limit: 20 }, cursor), [base]);
  const retry = useSubmit();
  return (
    <div className="inline-form">
      <ProblemAlert error={retry.error} />
      <Loaded state={list} what="deliveries">
        {(items) =>
          items.length === 0 ? (
            <Empty>Nothing delivered yet: deliveries appear when a matching event happens.</Empty>
          ) : (
            <DataTable
              caption={`Deliveries to ${s.url}`}
              rows={items}
              rowKey={(d) => d.id}
              columns={[
                { header: "Event", cell: (d) => d.event_type },
                { header: "Status", cell: (d) => <Badge value={d.status} /> },
                {
                  header: "Last attempt",
                  cell: (d) => {
                    const last = d.attempts[d.attempts.length - 1];
                    return last ? <>{last.response_status ?? last.error} · {last.latency_ms} ms · <When value={last.attempted_at} /></> : "not yet";
                  },
                },
                { header: "Attempts", cell: (d) => d.attempts.length, className: "num" },
                { header: "Next attempt", cell: (d) => <When value={d.next_attempt_at} /> },
                {
                  header: "Retry",
                  cell: (d) => (
                    <button type="button" className="secondary small" disabled={retry.busy} onClick={() => retry.run(async () => {
                      await request(`${base}/deliveries/${encodeURIComponent(d.id)}/retry`, { method: "POST" });
                      return "Sent again.";
                    })}>
                      Retry now
                    </button>
                  ),
                },
              ]}
            />
          )
        }
      </Loaded>
      <LoadMore list={list} />
      <p className="success" role="status">{retry.message}</p>
    </div>
  );
}
