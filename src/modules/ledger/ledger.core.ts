/**
 * The ledger's rules as pure functions over in-memory account state: no I/O, so every
 * decision is exact, ordered, and testable by properties. The engine loads and locks the
 * rows, runs these, and writes the outcome in the same database transaction.
 */
import { MAX_MICROS } from '../../lib/money.js';
import type { ErrorCode } from '../../lib/problem.js';
import { planAbove } from '../plans/plans.catalog.js';

export const CREDITS = 'credits';
export const HELD = 'held';
export const SYSTEM = {
  topUps: 'sys:top_ups',
  usage: 'sys:usage',
  adjustments: 'sys:adjustments',
  transfers: 'sys:transfers',
} as const;

export type TransactionType =
  | 'top_up'
  | 'adjustment_credit'
  | 'deduction'
  | 'usage'
  | 'hold'
  | 'capture'
  | 'release'
  | 'expiry'
  | 'transfer_out'
  | 'transfer_in';

export const TRANSACTION_TYPES: readonly TransactionType[] = [
  'top_up',
  'adjustment_credit',
  'deduction',
  'usage',
  'hold',
  'capture',
  'release',
  'expiry',
  'transfer_out',
  'transfer_in',
];

export interface CreditState {
  organizationId: string;
  active: boolean;
  balance: bigint;
  overdraftEnabled: boolean;
  overdraftLimit: bigint;
  monthlySpendingLimit: bigint | null;
  spendMonth: string;
  monthSpend: bigint;
  /** The plan's monthly usage-event allowance (null: unlimited), and this month's count. */
  usageEventsLimit: bigint | null;
  monthEvents: bigint;
  autoRechargeEnabled: boolean;
  autoRechargeThreshold: bigint;
  autoRechargeAmount: bigint;
  autoRechargePaymentMethod: string | null;
}

/** Calendar month in UTC, e.g. "2026-11": spending limits reset when it changes. */
export function monthOf(date: Date): string {
  return date.toISOString().slice(0, 7);
}

export function spentThisMonth(s: CreditState, month: string): bigint {
  return s.spendMonth === month ? s.monthSpend : 0n;
}

/** The lowest balance a debit may leave: zero, or minus the overdraft limit when enabled. */
export function floorOf(s: CreditState): bigint {
  return s.overdraftEnabled ? -s.overdraftLimit : 0n;
}

export type Refusal = { code: ErrorCode; detail: string };

/**
 * Whether `amount` may leave `credits` now. `countsAsSpend` applies the monthly limit.
 * Order of checks: inactive, then balance, then the spending limit.
 */
export function checkDebit(
  s: CreditState,
  amount: bigint,
  month: string,
  countsAsSpend: boolean,
  format: (m: bigint) => string,
): Refusal | null {
  if (!s.active)
    return { code: 'organization_inactive', detail: 'The organization is inactive and cannot spend' };
  const floor = floorOf(s);
  if (s.balance - amount < floor)
    return {
      code: 'insufficient_credits',
      detail: `Needs ${format(amount)} but only ${format(s.balance - floor)} can be spent`,
    };
  if (countsAsSpend && s.monthlySpendingLimit !== null) {
    const spent = spentThisMonth(s, month);
    if (spent + amount > s.monthlySpendingLimit)
      return {
        code: 'spending_limit_exceeded',
        detail: `This month's spend would reach ${format(spent + amount)}, over the limit of ${format(s.monthlySpendingLimit)}`,
      };
  }
  return null;
}

/**
 * Whether `amount` may come into `credits`: a balance stays within the largest amount the
 * ledger accepts anywhere (10^12 credits), so that no sum of it can leave the database's range.
 */
export function checkCredit(s: CreditState, amount: bigint, format: (m: bigint) => string): Refusal | null {
  if (s.balance + amount > MAX_MICROS)
    return {
      code: 'balance_limit_exceeded',
      detail: `The balance would reach ${format(s.balance + amount)}, past the largest balance of ${format(MAX_MICROS)}`,
    };
  return null;
}

/** Adds to this calendar month's spend (deductions, usage and captures spend; holds do not yet). */
export function recordSpend(s: CreditState, amount: bigint, month: string): void {
  // The month's counters share `spendMonth`: a new month starts both from zero.
  s.monthEvents = eventsThisMonth(s, month);
  s.monthSpend = spentThisMonth(s, month) + amount;
  s.spendMonth = month;
}

export function eventsThisMonth(s: CreditState, month: string): bigint {
  return s.spendMonth === month ? s.monthEvents : 0n;
}

/** Whether one more usage event fits the plan's monthly allowance. */
export function checkUsageAllowance(s: CreditState, month: string): Refusal | null {
  if (s.usageEventsLimit === null || eventsThisMonth(s, month) < s.usageEventsLimit) return null;
  const lifting = planAbove('monthly_usage_events', s.usageEventsLimit);
  return {
    code: 'plan_limit_exceeded',
    detail: `This month's usage events have reached the plan's monthly_usage_events limit of ${s.usageEventsLimit}${lifting ? `; the ${lifting} plan lifts it` : ''}`,
  };
}

/** Counts one usage event into this month (after its debit recorded the spend). */
export function recordUsageEvent(s: CreditState, month: string): void {
  s.monthEvents = eventsThisMonth(s, month) + 1n;
  s.spendMonth = month;
}

/** True when this change took the balance from at/above the threshold to below it. */
export function crossedRechargeThreshold(s: CreditState, before: bigint): boolean {
  return (
    s.autoRechargeEnabled &&
    s.autoRechargeAmount > 0n &&
    before >= s.autoRechargeThreshold &&
    s.balance < s.autoRechargeThreshold
  );
}

/** A team's monthly budget as the ledger sees it while its row is locked. */
export interface TeamState {
  id: string;
  organizationId: string | null;
  monthlyBudget: bigint | null;
  spendMonth: string;
  monthSpend: bigint;
}

/** Whether the team may spend `amount` of `organizationId`'s credits this month. */
export function checkTeam(
  t: TeamState | undefined,
  teamId: string,
  organizationId: string,
  amount: bigint,
  month: string,
  format: (m: bigint) => string,
): Refusal | null {
  if (!t) return { code: 'not_found', detail: `No team "${teamId}"` };
  if (t.organizationId !== organizationId)
    return {
      code: 'team_not_in_organization',
      detail: `Team "${teamId}" does not spend from this organization`,
    };
  if (t.monthlyBudget === null) return null;
  const spent = t.spendMonth === month ? t.monthSpend : 0n;
  if (spent + amount > t.monthlyBudget)
    return {
      code: 'team_budget_exceeded',
      detail: `The team's spend this month would reach ${format(spent + amount)}, over its budget of ${format(t.monthlyBudget)}`,
    };
  return null;
}
