import type { Tx } from '../../db/client.js';
import type { DomainEvent, EventBus, EventType } from '../../lib/events.js';
import type { BatchOutcome } from './ledger.batch.js';
import { fmt } from './ledger.views.js';

/** The events a batch's transactions make; what types they can be, for asking whether anyone listens. */
export const LEDGER_EVENTS: readonly EventType[] = [
  'credits.added',
  'credits.deducted',
  'credits.transferred',
  'usage.recorded',
  'hold.created',
  'hold.captured',
  'hold.released',
  'hold.expired',
  'top_up.paid',
];

const HOLD_EVENTS = {
  hold: 'hold.created',
  capture: 'hold.captured',
  release: 'hold.released',
  expiry: 'hold.expired',
} as const;

/**
 * The domain events of one committed batch, in the order its transactions were decided: one per
 * credit move, hold step or paid top-up, and one `usage.recorded` per organization for all the
 * usage the batch recorded there.
 */
export function batchEvents(batch: Pick<BatchOutcome, 'transactions'>): DomainEvent[] {
  const out: DomainEvent[] = [];
  const usage = new Map<string, { events: number; amount: bigint }>();
  for (const t of batch.transactions) {
    const base = { organization_id: t.organization_id, amount: fmt(t.amount) };
    switch (t.type) {
      case 'top_up':
        out.push(
          t.related_id
            ? { type: 'top_up.paid', ...base, top_up_id: t.related_id, transaction_id: t.id }
            : { type: 'credits.added', ...base, transaction_id: t.id },
        );
        break;
      case 'adjustment_credit':
        out.push({ type: 'credits.added', ...base, transaction_id: t.id });
        break;
      case 'deduction':
        out.push({ type: 'credits.deducted', ...base, transaction_id: t.id });
        break;
      case 'transfer_out':
        out.push({
          type: 'credits.transferred',
          ...base,
          to_organization_id: String(t.metadata.to_organization_id),
          transaction_id: t.id,
        });
        break;
      case 'usage': {
        const u = usage.get(t.organization_id) ?? { events: 0, amount: 0n };
        u.events++;
        u.amount += t.amount;
        usage.set(t.organization_id, u);
        break;
      }
      case 'hold':
      case 'capture':
      case 'release':
      case 'expiry':
        out.push({ type: HOLD_EVENTS[t.type], ...base, hold_id: t.related_id ?? t.id });
        break;
    }
  }
  for (const [organization_id, u] of usage)
    out.push({ type: 'usage.recorded', organization_id, events: u.events, amount: fmt(u.amount) });
  return out;
}

/** Publishes a batch's events in its transaction; nothing at all when no one listens. */
export function batchPublisher(events: EventBus) {
  return {
    heard: () => LEDGER_EVENTS.some((type) => events.heard(type)),
    async publish(tx: Tx, batch: Pick<BatchOutcome, 'transactions'>) {
      for (const event of batchEvents(batch)) await events.publish(tx, event);
    },
  };
}
