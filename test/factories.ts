import { randomBytes } from 'node:crypto';
import type { InjectOptions, LightMyRequestResponse } from 'fastify';
import { expect } from 'vitest';
import type { ApiKeyScope, Role } from '../src/lib/authz.js';
import type { Feature, PlanKey } from '../src/modules/plans/plans.catalog.js';
import type { TestContext } from './harness.js';

/**
 * Factories: a scenario set up through the HTTP API of a test app, as a client would. Each one
 * sends a request or two, checks they succeeded, and returns what the API answered, typed. The
 * operator sends them unless `by` names a user. They are for the setup of a test; the request a
 * test is about is better written out where it is checked.
 *
 *   const t = await createTestApp();
 *   const alice = await signUp(t);                                  // and her personal organization
 *   const acme = await createOrg(t, { by: alice, plan: 'business' }); // alice owns it
 *   const bob = await signUp(t);
 *   await addMember(t, acme.id, bob, 'developer');
 *   const lab = await createSubOrg(t, acme.id, { features: ['api_access'] });
 *   await addCredits(t, lab.id, '100');
 *   const { key } = await createApiKey(t, lab.id, { scopes: ['read'] });
 *   const res = await as(t, bob, { method: 'GET', url: `/api/organizations/${acme.id}` });
 *   expectProblem(await as(t, key, { method: 'DELETE', url: `/api/organizations/${lab.id}` }), 403, 'forbidden');
 */

export type Res = LightMyRequestResponse;
/** A request with some identity's credentials: `t.call` (the operator) or a `User`'s `call`. */
export type Call = (opts: InjectOptions) => Promise<Res>;

export const PASSWORD = 'correct horse battery';

// Names unique in a test file's database (each file has its own), and apart from other runs'.
const run = randomBytes(3).toString('hex');
let seq = 0;

/** A number no other call in this file gets. */
export const nextSeq = (): number => ++seq;
/** `label` made unique in this file: `Acme 3f9a2c 17`. */
export const uniqueName = (label: string): string => `${label} ${run} ${++seq}`;
/** An email address nobody in this file has. */
export const uniqueEmail = (label = 'person'): string =>
  `${label.toLowerCase().replace(/[^a-z0-9]+/g, '-')}.${run}.${++seq}@example.test`;
let addressSeq = 0;
/** A client IP of its own (TEST-NET-3), for apps whose rate limits count per IP. */
export const freshAddress = (): string => `203.0.113.${(++addressSeq % 250) + 1}`;

export interface User {
  id: string;
  name: string;
  email: string;
  password: string;
  /** The session's bearer token (the `set-auth-token` header). */
  token: string;
  /** The session cookie, as a `Cookie` header value. */
  cookie: string;
  /** A request as this user: the session's bearer token, never the operator's. */
  call: Call;
}

/** Whoever a factory acts as when not the operator: a `User` (anything with its `call`). */
export type Actor = Pick<User, 'call'>;

/** A request as a user or with an API key's secret: its bearer token, never the operator's. */
export function as(t: TestContext, who: User | string, opts: InjectOptions): Promise<Res> {
  const token = typeof who === 'string' ? who : who.token;
  return t.app.inject({ ...opts, headers: { ...opts.headers, authorization: `Bearer ${token}` } });
}

/** Signs a user up with email and password; they get a personal organization on Free. */
export async function signUp(
  t: TestContext,
  opts: { name?: string; email?: string; password?: string; remoteAddress?: string } = {},
): Promise<User> {
  const name = opts.name ?? uniqueName('Person');
  const email = opts.email ?? uniqueEmail(opts.name ?? 'person');
  const password = opts.password ?? PASSWORD;
  const res = await t.app.inject({
    method: 'POST',
    url: '/api/auth/sign-up/email',
    payload: { email, password, name },
    ...(opts.remoteAddress ? { remoteAddress: opts.remoteAddress } : {}),
  });
  expect(res.statusCode, res.body).toBe(200);
  const token = res.headers['set-auth-token'];
  expect(typeof token, 'a set-auth-token header').toBe('string');
  const setCookie = res.headers['set-cookie'];
  const cookies = Array.isArray(setCookie) ? setCookie : [String(setCookie)];
  const session = cookies.find((c) => c.includes('session_token='));
  expect(session, 'a session cookie').toBeDefined();
  const user: User = {
    id: res.json().user.id,
    name,
    email,
    password,
    token: String(token),
    cookie: String(session).split(';')[0] as string,
    call: (o) => as(t, user, o),
  };
  return user;
}

