// The shapes the public APIs answer with (from each service's /openapi.json); only the fields used here.

export interface Page<T> {
  items: T[];
  next_cursor: string | null;
}

export interface Problem {
  type?: string;
  title?: string;
  status?: number;
  detail?: string;
  errors?: { loc: (string | number)[]; msg: string }[];
}

export type Tier = "registered" | "silver" | "gold" | "platinum";
export const TIERS: Tier[] = ["registered", "silver", "gold", "platinum"];
export type PartnerStatus = "pending" | "active" | "suspended" | "terminated";
export const PARTNER_STATUSES: PartnerStatus[] = ["pending", "active", "suspended", "terminated"];
export const PARTNER_TYPES = [
  "sales",
  "solution",
  "service",
  "investment_financing",
  "talent_alliance",
  "social",
  "industry",
] as const;

export interface Certification {
  code: string;
  issued_at: string;
  expires_at: string | null;
}

export interface CertificationRecord extends Certification {
  state: "scheduled" | "held" | "expired" | "revoked";
  revoked_at: string | null;
}

export interface Partner {
  id: string;
  name: string;
  country: string;
  region: string;
  types: string[];
  tier: Tier;
  status: PartnerStatus;
  parent_partner_id: string | null;
  certifications: Certification[];
  created_at: string;
  updated_at: string;
}

export interface TierEntry {
  tier: Tier;
  effective_from: string;
  until: string | null;
  recorded_at: string;
}

export interface PartnerHistoryEntry {
  change: string;
  at: string;
  actor: string;
  detail: Record<string, unknown>;
  event_id: string | null;
}

export type Classification = "strategic" | "key" | "commercial" | "smb";
export const CLASSIFICATIONS: Classification[] = ["strategic", "key", "commercial", "smb"];

export interface Account {
  id: string;
  name: string;
  country: string;
  industry: string;
  classification: Classification;
  owner_partner_id: string | null;
  created_at: string;
  updated_at: string;
}

export interface AccountHistoryEntry {
  kind: string;
  value: string | null;
  from: string | null;
  to: string | null;
  effective_from: string;
  recorded_at: string;
  cause: string;
  actor: string;
  reason: string | null;
  event_id: string;
}

export interface Registration {
  id: string;
  partner_id: string;
  account_id: string;
  status: "pending" | "approved" | "rejected" | "expired";
  expires_at: string;
  created_at: string;
  prospect: boolean;
  decided_at: string | null;
  decided_by: string | null;
  reason: string | null;
}

export interface Accrual {
  sale_id: string;
  program_code: string | null;
  base_amount: string;
  base_currency: string;
  fx_rate: string | null;
  rate: string | null;
  amount: string;
  currency: string;
  status: string;
  classification: string | null;
  tier: string | null;
  explanation: string;
  period: string;
}

export interface LedgerEntry {
  id: string;
  sale_id: string | null;
  account_id: string | null;
  program_code: string | null;
  amount: string;
  currency: string;
  kind: string;
  revision: number;
  cause: string;
  period: string;
  sale_period: string;
  run_id: string | null;
  created_at: string;
}

export interface StatementTotals {
  currency: string;
  eligible_revenue: string;
  rebate: string;
  bip_bonus: string;
  adjustments: string;
  total: string;
}

export interface Statement {
  partner_id: string;
  period: string;
  status: string;
  totals: StatementTotals[];
  confirmed_at?: string | null;
  confirmed_by?: string | null;
}

export interface StatementLine {
  entry_id: string;
  kind: "original" | "adjustment" | "bip" | "dispute_settlement";
  sale_id: string | null;
  program_code: string | null;
  amount: string;
  currency: string;
  sale_period: string;
  cause: string;
  explanation: string;
  posted_at: string;
}

export interface BipProgress {
  program_code: string;
  period: string;
  currency: string;
  revenue: string;
  target: string;
  reached: boolean;
  bonus: string;
  explanation: string;
}

export interface Dispute {
  id: string;
  partner_id: string;
  period: string;
  sale_id: string | null;
  program_code: string | null;
  currency: string;
  claimed_amount: string;
  reason: string;
  status: "open" | "accepted" | "rejected" | "withdrawn";
  decision: "accept" | "reject" | null;
  decision_reason: string | null;
  decided_by: string | null;
  decided_at: string | null;
  settled_amount: string | null;
  settlement: { entry_id: string; amount: string; period: string } | null;
  created_at: string;
}

