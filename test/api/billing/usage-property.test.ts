import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { formatAmount } from '../../../src/lib/money.js';
import { addCredits, createAgent, createOrg } from '../../factories.js';
import { createTestApp, type TestContext } from '../../harness.js';
import {
  billing,
  type Json,
  micros,
  ok,
  post,
  rollupsAndRecomputation,
  thisMonth,
  type UsageResult,
  usage,
} from './support.js';

/**
 * Property: the usage roll-ups always equal a full recomputation from the ledger's usage
 * transactions, and billing and analytics report exactly what a model of the events says.
 */

let t: TestContext;
beforeAll(async () => {
  t = await createTestApp();
});
afterAll(() => t.close());

interface Ev {
  org: number;
  /** 0..2: an agent; 3: none. */
  agent: number;
  credits: bigint;
  tokensIn: number | undefined;
  tokensOut: number | undefined;
  cost: bigint | undefined;
}
type Item = { kind: 'new'; ev: Ev } | { kind: 'replay'; pick: number; same: boolean };

const evArb: fc.Arbitrary<Ev> = fc.record({
  org: fc.integer({ min: 0, max: 1 }),
  agent: fc.integer({ min: 0, max: 3 }),
  credits: fc.oneof(fc.bigInt({ min: 1n, max: 2_000_000n }), fc.bigInt({ min: 1n, max: 9_999_999n })),
  tokensIn: fc.option(fc.integer({ min: 0, max: 1_000_000 }), { nil: undefined }),
  tokensOut: fc.option(fc.integer({ min: 0, max: 1_000_000 }), { nil: undefined }),
  cost: fc.option(fc.bigInt({ min: 0n, max: 50_000_000n }), { nil: undefined }),
});
const itemArb: fc.Arbitrary<Item> = fc.oneof(
  { weight: 4, arbitrary: evArb.map((ev) => ({ kind: 'new' as const, ev })) },
  {
    weight: 1,
    arbitrary: fc.record({ kind: fc.constant('replay' as const), pick: fc.nat(), same: fc.boolean() }),
  },
);
const runArb = fc.record({
  funds: fc.tuple(fc.bigInt({ min: 0n, max: 8_000_000n }), fc.bigInt({ min: 0n, max: 8_000_000n })),
  batches: fc.array(
    fc.record({
      /** Moves an agent to an organization before the batch. */
      move: fc.option(
        fc.record({ agent: fc.integer({ min: 0, max: 2 }), to: fc.integer({ min: 0, max: 1 }) }),
        {
          nil: undefined,
        },
      ),
      items: fc.array(itemArb, { minLength: 1, maxLength: 8 }),
    }),
    { minLength: 1, maxLength: 5 },
  ),
});

interface Totals {
  events: number;
  credits: bigint;
  tokensIn: number;
  tokensOut: number;
  cost: bigint;
}