export interface Organization {
  id: string;
  name: string;
  slug: string;
  description: string | null;
  contact_name: string | null;
  contact_email: string | null;
  billing_rate_per_agent: string;
  currency: string;
  active: boolean;
  plan: string;
  parent_id: string | null;
  branding: Record<string, unknown>;
  is_default: boolean;
  created_at: string;
  updated_at: string;
}

/** The fields an organization (or a sub-organization) is created with; `name` is made up if absent. */
export interface OrganizationFields {
  name?: string;
  slug?: string;
  description?: string | null;
  contact_name?: string | null;
  contact_email?: string | null;
  billing_rate_per_agent?: string;
  currency?: string;
}

/**
 * A top-level organization, created by the operator (no members) or `by` a user (its owner), and
 * then, if `plan` is given and is not Free, put on that plan by the operator.
 */
export async function createOrg(
  t: TestContext,
  opts: OrganizationFields & { by?: Actor; plan?: PlanKey } = {},
): Promise<Organization> {
  const { by, plan, ...fields } = opts;
  const res = await (by?.call ?? t.call)({
    method: 'POST',
    url: '/api/organizations',
    payload: { ...fields, name: fields.name ?? uniqueName('Org') },
  });
  expect(res.statusCode, res.body).toBe(201);
  const org = res.json() as Organization;
  if (plan === undefined || plan === org.plan) return org;
  await setPlan(t, org.id, plan);
  return { ...org, plan };
}

export interface Subscription {
  organization_id: string;
  plan: string;
  status: string;
  billing_cycle: string;
  [more: string]: unknown;
}

/** The operator puts the organization on `plan` (PUT subscription). */
export async function setPlan(t: TestContext, orgId: string, plan: PlanKey): Promise<Subscription> {
  const res = await t.call({
    method: 'PUT',
    url: `/api/organizations/${orgId}/subscription`,
    payload: { plan },
  });
  expect(res.statusCode, res.body).toBe(200);
  return res.json();
}

/**
 * A sub-organization of `parentId`, created by the operator or `by` a user (who becomes its owner).
 * It has its parent's plan and features unless `plan` or `features` say otherwise.
 */
export async function createSubOrg(
  t: TestContext,
  parentId: string,
  opts: OrganizationFields & { by?: Actor; plan?: PlanKey; features?: Feature[] } = {},
): Promise<Organization> {
  const { by, ...fields } = opts;
  const res = await (by?.call ?? t.call)({
    method: 'POST',
    url: `/api/organizations/${parentId}/sub-organizations`,
    payload: { ...fields, name: fields.name ?? uniqueName('Sub') },
  });
  expect(res.statusCode, res.body).toBe(201);
  return res.json();
}

export interface Member {
  user_id: string;
  name: string;
  email: string;
  role: string;
  status: string;
  created_at: string;
  updated_at: string;
}

/**
 * Makes `who` (a user, or an account's email address) a member with `role`. The operator adds
 * anyone directly; a user `by` may add only someone already in the organization's tree.
 */
export async function addMember(
  t: TestContext,
  orgId: string,
  who: User | { email: string },
  role: Role,
  opts: { by?: Actor } = {},
): Promise<Member> {
  const res = await (opts.by?.call ?? t.call)({
    method: 'POST',
    url: `/api/organizations/${orgId}/members`,
    payload: 'id' in who ? { user_id: who.id, role } : { email: who.email, role },
  });
  expect(res.statusCode, res.body).toBe(201);
  return res.json();
}

export interface Transaction {
  id: string;
  organization_id: string;
  type: string;
  amount: string;
  balance_change: string;
  balance_after: string;
  description: string | null;
  actor: { type: string; id: string | null };
  metadata: Record<string, unknown>;
  related_id: string | null;
  created_at: string;
}

/** The operator adds `amount` credits to the organization (a decimal string, e.g. "100"). */
export async function addCredits(t: TestContext, orgId: string, amount: string): Promise<Transaction> {
  const res = await t.call({
    method: 'POST',
    url: `/api/organizations/${orgId}/credits/add`,
    payload: { amount },
  });
  expect(res.statusCode, res.body).toBe(201);
  return res.json();
}

/** An organization (see `createOrg`) with `amount` credits the operator added. */
export async function createFundedOrg(
  t: TestContext,
  amount: string,
  opts: Parameters<typeof createOrg>[1] = {},
): Promise<Organization> {
  const org = await createOrg(t, opts);
  await addCredits(t, org.id, amount);
  return org;
}

export interface Agent {
  id: string;
  organization_id: string;
  name: string;
  description: string | null;
  status: string;
  billing_rate: string | null;
  effective_billing_rate: string;
  currency: string;
  created_at: string;
  updated_at: string;
}

