import { type Client, mapLimit } from './http.js';
import type { Op } from './load.js';
import { CheckFailed, MICROS, Tally, toMicros } from './tally.js';

interface UsageAnswer {
  applied: number;
  results: Array<{ status: 'applied' | 'rejected'; code: string | null }>;
}

/**
 * The Orgbase side of the benchmark: organizations funded through the API, and load that debits
 * them through POST /api/usage, each event with its own idempotency key.
 */
export class OrgbaseTarget {
  readonly tally = new Tally<string>();
  private seq = 0;

  constructor(
    private readonly client: Client,
    readonly initialMicros: bigint,
    readonly amount: string,
  ) {}

  /**
   * Creates `count` organizations, each put on the Enterprise plan (a new organization starts on
   * Free, whose 10,000 usage events a month the load would exhaust) and funded with the initial
   * balance.
   */
  async createOrganizations(count: number, prefix: string): Promise<string[]> {
    const indexes = Array.from({ length: count }, (_, i) => i);
    return mapLimit(indexes, 16, async (i) => {
      const org = await this.client.expect<{ id: string }>(201, 'POST', '/api/organizations', {
        name: `${prefix} ${i}`,
      });
      await this.client.expect(200, 'PUT', `/api/organizations/${org.id}/subscription`, {
        plan: 'enterprise',
      });
      await this.client.expect(201, 'POST', `/api/organizations/${org.id}/credits/add`, {
        amount: (this.initialMicros / MICROS).toString(),
        description: 'bench funding',
      });
      return org.id;
    });
  }

  /** POST /api/usage with `events` events, each on an organization from `pick`. */
  usage(pick: () => string, events: number): Op {
    const prefix = `b${Date.now().toString(36)}`;
    return async () => {
      const orgs = Array.from({ length: events }, pick);
      const body = {
        events: orgs.map((organization_id) => ({
          organization_id,
          credits: this.amount,
          idempotency_key: `${prefix}-${this.seq++}`,
        })),
      };
      const res = await this.client.request('POST', '/api/usage', body);
      if (res.status !== 200)
        throw new Error(`POST /api/usage answered ${res.status}: ${JSON.stringify(res.body)}`);
      const answer = res.body as UsageAnswer;
      for (const [i, r] of answer.results.entries()) {
        if (r.status === 'applied') this.tally.add(orgs[i] as string);
        else this.tally.refuse(r.code ?? 'unknown');
      }
      return answer.applied;
    };
  }

  /**
   * Every organization's available balance must be its funding minus what was accepted, and the
   * ledger's own invariants (GET /api/ledger/verify) must hold. Throws CheckFailed otherwise.
   */
  async check(orgs: string[]): Promise<void> {
    const amount = toMicros(this.amount);
    const wrong: string[] = [];
    await mapLimit(orgs, 16, async (id) => {
      const b = await this.client.expect<{ available: string }>(
        200,
        'GET',
        `/api/organizations/${id}/balance`,
      );
      const expected = this.initialMicros - BigInt(this.tally.accepted.get(id) ?? 0) * amount;
      const actual = toMicros(b.available);
      if (actual !== expected) wrong.push(`${id}: available ${actual} micro-credits, expected ${expected}`);
    });
    if (wrong.length)
      throw new CheckFailed(
        `Orgbase balance mismatch on ${wrong.length} organization(s):\n  ${wrong.slice(0, 10).join('\n  ')}`,
      );
    const verify = await this.client.expect<{ ok: boolean; transactions: number; violations: unknown[] }>(
      200,
      'GET',
      '/api/ledger/verify',
    );
    if (!verify.ok)
      throw new CheckFailed(
        `GET /api/ledger/verify is not ok: ${JSON.stringify(verify.violations.slice(0, 10))}`,
      );
  }
}