describe('usage roll-ups (property)', () => {
  let run = 0;

  it('equal a full recomputation from the ledger, and billing equals the model', async () => {
    await fc.assert(
      fc.asyncProperty(runArb, async ({ funds, batches }) => {
        const label = `p${++run}`;
        const orgs = [await createOrg(t), await createOrg(t)];
        const ids = orgs.map((o) => o.id);
        const created = [
          await createAgent(t, { organization_id: ids[0] }),
          await createAgent(t, { organization_id: ids[0] }),
          await createAgent(t, { organization_id: ids[1] }),
        ];
        const agents = created.map((x) => x.id);
        const agentNames = new Map(created.map((x) => [x.id, x.name]));
        /** The organization (index) each agent works for. */
        const home = [0, 0, 1];
        const available = [...funds];
        for (const [i, f] of funds.entries())
          if (f > 0n) await addCredits(t, ids[i] as string, formatAmount(f));

        /** Applied usage per organization and agent ('' for none). */
        const model = new Map<string, Totals>();
        const sent: Array<{ event: Json; org: number; result?: UsageResult }> = [];
        let keySeq = 0;

        for (const [b, { move, items }] of batches.entries()) {
          const where = `${label} batch ${b}`;
          if (move) {
            const moved = await post(t, `/api/agents/${agents[move.agent]}/assign-org`, {
              organization_id: ids[move.to],
            });
            expect(moved.json().organization_id, where).toBe(ids[move.to]);
            home[move.agent] = move.to;
          }
          const events: Json[] = [];
          const plans: Array<{ sentIndex: number; expect: (r: UsageResult) => void }> = [];
          for (const item of items) {
            if (item.kind === 'replay') {
              if (sent.length === 0) continue;
              const pick = item.pick % sent.length;
              const original = sent[pick] as (typeof sent)[number];
              const event = item.same
                ? original.event
                : { ...original.event, credits: formatAmount(micros(original.event.credits) + 1n) };
              events.push(event);
              plans.push({
                sentIndex: pick,
                expect: (r) => {
                  if (item.same) {
                    const first = original.result as UsageResult;
                    expect([r.status, r.code, r.transaction_id, r.replayed], where).toEqual([
                      first.status,
                      first.code,
                      first.transaction_id,
                      true,
                    ]);
                  } else {
                    expect([r.status, r.code], where).toEqual(['rejected', 'idempotency_key_reused']);
                  }
                },
              });
              continue;
            }
            const { ev } = item;
            const orgId = ids[ev.org] as string;
            const agentId = ev.agent < 3 ? (agents[ev.agent] as string) : undefined;
            const event: Json = {
              organization_id: orgId,
              credits: formatAmount(ev.credits),
              idempotency_key: `${label}-k${++keySeq}`,
            };
            if (agentId !== undefined) event.agent_id = agentId;
            if (ev.tokensIn !== undefined) event.tokens_in = ev.tokensIn;
            if (ev.tokensOut !== undefined) event.tokens_out = ev.tokensOut;
            if (ev.cost !== undefined) event.cost = formatAmount(ev.cost);
            const elsewhere = agentId !== undefined && home[ev.agent] !== ev.org;
            const applies = !elsewhere && (available[ev.org] as bigint) >= ev.credits;
            if (applies) {
              available[ev.org] = (available[ev.org] as bigint) - ev.credits;
              const k = `${orgId}|${agentId ?? ''}`;
              const m = model.get(k) ?? { events: 0, credits: 0n, tokensIn: 0, tokensOut: 0, cost: 0n };
              m.events += 1;
              m.credits += ev.credits;
              m.tokensIn += ev.tokensIn ?? 0;
              m.tokensOut += ev.tokensOut ?? 0;
              m.cost += ev.cost ?? 0n;
              model.set(k, m);
            }
            sent.push({ event, org: ev.org });
            events.push(event);
            const sentIndex = sent.length - 1;
            plans.push({
              sentIndex,
              expect: (r) => {
                expect([r.status, r.code, r.replayed], `${where} ${JSON.stringify(event)}`).toEqual(
                  applies
                    ? ['applied', null, false]
                    : ['rejected', elsewhere ? 'agent_not_in_organization' : 'insufficient_credits', false],
                );
                (sent[sentIndex] as (typeof sent)[number]).result = r;
              },
            });
          }
          if (events.length === 0) continue;
          const res = await usage(t, events);
          for (const [i, plan] of plans.entries()) plan.expect(res.results[i] as UsageResult);
        }

        // The roll-up table, whole, equals the GROUP BY over the ledger's usage transactions.
        const { stored, recomputed } = await rollupsAndRecomputation(t);
        expect(stored, label).toEqual(recomputed);

        // Billing (over every month with usage) reports exactly the model's sums.
        for (const orgId of ids) {
          const months = new Set([
            thisMonth(),
            ...stored.filter((r) => r.organization_id === orgId).map((r) => r.day.slice(0, 7)),
          ]);
          const reported = new Map<string, Totals>();
          for (const month of months)
            for (const r of (await billing(t, orgId, month)).data) {
              const k = `${orgId}|${r.agent_id ?? ''}`;
              const m = reported.get(k) ?? { events: 0, credits: 0n, tokensIn: 0, tokensOut: 0, cost: 0n };
              m.events += r.events;
              m.credits += micros(r.credits);
              m.tokensIn += r.tokens_in;
              m.tokensOut += r.tokens_out;
              m.cost += micros(r.cost);
              expect(r.cost, label).toMatch(/^\d+\.\d{2,6}$/);
              if (m.events > 0) reported.set(k, m);
            }
          const expected = new Map([...model].filter(([k]) => k.startsWith(`${orgId}|`)));
          expect(reported, `${label} ${orgId}`).toEqual(expected);

          // Analytics over the days with usage: the same totals, and the agents ranked by credits.
          const days = stored
            .filter((r) => r.organization_id === orgId && r.agent_id !== '*')
            .map((r) => r.day);
          if (days.length === 0) continue;
          const from = days.reduce((p, q) => (q < p ? q : p));
          const to = days.reduce((p, q) => (q > p ? q : p));
          const analytics = await ok(
            t,
            `/api/organizations/${orgId}/analytics?from=${from}&to=${to}&top=100`,
          );
          const all = [...expected.values()];
          const sum = (f: (m: Totals) => bigint) => all.reduce((acc, m) => acc + f(m), 0n);
          const daysTotal = (
            analytics.days as Array<{ events: number; credits: string; cost: string }>
          ).reduce(
            (acc, d) => ({
              events: acc.events + BigInt(d.events),
              credits: acc.credits + micros(d.credits),
              cost: acc.cost + micros(d.cost),
            }),
            { events: 0n, credits: 0n, cost: 0n },
          );
          expect(daysTotal, label).toEqual({
            events: sum((m) => BigInt(m.events)),
            credits: sum((m) => m.credits),
            cost: sum((m) => m.cost),
          });
          const ranked = [...expected]
            .filter(([k]) => !k.endsWith('|'))
            .map(([k, m]) => ({ id: k.slice(orgId.length + 1), m }))
            .sort((p, q) =>
              p.m.credits === q.m.credits ? (p.id < q.id ? -1 : 1) : p.m.credits > q.m.credits ? -1 : 1,
            );
          expect(analytics.top_agents, label).toEqual(
            ranked.map(({ id, m }) => ({
              agent_id: id,
              agent_name: agentNames.get(id),
              events: m.events,
              credits: formatAmount(m.credits),
            })),
          );
        }
      }),
      { numRuns: 20 },
    );
  }, 120_000);
});
