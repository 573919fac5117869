import { afterAll, beforeAll, expect, it } from 'vitest';
import { createTestApp, type TestContext } from '../harness.js';

let t: TestContext;
beforeAll(async () => {
  t = await createTestApp();
});
afterAll(() => t.close());

it('creates an organization', async () => {
  const res = await t.call({ method: 'POST', url: '/api/organizations', payload: { name: 'Acme' } });
  expect(res.statusCode).toBe(201);
  expect(res.json().slug).toBe('acme');
});
