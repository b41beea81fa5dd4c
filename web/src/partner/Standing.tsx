// Tier, certifications and their expiry, and progress toward each business incentive target (a chart).

import { useId } from "react";
import { get } from "../api";
import { Badge, DataTable, Empty, Loaded, Money, Section, When } from "../components";
import { currentPeriod, formatPeriod, previousPeriod } from "../format";
import { usePolled } from "../hooks";
import { formatMoney, fromCents, ratio, toCents } from "../money";
import type { BipProgress, CertificationRecord, Partner, TierEntry } from "../types";

export function Standing({ partnerId }: { partnerId: string }) {
  const base = `/v1/partners/${encodeURIComponent(partnerId)}`;
  const state = usePolled(async () => {
    const now = currentPeriod();
    const [partner, certifications, tiers, thisBip, lastBip] = await Promise.all([
      get<Partner>(base),
      get<CertificationRecord[]>(`${base}/certifications`),
      get<TierEntry[]>(`${base}/tiers`),
      get<BipProgress[]>(`${base}/bip?period=${now}`),
      get<BipProgress[]>(`${base}/bip?period=${previousPeriod(now)}`),
    ]);
    return { partner, certifications, tiers, bip: [...thisBip, ...lastBip] };
  }, [partnerId]);

  return (
    <Loaded state={state} what="your standing">
      {({ partner, certifications, tiers, bip }) => (
        <>
          <Section title="Tier and status">
            <dl className="facts">
              <div><dt>Partner</dt><dd>{partner.name}</dd></div>
              <div><dt>Tier</dt><dd><Badge value={partner.tier} /></dd></div>
              <div><dt>Status</dt><dd><Badge value={partner.status} /></dd></div>
              <div><dt>Country, region</dt><dd>{partner.country}, {partner.region}</dd></div>
              <div><dt>Types</dt><dd>{partner.types.join(", ")}</dd></div>
            </dl>
            {tiers.length > 0 && (
              <DataTable
                caption="Tier timeline"
                rows={tiers}
                rowKey={(t) => `${t.effective_from}:${t.recorded_at}`}
                columns={[
                  { header: "Tier", cell: (t) => <Badge value={t.tier} /> },
                  { header: "From", cell: (t) => (t.effective_from.startsWith("1970-01-01") ? "the start" : <When value={t.effective_from} dateOnly />) },
                  { header: "Until", cell: (t) => (t.until ? <When value={t.until} dateOnly /> : "now") },
                ]}
              />
            )}
          </Section>
          <Section title="Certifications">
            {certifications.length === 0 ? (
              <Empty>No certifications yet. Capability rebates pay only while you hold the certification they name: ask your partner manager which ones fit.</Empty>
            ) : (
              <DataTable
                caption="Certifications and their expiry"
                rows={certifications}
                rowKey={(c) => `${c.code}:${c.issued_at}`}
                columns={[
                  { header: "Certification", cell: (c) => c.code },
                  { header: "State", cell: (c) => <Badge value={c.state} /> },
                  { header: "Issued", cell: (c) => <When value={c.issued_at} dateOnly /> },
                  { header: "Expires", cell: (c) => (c.expires_at ? <When value={c.expires_at} dateOnly /> : "does not expire") },
                ]}
              />
            )}
          </Section>
          <Section title="Business incentive progress">
            {bip.length === 0 ? (
              <Empty>No business incentive program counts your sales this period or last. Programs are listed by your partner manager; eligible sales count toward their monthly targets.</Empty>
            ) : (
              <>
                <BipChart items={bip} />
                <ul className="explanations">
                  {bip.map((b) => (
                    <li key={`${b.program_code}:${b.period}:${b.currency}`}>{b.explanation}</li>
                  ))}
                </ul>
              </>
            )}
          </Section>
        </>
      )}
    </Loaded>
  );
}

/** Horizontal bars: eligible revenue against each target, with the same figures as text for every reader. */
function BipChart({ items }: { items: BipProgress[] }) {
  const titleId = useId();
  const descId = useId();
  const rowHeight = 56;
  const width = 640;
  const labelWidth = 0;
  const barWidth = width - labelWidth - 8;
  const height = items.length * rowHeight + 8;
  const describe = (b: BipProgress) => {
    const short = toCents(b.target) - toCents(b.revenue);
    return `${b.program_code}, ${formatPeriod(b.period)}: ${formatMoney(b.revenue, b.currency)} of ${formatMoney(b.target, b.currency)}${
      b.reached ? `, target reached, bonus ${formatMoney(b.bonus, b.currency)}` : `, ${formatMoney(fromCents(short), b.currency)} to go`
    }`;
  };
  return (
    <figure className="chart">
      <svg viewBox={`0 0 ${width} ${height}`} role="img" aria-labelledby={`${titleId} ${descId}`} preserveAspectRatio="xMinYMin meet">
        <title id={titleId}>Eligible revenue toward each business incentive target</title>
        <desc id={descId}>{items.map(describe).join(". ")}.</desc>
        {items.map((b, index) => {
          const y = index * rowHeight + 4;
          const filled = ratio(b.revenue, b.target);
          return (
            <g key={`${b.program_code}:${b.period}:${b.currency}`} transform={`translate(${labelWidth}, ${y})`}>
              <text x="0" y="14" className="chart-label">
                {b.program_code} · {formatPeriod(b.period)}
              </text>
              <rect x="0" y="22" width={barWidth} height="18" rx="4" className="bar-track" />
              <rect x="0" y="22" width={Math.max(2, barWidth * filled)} height="18" rx="4" className={b.reached ? "bar-done" : "bar-fill"} />
              <text x={barWidth} y="14" textAnchor="end" className="chart-value">
                {formatMoney(b.revenue, b.currency)} / {formatMoney(b.target, b.currency)}
                {b.reached ? " ✓" : ""}
              </text>
            </g>
          );
        })}
      </svg>
      <figcaption>
        <table className="data compact">
          <caption className="visually-hidden">BIP progress in figures</caption>
          <thead>
            <tr>
              <th scope="col">Program</th>
              <th scope="col">Month</th>
              <th scope="col" className="num">Eligible revenue</th>
              <th scope="col" className="num">Target</th>
              <th scope="col" className="num">Bonus</th>
            </tr>
          </thead>
          <tbody>
            {items.map((b) => (
              <tr key={`${b.program_code}:${b.period}:${b.currency}`}>
                <td data-label="Program">{b.program_code}</td>
                <td data-label="Month">{formatPeriod(b.period)}</td>
                <td data-label="Eligible revenue" className="num"><Money amount={b.revenue} currency={b.currency} /></td>
                <td data-label="Target" className="num"><Money amount={b.target} currency={b.currency} /></td>
                <td data-label="Bonus" className="num">{b.reached ? <Money amount={b.bonus} currency={b.currency} /> : "not reached"}</td>
              </tr>
            ))}
          </tbody>
        </table>
      </figcaption>
    </figure>
  );
}
