import { expect } from 'vitest';
import type { Res } from '../../factories.js';
import type { TestContext } from '../../harness.js';

/** The members of an organization, user id to role, as the operator reads them. */
export async function rolesIn(t: TestContext, orgId: string): Promise<Record<string, string>> {
  const res = await t.call({ method: 'GET', url: `/api/organizations/${orgId}/members?limit=100` });
  expect(res.statusCode, res.body).toBe(200);
  return Object.fromEntries(
    (res.json().data as Array<{ user_id: string; role: string }>).map((m) => [m.user_id, m.role]),
  );
}

/** The fields a problem's `errors` name. */
export function fieldsOf(res: Res): string[] {
  return ((res.json().errors ?? []) as Array<{ field: string }>).map((e) => e.field);
}
