// Staff review queues: fund requests, claims, preregistrations and disputes awaiting a decision.

import { useState } from "react";
import { getPage } from "../api";
import { Badge, Empty, JumpLink, LoadMore, Loaded, Money, Section, When } from "../components";
import { formatPeriod } from "../format";
import { usePagedList } from "../hooks";
import { usePartnerNameOf } from "../names";
import type { Claim, Dispute, FundRequest, Registration } from "../types";
import { DecisionForm } from "./Decision";

const APPROVE = [
  { value: "approve", label: "Approve" },
  { value: "reject", label: "Reject" },
];

function Toggle({ open, onToggle, label }: { open: boolean; onToggle: () => void; label: string }) {
  return (
    <button type="button" className="secondary" aria-expanded={open} onClick={onToggle}>
      {open ? "Close" : "Review"} <span className="visually-hidden">{label}</span>
    </button>
  );
}

function PartnerLink({ id }: { id: string }) {
  const name = usePartnerNameOf(id);
  return <a href={`#/staff/partners/${encodeURIComponent(id)}`}>{name ?? id.slice(0, 8)}</a>;
}

export function Queues() {
  const requests = usePagedList((c) => getPage<FundRequest>("/v1/fund-requests", { status: "submitted" }, c), []);
  const claims = usePagedList((c) => getPage<Claim>("/v1/fund-claims", { status: "submitted" }, c), []);
  const registrations = usePagedList((c) => getPage<Registration>("/v1/registrations", { status: "pending" }, c), []);
  const disputes = usePagedList((c) => getPage<Dispute>("/v1/disputes", { status: "open" }, c), []);
  const [open, setOpen] = useState("");
  const [decided, setDecided] = useState("");
  const toggle = (id: string) => setOpen((current) => (current === id ? "" : id));
  const count = (items?: unknown[], more?: boolean) => (items ? `${items.length}${more ? "+" : ""}` : "…");

  return (
    <>
      <nav aria-label="Queues" className="queue-nav">
        <ul className="pills">
          <li><JumpLink target="q-requests">Fund requests ({count(requests.items, requests.hasMore)})</JumpLink></li>
          <li><JumpLink target="q-claims">Claims ({count(claims.items, claims.hasMore)})</JumpLink></li>
          <li><JumpLink target="q-registrations">Preregistrations ({count(registrations.items, registrations.hasMore)})</JumpLink></li>
          <li><JumpLink target="q-disputes">Disputes ({count(disputes.items, disputes.hasMore)})</JumpLink></li>
        </ul>
      </nav>
      <p className="success" role="status" aria-live="polite">
        {decided}
      </p>
      <Section title="Fund requests awaiting review" id="q-requests">
        <Loaded state={requests} what="fund requests">
          {(items) =>
            items.length === 0 ? (
              <Empty>No fund request is waiting. Requests that fit a partner's balance are approved at once; the rest come here.</Empty>
            ) : (
              <ul className="cards">
                {items.map((r) => (
                  <li key={r.id} className="card" aria-label={`Fund request ${r.activity}`}>
                    <div className="card-head">
                      <strong>{r.activity}</strong> <Badge value={r.status} />
                    </div>
                    <p className="meta">
                      Partner <PartnerLink id={r.partner_id} /> · {r.fund_code} · <Money amount={r.amount} currency={r.currency} /> ·{" "}
                      <When value={r.planned_start} dateOnly /> – <When value={r.planned_end} dateOnly />
                    </p>
                    {r.review_reason && <p className="meta">Why it needs review: {r.review_reason}</p>}
                    <Toggle open={open === r.id} onToggle={() => toggle(r.id)} label={`fund request ${r.activity}`} />
                    {open === r.id && (
                      <DecisionForm
                        label={`Decide fund request ${r.activity}`}
                        resource={`/v1/fund-requests/${encodeURIComponent(r.id)}`}
                        action={`/v1/fund-requests/${encodeURIComponent(r.id)}/decision`}
                        decisions={APPROVE}
                        onDecided={setDecided}
                      />
                    )}
                  </li>
                ))}
              </ul>
            )
          }
        </Loaded>
        <LoadMore list={requests} />
      </Section>
      <Section title="Claims awaiting review" id="q-claims">
        <Loaded state={claims} what="claims">
          {(items) =>
            items.length === 0 ? (
              <Empty>No claim is waiting.</Empty>
            ) : (
              <ul className="cards">
                {items.map((c) => (
                  <li key={c.id} className="card" aria-label={`Claim ${c.amount} ${c.currency}`}>
                    <div className="card-head">
                      <strong><Money amount={c.amount} currency={c.currency} /></strong> on {c.fund_code} <Badge value={c.status} />
                    </div>
                    <p className="meta">
                      Partner <PartnerLink id={c.partner_id} /> · proof{" "}
                      <a href={c.proof_uri} target="_blank" rel="noreferrer noopener">{c.proof_uri}</a> · <When value={c.created_at} />
                    </p>
                    <Toggle open={open === c.id} onToggle={() => toggle(c.id)} label={`claim of ${c.amount}`} />
                    {open === c.id && (
                      <DecisionForm
                        label={`Decide claim of ${c.amount} ${c.currency}`}
                        resource={`/v1/fund-claims/${encodeURIComponent(c.id)}`}
                        action={`/v1/fund-claims/${encodeURIComponent(c.id)}/decision`}
                        decisions={[{ value: "approve", label: "Approve and pay" }, { value: "reject", label: "Reject" }]}
                        onDecided={setDecided}
                      />
                    )}
                  </li>
                ))}
              </ul>
            )
          }
        </Loaded>
        <LoadMore list={claims} />
      </Section>
      <Section title="Preregistrations awaiting review" id="q-registrations">
        <Loaded state={registrations} what="preregistrations">
          {(items) =>
            items.length === 0 ? (
              <Empty>No preregistration is waiting.</Empty>
            ) : (
              <ul className="cards">
                {items.map((r) => (
                  <li key={r.id} className="card" aria-label={`Preregistration ${r.account_id}`}>
                    <div className="card-head">
                      <strong>Account <a className="mono" href={`#/staff/accounts/${encodeURIComponent(r.account_id)}`}>{r.account_id.slice(0, 8)}</a></strong>{" "}
                      {r.prospect ? "(new prospect)" : ""} <Badge value={r.status} />
                    </div>
                    <p className="meta">
                      Partner <PartnerLink id={r.partner_id} /> · expires <When value={r.expires_at} />
                    </p>
                    <Toggle open={open === r.id} onToggle={() => toggle(r.id)} label={`preregistration of ${r.account_id}`} />
                    {open === r.id && (
                      <DecisionForm
                        label={`Decide preregistration of ${r.account_id}`}
                        resource={`/v1/registrations/${encodeURIComponent(r.id)}`}
                        action={`/v1/registrations/${encodeURIComponent(r.id)}/decision`}
                        decisions={APPROVE}
                        onDecided={setDecided}
                      />
                    )}
                  </li>
                ))}
              </ul>
            )
          }
        </Loaded>
        <LoadMore list={registrations} />
      </Section>
      <Section title="Open disputes" id="q-disputes">
        <Loaded state={disputes} what="disputes">
          {(items) =>
            items.length === 0 ? (
              <Empty>No dispute is open.</Empty>
            ) : (
              <ul className="cards">
                {items.map((d) => (
                  <li key={d.id} className="card" aria-label={`Dispute about ${d.period}`}>
                    <div className="card-head">
                      <strong>{formatPeriod(d.period)}</strong> {d.sale_id ? `sale ${d.sale_id}` : "whole statement"}
                      {d.program_code ? ` under ${d.program_code}` : ""} <Badge value={d.status} />
                    </div>
                    <p className="meta">
                      Partner <PartnerLink id={d.partner_id} /> claims <Money amount={d.claimed_amount} currency={d.currency} signed />: “{d.reason}”
                    </p>
                    <Toggle open={open === d.id} onToggle={() => toggle(d.id)} label={`dispute about ${d.period}`} />
                    {open === d.id && (
                      <DecisionForm
                        label={`Decide dispute about ${d.period}`}
                        resource={`/v1/disputes/${encodeURIComponent(d.id)}`}
                        action={`/v1/disputes/${encodeURIComponent(d.id)}/decision`}
                        decisions={[{ value: "accept", label: "Accept and settle" }, { value: "reject", label: "Reject" }]}
                        amountFor="accept"
                        defaultAmount={d.claimed_amount}
                        withEtag={false}
                        onDecided={setDecided}
                      />
                    )}
                  </li>
                ))}
              </ul>
            )
          }
        </Loaded>
        <LoadMore list={disputes} />
      </Section>
    </>
  );
}
