import { expect } from 'vitest';
import type { Call } from '../../factories.js';
import { createTestApp, type TestContext } from '../../harness.js';

/** What the plan suites share: their app, and the requests they check subscriptions with. */

/**
 * The app the plan suites run on. No smtpUrl: mail is kept in the local mailbox, which the
 * operator reads. Owners change plans here (PLAN_CHANGES=owners); the operator-only default
 * is test/api/governance.test.ts's.
 */
export const createPlansApp = () => createTestApp({ planChanges: 'owners' });

export const DAY = 24 * 3600 * 1000;

export async function subscription(t: TestContext, id: string, as: Call = t.call) {
  const res = await as({ method: 'GET', url: `/api/organizations/${id}/subscription` });
  expect(res.statusCode, res.body).toBe(200);
  return res.json();
}

/** POST an agent (a made-up name) into `orgId`, as the operator or `as`; the raw answer. */
let agents = 0;
export function newAgent(t: TestContext, orgId: string | undefined, as: Call = t.call) {
  return as({
    method: 'POST',
    url: '/api/agents',
    payload: { name: `Agent ${++agents}`, ...(orgId ? { organization_id: orgId } : {}) },
  });
}

/** `count` usage events of `credits` each for the organization, as the operator; the raw answer. */
let events = 0;
export function usage(t: TestContext, orgId: string, count: number, credits = '0.01') {
  return t.call({
    method: 'POST',
    url: '/api/usage',
    payload: {
      events: Array.from({ length: count }, () => ({
        organization_id: orgId,
        credits,
        idempotency_key: `plan-usage-${++events}`,
      })),
    },
  });
}

/** The same day `months` later in UTC, clamped to the month's end (Jan 31 + 1 month = Feb 28/29). */
export function monthsLater(iso: string, months: number): string {
  const d = new Date(iso);
  const day = d.getUTCDate();
  const target = new Date(d);
  target.setUTCDate(1);
  target.setUTCMonth(target.getUTCMonth() + months);
  const last = new Date(Date.UTC(target.getUTCFullYear(), target.getUTCMonth() + 1, 0)).getUTCDate();
  target.setUTCDate(Math.min(day, last));
  return target.toISOString();
}

/** The token in the newest mail the local mailbox kept for `email`. */
export async function invitationToken(t: TestContext, email: string): Promise<string> {
  const box = await t.call({ method: 'GET', url: '/api/dev/mailbox' });
  expect(box.statusCode, box.body).toBe(200);
  const mail = box.json().data.find((m: { to: string }) => m.to === email);
  expect(mail, `mail to ${email}`).toBeDefined();
  const token = /\/invitations\/([A-Za-z0-9_-]+)/.exec(mail.html)?.[1];
  expect(token).toBeTruthy();
  return token as string;
}