export interface Delta {
  currency: string;
  amount: string;
}

export interface RecalculationRun {
  id: string;
  trigger_type: string;
  trigger_event_id: string;
  account_id: string | null;
  partner_id: string | null;
  sku: string | null;
  program_code: string | null;
  effective_from: string | null;
  fx_pair?: string | null;
  status: string;
  sales_recomputed: number;
  sales_changed: number;
  delta: Delta[];
  started_at: string;
  finished_at: string | null;
}

export interface Product {
  sku: string;
  name: string;
  category: string;
  rebate_eligible: boolean;
  standalone_software: boolean;
  created_at: string;
  updated_at: string;
}

export interface Rule {
  classification: string;
  tier: string;
  category: string;
  rate: string;
}

export interface Program {
  code: string;
  name: string;
  kind: "base_rebate" | "capability_rebate" | "bip";
  valid_from: string;
  valid_to: string | null;
  required_certification: string | null;
  target: string | null;
  settlement_currency?: string | null;
  rules: Rule[];
  created_at: string;
}

export interface FxRatePoint {
  effective_from: string;
  rate: string;
  recorded_at: string;
  recorded_by: string;
  event_id: string;
  replaced_rate: string | null;
}

export interface FxTimeline {
  base: string;
  quote: string;
  rates: FxRatePoint[];
}

export interface FxRateChanged extends FxTimeline {
  recalculation: {
    run_id: string | null;
    trigger_event_id: string;
    sales_recomputed: number;
    sales_changed: number;
    delta: Delta[];
  } | null;
}

export interface PeriodClosed {
  period: string;
  status: string;
  closed_through: string;
  newly_closed: string[];
}

export interface Fund {
  code: string;
  kind: string;
  currency: string;
  budget: string;
  valid_from: string;
  valid_to: string;
  accrual_rate: string | null;
  per_partner_limit: string | null;
  open: boolean;
  committed: string | null;
  paid: string | null;
  available: string;
  earned: string | null;
  policy: { request_lead_working_days: number; claim_window_days: number; resubmission_window_days: number };
}

export interface FundBalance {
  fund_code: string;
  kind: string;
  currency: string;
  earned: string | null;
  committed: string;
  paid: string;
  lapsed: string;
  per_partner_limit: string | null;
  available: string;
}

export interface Claim {
  id: string;
  request_id: string;
  fund_code: string;
  partner_id: string;
  amount: string;
  currency: string;
  proof_uri: string;
  status: "submitted" | "paid" | "rejected";
  decision_reason: string | null;
  decided_at: string | null;
  paid_at: string | null;
  created_at: string;
}

export interface FundRequest {
  id: string;
  fund_code: string;
  partner_id: string;
  amount: string;
  currency: string;
  activity: string;
  planned_start: string;
  planned_end: string;
  claim_deadline: string;
  status: "submitted" | "approved" | "rejected" | "completed";
  review_reason: string | null;
  decision_reason: string | null;
  decided_by: string | null;
  decided_at: string | null;
  claimed: string;
  paid: string;
  released: string;
  completed_at: string | null;
  created_at: string;
  claims?: Claim[];
}

export interface Subscription {
  id: string;
  url: string;
  event_types: string[];
  partner_id: string | null;
  status: "active" | "paused" | "disabled";
  created_at: string;
  updated_at: string;
}

export interface Delivery {
  id: string;
  event_id: string;
  event_type: string;
  status: "pending" | "delivered" | "failed";
  attempts: { attempted_at: string; response_status: number | null; error: string | null; latency_ms: number }[];
  next_attempt_at: string | null;
  delivered_at: string | null;
  created_at: string;
}

export const EVENT_TYPES = [
  "accrual.recorded",
  "accrual.adjusted",
  "recalculation.completed",
  "statement.closed",
  "statement.confirmed",
  "dispute.opened",
  "dispute.resolved",
  "fund.request_decided",
  "fund.claim_paid",
  "partner.registered",
  "partner.status_changed",
  "partner.tier_changed",
  "partner.certification_granted",
  "partner.certification_revoked",
  "partner.certification_expired",
  "account.created",
  "account.reclassified",
  "account.ownership_changed",
] as const;
