import type { InjectOptions } from 'fastify';
import { expect } from 'vitest';
import type { Feature } from '../../../src/modules/plans/plans.catalog.js';
import { as, type Res, type User, uniqueName } from '../../factories.js';
import type { TestContext } from '../../harness.js';

/** What the sub-organization suites share: the features view, and requests whose answer they check. */

/** Every feature, in the order GET features lists them (all of them are on Business). */
export const ALL_FEATURES: Feature[] = [
  'api_access',
  'allow_overdraft',
  'workflows',
  'broadcasts',
  'analytics',
  'custom_branding',
  'custom_domains',
  'sub_organizations',
];

export const subsUrl = (parentId: string) => `/api/organizations/${parentId}/sub-organizations`;

/** POST a sub-organization (a made-up name unless given), as the operator or `by`; the raw answer. */
export function createSub(
  t: TestContext,
  parentId: string,
  payload: Record<string, unknown> = {},
  by?: User,
): Promise<Res> {
  const opts: InjectOptions = {
    method: 'POST',
    url: subsUrl(parentId),
    payload: { name: uniqueName('Sub'), ...payload },
  };
  return by ? as(t, by, opts) : t.call(opts);
}

export interface FeatureRow {
  key: string;
  enabled: boolean;
  in_plan: boolean;
  granted: boolean | null;
  parent_has: boolean | null;
}

export async function featuresOf(t: TestContext, orgId: string) {
  const res = await t.call({ method: 'GET', url: `/api/organizations/${orgId}/features` });
  expect(res.statusCode, res.body).toBe(200);
  const body = res.json() as {
    organization_id: string;
    plan: string;
    enabled: string[];
    features: FeatureRow[];
  };
  return { ...body, byKey: Object.fromEntries(body.features.map((f) => [f.key, f])) };
}

/** POST credits/deduct, as the operator or `by`; the raw answer. */
export function deduct(t: TestContext, orgId: string, amount: string, by?: User): Promise<Res> {
  const opts: InjectOptions = {
    method: 'POST',
    url: `/api/organizations/${orgId}/credits/deduct`,
    payload: { amount },
  };
  return by ? as(t, by, opts) : t.call(opts);
}