/**
 * An agent working for `organization_id` (default: the internal organization), created by the
 * operator or `by` a user.
 */
export async function createAgent(
  t: TestContext,
  opts: {
    organization_id?: string;
    name?: string;
    description?: string | null;
    billing_rate?: string | null;
    status?: 'active' | 'paused';
    by?: Actor;
  } = {},
): Promise<Agent> {
  const { by, ...fields } = opts;
  const res = await (by?.call ?? t.call)({
    method: 'POST',
    url: '/api/agents',
    payload: { ...fields, name: fields.name ?? uniqueName('Agent') },
  });
  expect(res.statusCode, res.body).toBe(201);
  return res.json();
}

export interface ApiKey {
  id: string;
  organization_id: string;
  name: string;
  prefix: string;
  scopes: string[];
  created_at: string;
  expires_at: string | null;
  last_used_at: string | null;
  revoked_at: string | null;
  agent_id: string | null;
  /** The secret, a bearer token: shown this once. */
  key: string;
}

/** An organization's API key (default scopes: read and write), made by the operator or `by` a user. */
export async function createApiKey(
  t: TestContext,
  orgId: string,
  opts: { scopes?: ApiKeyScope[]; name?: string; expires_at?: string; by?: Actor } = {},
): Promise<ApiKey> {
  const { by, scopes = ['read', 'write'], name = uniqueName('Key'), ...rest } = opts;
  const res = await (by?.call ?? t.call)({
    method: 'POST',
    url: `/api/organizations/${orgId}/api-keys`,
    payload: { name, scopes, ...rest },
  });
  expect(res.statusCode, res.body).toBe(201);
  return res.json();
}

export interface Team {
  id: string;
  organization_id: string | null;
  name: string;
  description: string | null;
  monthly_budget: string | null;
  month: string;
  month_spend: string;
  created_at: string;
  updated_at: string;
}

/** A team of `organization_id` (default: the internal organization), made by the operator or `by` a user. */
export async function createTeam(
  t: TestContext,
  opts: {
    organization_id?: string;
    name?: string;
    description?: string | null;
    monthly_budget?: string | null;
    by?: Actor;
  } = {},
): Promise<Team> {
  const { by, ...fields } = opts;
  const res = await (by?.call ?? t.call)({
    method: 'POST',
    url: '/api/teams',
    payload: { ...fields, name: fields.name ?? uniqueName('Team') },
  });
  expect(res.statusCode, res.body).toBe(201);
  return res.json();
}

// ---------------------------------------------------------------------------------------------
// Reading back: the views tests most often check a scenario against.

export interface Membership {
  id: string;
  name: string;
  slug: string;
  active: boolean;
  parent_id: string | null;
  role: string;
  via: 'member' | 'oversight' | 'join_as';
}

export interface MeView {
  user: { id: string; name: string; email: string; created_at: string };
  organizations: Membership[];
  active_organization: Membership | null;
  joined_as: { organization_id: string; role: string; return_organization_id: string | null } | null;
}

/** GET /api/me as `user`. */
export async function readMe(t: TestContext, user: User): Promise<MeView> {
  const res = await as(t, user, { method: 'GET', url: '/api/me' });
  expect(res.statusCode, res.body).toBe(200);
  return res.json();
}

export interface AuditEntry {
  id: string;
  organization_id: string;
  action: string;
  actor: { type: string; id: string | null; role: string | null; via: string | null };
  target: { type: string; id: string };
  changes: Record<string, { before: unknown; after: unknown }>;
  request_id: string | null;
  created_at: string;
}

/** The organization's audit log, newest first (its first 100 entries), read by the operator. */
export async function readAuditLog(t: TestContext, orgId: string): Promise<AuditEntry[]> {
  const res = await t.call({ method: 'GET', url: `/api/organizations/${orgId}/audit-log?limit=100` });
  expect(res.statusCode, res.body).toBe(200);
  return res.json().data;
}

export interface Balance {
  organization_id: string;
  available: string;
  held: string;
  overdraft_enabled: boolean;
  overdraft_limit: string;
  spendable: string;
  month: string;
  month_spend: string;
  monthly_spending_limit: string | null;
  month_usage_events: number;
  usage_events_limit: number | null;
  auto_recharge: { enabled: boolean; threshold: string; amount: string; payment_method: string | null };
}

/** The organization's balance, read by the operator. */
export async function readBalance(t: TestContext, orgId: string): Promise<Balance> {
  const res = await t.call({ method: 'GET', url: `/api/organizations/${orgId}/balance` });
  expect(res.statusCode, res.body).toBe(200);
  return res.json();
}
