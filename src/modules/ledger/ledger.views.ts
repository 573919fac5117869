/**
 * How ledger values cross the API: amounts parsed from requests into micros, and rows formatted
 * into the response shapes of ledger.schema.ts. Pure: no I/O, no state.
 */
import type { Static } from 'typebox';
import { formatAmount } from '../../lib/money.js';
import { CREDITS } from './ledger.core.js';
import type * as repo from './ledger.repo.js';
import type { HoldResponse, TopUpResponse, TransactionResponse } from './ledger.schema.js';

export type TransactionView = Static<typeof TransactionResponse>;
export type HoldView = Static<typeof HoldResponse>;
export type TopUpView = Static<typeof TopUpResponse>;

export const fmt = (m: bigint) => formatAmount(m);

/** A positive amount of credits, or a 400 naming the field. */
export { nonNegativeAmount as nonNegative, positiveAmount as positive } from '../../lib/money.js';

type TxLike = Pick<
  repo.TransactionRow,
  | 'organization_id'
  | 'id'
  | 'type'
  | 'amount'
  | 'balance_after'
  | 'description'
  | 'actor_type'
  | 'actor_id'
  | 'metadata'
  | 'related_id'
  | 'created_at'
> & { entries: Array<[string, bigint]> };

export function viewTransaction(t: TxLike): TransactionView {
  let change = 0n;
  for (const [account, amount] of t.entries) if (account === CREDITS) change += amount;
  return {
    id: t.id,
    organization_id: t.organization_id,
    type: t.type,
    amount: fmt(t.amount),
    balance_change: fmt(change),
    balance_after: fmt(t.balance_after),
    description: t.description,
    actor: { type: t.actor_type, id: t.actor_id },
    metadata: t.metadata,
    related_id: t.related_id,
    entries: t.entries.map(([account, amount]) => ({ account, amount: fmt(amount) })),
    created_at: t.created_at.toISOString(),
  };
}

/** A stored transaction (entries as two parallel arrays) as its view. */
export const rowToView = (r: repo.TransactionRow) =>
  viewTransaction({ ...r, entries: r.entry_accounts.map((a, i) => [a, r.entry_amounts[i] ?? 0n]) });

export function viewHold(h: {
  organization_id: string;
  id: string;
  amount: bigint;
  captured_amount: bigint;
  status: string;
  description: string | null;
  metadata: Record<string, unknown>;
  expires_at: Date;
  created_at: Date;
  closed_at: Date | null;
}): HoldView {
  return {
    id: h.id,
    organization_id: h.organization_id,
    amount: fmt(h.amount),
    captured_amount: fmt(h.captured_amount),
    status: h.status,
    description: h.description,
    metadata: h.metadata,
    expires_at: h.expires_at.toISOString(),
    created_at: h.created_at.toISOString(),
    closed_at: h.closed_at ? h.closed_at.toISOString() : null,
  };
}

export function viewTopUp(t: {
  organization_id: string;
  id: string;
  amount: bigint;
  status: string;
  reason: string;
  provider: string;
  payment_method: string | null;
  transaction_id: string | null;
  created_at: Date;
  updated_at: Date;
}): TopUpView {
  return {
    id: t.id,
    organization_id: t.organization_id,
    amount: fmt(t.amount),
    status: t.status,
    reason: t.reason,
    provider: t.provider,
    payment_method: t.payment_method,
    transaction_id: t.transaction_id,
    created_at: t.created_at.toISOString(),
    updated_at: t.updated_at.toISOString(),
  };
}

const CSV_COLUMNS = [
  'id',
  'created_at',
  'type',
  'amount',
  'balance_change',
  'balance_after',
  'description',
  'actor_type',
  'actor_id',
  'related_id',
] as const;

function csvCell(v: string | null): string {
  if (v === null) return '';
  // Quote always; neutralize spreadsheet formulas (CSV injection).
  const safe = /^[=+\-@\t\r]/.test(v) && !/^-?\d/.test(v) ? `'${v}` : v;
  return `"${safe.replaceAll('"', '""')}"`;
}

/** Stored transactions as a CSV document: a header line, then one line each, CRLF-terminated. */
export function transactionsCsv(rows: repo.TransactionRow[]): string {
  const lines = [CSV_COLUMNS.join(',')];
  for (const r of rows) {
    const v = rowToView(r);
    const cells: Record<(typeof CSV_COLUMNS)[number], string | null> = {
      ...v,
      actor_type: v.actor.type,
      actor_id: v.actor.id,
    };
    lines.push(CSV_COLUMNS.map((c) => csvCell(cells[c])).join(','));
  }
  return `${lines.join('\r\n')}\r\n`;
}
