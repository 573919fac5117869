import type { Tx } from '../db/client.js';
import type { RequestContext } from './authz.js';

/**
 * Domain events: the closed catalogue of facts that modules publish about the changes they own.
 * An event is published by the service that owns the change, inside the transaction that makes
 * it: its handlers run in that transaction, in module order, so what they write commits or rolls
 * back with the change (a refused change emits nothing). Payloads are plain JSON (ids, strings,
 * booleans, decimal strings for money), so that an outbox can store them as they are.
 *
 * Cheap on the hot path: publishing a type nobody handles is one map lookup, and the ledger
 * publishes a usage batch once per batch, never once per usage event.
 */
export interface DomainEvents {
  /** A new organization; `parent_id` is set for a sub-organization. */
  'organization.created': { organization_id: string; parent_id: string | null };
  /** Fields changed by an update (name, slug, description, contacts, rate, currency). */
  'organization.updated': { organization_id: string; fields: string[] };
  /** Activated or deactivated (an inactive organization's agents are suspended). */
  'organization.toggled': { organization_id: string; active: boolean };
  /** Deleted (the row stays, marked deleted, for the ledger and audit trail). */
  'organization.deleted': { organization_id: string };
  /** The organization's plan took effect: `from` is null when the organization was created. */
  'subscription.changed': { organization_id: string; from: string | null; to: string };
  /** The organization's effective features after a change above or at it (grants, plan, detach). */
  'features.changed': { organization_id: string; features: string[] };
  'agent.created': { organization_id: string; agent_id: string };
  /** The agent moved to `organization_id` from `from_organization_id` (its keys follow it). */
  'agent.assigned': { organization_id: string; agent_id: string; from_organization_id: string };
  'agent.deleted': { organization_id: string; agent_id: string };
  /** Credits added by the operator (a top-up without an invoice, an adjustment). Amounts are decimal strings. */
  'credits.added': { organization_id: string; transaction_id: string; amount: string };
  'credits.deducted': { organization_id: string; transaction_id: string; amount: string };
  'credits.transferred': {
    organization_id: string;
    to_organization_id: string;
    transaction_id: string;
    amount: string;
  };
  /** Usage one batch recorded for the organization: one event per batch, never one per usage event. */
  'usage.recorded': { organization_id: string; events: number; amount: string };
  'hold.created': { organization_id: string; hold_id: string; amount: string };
  'hold.captured': { organization_id: string; hold_id: string; amount: string };
  'hold.released': { organization_id: string; hold_id: string; amount: string };
  'hold.expired': { organization_id: string; hold_id: string; amount: string };
  /** A top-up's payment arrived and its credits landed. */
  'top_up.paid': { organization_id: string; top_up_id: string; transaction_id: string; amount: string };
  'member.added': { organization_id: string; user_id: string; role: string };
  'member.removed': { organization_id: string; user_id: string };
  'member.role_changed': { organization_id: string; user_id: string; from: string; to: string };
}

export type EventType = keyof DomainEvents;
export type DomainEvent<T extends EventType = EventType> = {
  [K in T]: { type: K } & DomainEvents[K];
}[T];

/** `ctx` is who made the change; absent for the service's own work (renewals, expiry). */
export type EventHandler<T extends EventType> = (
  tx: Tx,
  event: DomainEvent<T>,
  ctx: RequestContext | undefined,
) => Promise<void>;

export type EventHandlers = { [T in EventType]?: EventHandler<T> };

export interface EventBus {
  /** Runs the handlers of `event.type` in `tx`, in the order they subscribed; a throw aborts the change. */
  publish<T extends EventType>(tx: Tx, event: DomainEvent<T>, ctx?: RequestContext): Promise<void>;
  subscribe(handlers: EventHandlers): void;
  /**
   * Every event, before its typed handlers: an outbox sees an event before those its handlers
   * publish (organization.created, then the subscription.changed its new plan causes).
   */
  subscribeAll(handler: EventHandler<EventType>): void;
  /** Whether publishing `type` would run anything (the ledger's one-round-trip path has no transaction to run it in). */
  heard(type: EventType): boolean;
}

export function createEventBus(): EventBus {
  const byType = new Map<EventType, Array<EventHandler<EventType>>>();
  const all: Array<EventHandler<EventType>> = [];
  return {
    async publish(tx, event, ctx) {
      const handlers = byType.get(event.type);
      const e = event as DomainEvent;
      for (const h of all) await h(tx, e, ctx);
      if (handlers) for (const h of handlers) await h(tx, e, ctx);
    },
    subscribe(handlers) {
      for (const [type, handler] of Object.entries(handlers) as Array<[EventType, EventHandler<EventType>]>) {
        const list = byType.get(type) ?? [];
        list.push(handler);
        byType.set(type, list);
      }
    },
    subscribeAll(handler) {
      all.push(handler);
    },
    heard: (type) => all.length > 0 || byType.has(type),
  };
}
