import type { InjectOptions } from 'fastify';
import { ADMIN_TOKEN, type TestContext } from '../harness.js';

/**
 * What the request fuzzer (test/api/fuzz.test.ts) walks: every operation of /openapi.json, plus
 * Better Auth's routes that the README documents, each with a request that would succeed as it
 * stands. The fuzzer corrupts exactly one part of it.
 */
export type Method = 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';
export type Schema = Record<string, unknown>;

export interface Operation {
  method: Method;
  path: string;
  pathParams: string[];
  query: Record<string, Schema>;
  headers: Record<string, Schema>;
  /** The JSON body's schema, for operations that take one. */
  body?: Schema;
  requirement: 'public' | 'authenticated' | string[];
  /** One of Better Auth's routes (/api/auth/*), not in /openapi.json. */
  betterAuth: boolean;
}

export type Principal = 'operator' | 'owner' | 'key';

export interface Fixture {
  tokens: Record<Principal, string>;
  orgA: string;
  orgB: string;
  doomed: string;
  sub: string;
  agentId: string;
  teamId: string;
  holdId: string;
  topUpId: string;
  memberId: string;
  freeEmail: string;
  keyId: string;
  domainId: string;
  invitationId: string;
  invitationToken: string;
  signIn: { email: string; password: string };
  /** Sessions of users of their own, for sign-out, revoke-session and change-password. */
  signOutToken: string;
  revoker: { token: string; target: string };
  changer: { token: string; password: string };
}

/** What a Better Auth route takes, as far as it surely refuses what breaks it. */
const AUTH_OPERATIONS: Array<Pick<Operation, 'method' | 'path' | 'body' | 'requirement'>> = [
  {
    method: 'POST',
    path: '/api/auth/sign-up/email',
    requirement: 'public',
    body: {
      type: 'object',
      required: ['email', 'password', 'name'],
      properties: {
        email: { type: 'string', format: 'email' },
        password: { type: 'string', minLength: 8, maxLength: 128 },
        name: { type: 'string' },
      },
    },
  },
  {
    method: 'POST',
    path: '/api/auth/sign-in/email',
    requirement: 'public',
    body: {
      type: 'object',
      required: ['email', 'password'],
      properties: { email: { type: 'string', format: 'email' }, password: { type: 'string' } },
    },
  },
  { method: 'POST', path: '/api/auth/sign-out', requirement: 'authenticated' },
  { method: 'GET', path: '/api/auth/list-sessions', requirement: 'authenticated' },
  {
    method: 'POST',
    path: '/api/auth/revoke-session',
    requirement: 'authenticated',
    body: { type: 'object', required: ['token'], properties: { token: { type: 'string' } } },
  },
  {
    method: 'POST',
    path: '/api/auth/change-password',
    requirement: 'authenticated',
    body: {
      type: 'object',
      required: ['currentPassword', 'newPassword'],
      properties: {
        currentPassword: { type: 'string' },
        newPassword: { type: 'string', minLength: 8, maxLength: 128 },
      },
    },
  },
];

interface OpenApiParameter {
  in: string;
  name: string;
  schema: Schema;
}
interface OpenApiOperation {
  parameters?: OpenApiParameter[];
  requestBody?: { content?: Record<string, { schema?: Schema }> };
  'x-permissions'?: Operation['requirement'];
}

export function operationsOf(doc: { paths: Record<string, Record<string, OpenApiOperation>> }): Operation[] {
  const ops: Operation[] = [];
  for (const [path, methods] of Object.entries(doc.paths)) {
    if (!path.startsWith('/api/')) continue;
    for (const [method, spec] of Object.entries(methods)) {
      const params = spec.parameters ?? [];
      const pick = (where: string) =>
        Object.fromEntries(params.filter((p) => p.in === where).map((p) => [p.name, p.schema]));
      const body = spec.requestBody?.content?.['application/json']?.schema;
      ops.push({
        method: method.toUpperCase() as Method,
        path,
        pathParams: [...path.matchAll(/\{(\w+)\}/g)].map((m) => m[1] as string),
        query: pick('query'),
        headers: pick('header'),
        ...(body ? { body } : {}),
        requirement: spec['x-permissions'] ?? 'authenticated',
        betterAuth: false,
      });
    }
  }
  for (const a of AUTH_OPERATIONS)
    ops.push({ ...a, pathParams: [], query: {}, headers: {}, betterAuth: true });
  return ops.sort((a, b) => `${a.path} ${a.method}`.localeCompare(`${b.path} ${b.method}`));
}

/** Routes that act on the caller's session: a user's session token is their principal. */
export function sessionOnly(op: Operation): boolean {
  return (
    op.betterAuth ||
    op.path === '/api/me' ||
    op.path.startsWith('/api/me/') ||
    op.path === '/api/organization' ||
    op.path.startsWith('/api/organization/') ||
    op.path.endsWith('/join-as')
  );
}

export interface BaseRequest {
  params: Record<string, string>;
  body?: Record<string, unknown>;
  headers: Record<string, string>;
  /** Who sends it, unless `principal` is overridden by a session of the fixture's own. */
  token?: string;
}

/** A request of `op` that would succeed as it stands (`n` makes unique values unique). */
export function baseRequest(op: Operation, fx: Fixture, n: number): BaseRequest {
  const params: Record<string, string> = {};
  for (const name of op.pathParams) {
    params[name] =
      name === 'id'
        ? op.path.startsWith('/api/agents/')
          ? fx.agentId
          : op.path.startsWith('/api/teams/')
            ? fx.teamId
            : op.method === 'DELETE' && op.path === '/api/organizations/{id}'
              ? fx.doomed
              : op.method === 'PUT' && op.path === '/api/organizations/{id}/features'
                ? fx.sub
                : fx.orgA
        : ({
            holdId: fx.holdId,
            topUpId: fx.topUpId,
            userId: fx.memberId,
            keyId: fx.keyId,
            subId: fx.sub,
            domainId: fx.domainId,
            invitationId: fx.invitationId,
            token: fx.invitationToken,
          }[name] ?? '');
    if (!params[name]) throw new Error(`no fixture for {${name}} in ${op.path}`);
  }
  const headers: Record<string, string> = {};
  if ('idempotency-key' in op.headers) headers['idempotency-key'] = `fuzz-${n}`;
  const body = bodyFor(op, fx, n);
  const token =
    op.path === '/api/auth/sign-out'
      ? fx.signOutToken
      : op.path === '/api/auth/change-password'
        ? fx.changer.token
        : op.path === '/api/auth/revoke-session'
          ? fx.revoker.token
          : op.path === '/api/auth/sign-up/email' ||
              op.path === '/api/auth/sign-in/email' ||
              op.path.startsWith('/api/invitations/')
            ? ''
            : undefined;
  return { params, headers, ...(body ? { body } : {}), ...(token !== undefined ? { token } : {}) };
}

function bodyFor(op: Operation, fx: Fixture, n: number): Record<string, unknown> | undefined {
  const meta = { source: 'fuzz', n };
  switch (`${op.method} ${op.path}`) {
    case 'POST /api/organizations':
      return { name: `Fuzz Co ${n}`, billing_rate_per_agent: '9.50', contact_email: 'ops@fuzz.test' };
    case 'PATCH /api/organizations/{id}':
      return { description: `fuzzed ${n}` };
    case 'POST /api/organizations/{id}/credits/add':
      return { amount: '1', description: 'fuzz', metadata: meta };
    case 'POST /api/organizations/{id}/credits/deduct':
      return { amount: '0.01', reason: 'fuzz', metadata: meta };
    case 'POST /api/organizations/{id}/credits/transfer':
      return { to_organization_id: fx.orgB, amount: '0.01', description: 'fuzz', metadata: meta };
    case 'PATCH /api/organizations/{id}/credit-settings':
      return { monthly_spending_limit: '100000', overdraft_limit: '0' };
    case 'POST /api/organizations/{id}/holds':
      return { amount: '0.01', expires_in_seconds: 600, description: 'fuzz', metadata: meta };
    case 'POST /api/organizations/{id}/holds/{holdId}/capture':
      return { amount: '0.001' };
    case 'POST /api/usage':
      return {
        events: [
          {
            organization_id: fx.orgA,
            agent_id: fx.agentId,
            team_id: fx.teamId,
            credits: '0.01',
            tokens_in: 10,
            tokens_out: 5,
            cost: '0.001',
            idempotency_key: `fuzz-usage-${n}`,
            description: 'fuzz',
            metadata: meta,
          },
        ],
      };
    case 'POST /api/organizations/{id}/members':
      return { email: fx.freeEmail, role: 'agent' };
    case 'PATCH /api/organizations/{id}/members/{userId}':
      return { role: 'manager' };
    case 'POST /api/organizations/{id}/transfer-ownership':
      return { user_id: fx.memberId };
    case 'POST /api/organizations/{id}/api-keys':
      return { name: `fuzz ${n}`, scopes: ['read'], expires_at: '2099-01-01T00:00:00Z' };
    case 'POST /api/agents/{id}/api-keys':
      return { name: `fuzz ${n}`, expires_at: '2099-01-01T00:00:00Z' };
    case 'POST /api/organizations/{id}/invitations':
      return { email: `invitee-${n}@fuzz.test`, role: 'agent' };
    case 'POST /api/invitations/{token}/accept':
      return { name: 'Fuzz Invitee', password: 'fuzz-password-1' };
    case 'POST /api/me/active-organization':
      return { organization_id: fx.orgA };
    case 'POST /api/agents':
      return { name: `Fuzz Agent ${n}`, organization_id: fx.orgA, billing_rate: '12.5', status: 'active' };
    case 'PATCH /api/agents/{id}':
      return { description: `fuzzed ${n}`, billing_rate: '13' };
    case 'POST /api/agents/{id}/assign-org':
    case 'POST /api/teams/{id}/assign-org':
      return { organization_id: fx.orgB };
    case 'POST /api/teams':
      return { name: `Fuzz Team ${n}`, organization_id: fx.orgA, monthly_budget: '50' };
    case 'PATCH /api/teams/{id}':
      return { description: `fuzzed ${n}`, monthly_budget: '60' };
    case 'PUT /api/organizations/{id}/subscription':
      return { plan: 'business', billing_cycle: 'annual' };
    case 'PUT /api/organizations/{id}/features':
      return { features: ['workflows', 'analytics'] };
    case 'POST /api/organizations/{id}/sub-organizations':
      return { name: `Fuzz Child ${n}`, plan: 'business', features: ['workflows'] };
    case 'PUT /api/organizations/{id}/sub-organizations/{subId}/spending-limit':
      return { monthly_spending_limit: '100' };
    case 'POST /api/organizations/{id}/sub-organizations/{subId}/detach':
      return { plan: 'free' };
    case 'POST /api/organizations/{id}/sub-organizations/{subId}/join-as':
      return { role: 'developer' };
    case 'PUT /api/organizations/{id}/customization':
      return { display_name: 'Fuzz', logo_url: 'https://fuzz.test/logo.png', primary_color: '#123456' };
    case 'POST /api/organizations/{id}/domains':
      return { domain: `fuzz-${n}.example.test` };
    case 'POST /api/auth/sign-up/email':
      return { email: `signup-${n}@fuzz.test`, password: 'fuzz-password-1', name: 'Fuzz Signup' };
    case 'POST /api/auth/sign-in/email':
      return { ...fx.signIn };
    case 'POST /api/auth/revoke-session':
      return { token: fx.revoker.target };
    case 'POST /api/auth/change-password':
      return { currentPassword: fx.changer.password, newPassword: 'fuzz-password-2' };
    default:
      if (op.body) throw new Error(`no valid body for ${op.method} ${op.path}`);
      return undefined;
  }
}

const PASSWORD = 'fuzz-password-1';

async function signUp(t: TestContext, name: string, n: number) {
  const email = `${name}-${n}@fuzz.test`;
  const res = await t.app.inject({
    method: 'POST',
    url: '/api/auth/sign-up/email',
    payload: { email, password: PASSWORD, name },
  });
  if (res.statusCode !== 200) throw new Error(`sign-up ${res.statusCode}: ${res.body}`);
  return { email, token: String(res.headers['set-auth-token']), id: res.json().user.id as string };
}

async function ok(t: TestContext, opts: InjectOptions, field = 'id'): Promise<string> {
  const res = await t.call(opts);
  if (res.statusCode >= 300) throw new Error(`${opts.method} ${opts.url}: ${res.statusCode} ${res.body}`);
  return res.body ? String(res.json()[field] ?? '') : '';
}

/** A realistic organization around the requests: credits, a member, an agent, a team, keys, sessions. */
export async function createFixture(t: TestContext): Promise<Fixture> {
  const post = (url: string, payload: object, field?: string) =>
    ok(t, { method: 'POST', url, payload }, field);
  const owner = await signUp(t, 'owner', 1);
  const orgA = await post('/api/organizations', { name: 'Fuzz Target', slug: 'fuzz-target' });
  await ok(t, {
    method: 'PUT',
    url: `/api/organizations/${orgA}/subscription`,
    payload: { plan: 'enterprise' },
  });
  const orgB = await post('/api/organizations', { name: 'Fuzz Receiver' });
  const doomed = await post('/api/organizations', { name: 'Fuzz Doomed' });
  await post(`/api/organizations/${orgA}/credits/add`, { amount: '100000' });
  await post(`/api/organizations/${orgA}/members`, { email: owner.email, role: 'owner' }, 'user_id');
  const member = await signUp(t, 'member', 2);
  await post(`/api/organizations/${orgA}/members`, { email: member.email, role: 'developer' }, 'user_id');
  const free = await signUp(t, 'free', 3);
  const agentId = await post('/api/agents', { name: 'Fuzz Agent', organization_id: orgA });
  const teamId = await post('/api/teams', { name: 'Fuzz Team', organization_id: orgA });
  const holdId = await post(`/api/organizations/${orgA}/holds`, { amount: '1', expires_in_seconds: 86_400 });
  const topUpId = 'top_fuzz0000000000000000000001';
  await t.db.db
    .insertInto('top_ups')
    .values({ organization_id: orgA, id: topUpId, amount: 1_000_000n, reason: 'manual', provider: 'invoice' })
    .execute();
  const keyId = await post(`/api/organizations/${orgA}/api-keys`, { name: 'read', scopes: ['read'] });
  const writeKey = await post(`/api/organizations/${orgA}/api-keys`, { name: 'w', scopes: ['write'] }, 'key');
  const sub = await post(`/api/organizations/${orgA}/sub-organizations`, { name: 'Fuzz Sub' });
  const domainId = await post(`/api/organizations/${orgA}/domains`, { domain: 'fuzz.example.test' });
  const invitedEmail = 'invited@fuzz.test';
  const invitationId = await post(`/api/organizations/${orgA}/invitations`, {
    email: invitedEmail,
    role: 'agent',
  });
  const box = await t.call({ method: 'GET', url: '/api/dev/mailbox' });
  const mail = (box.json().data as Array<{ to: string; html: string }>).find((m) => m.to === invitedEmail);
  const invitationToken = /\/invitations\/([A-Za-z0-9_-]{20,})/.exec(mail?.html ?? '')?.[1];
  if (!invitationToken) throw new Error('no invitation mail');
  const signIn = await signUp(t, 'signin', 4);
  const revoke = await signUp(t, 'revoker', 5);
  const second = await t.app.inject({
    method: 'POST',
    url: '/api/auth/sign-in/email',
    payload: { email: revoke.email, password: PASSWORD },
  });
  const target = String(second.headers['set-auth-token']);
  const changer = await signUp(t, 'changer', 6);
  return {
    tokens: { operator: ADMIN_TOKEN, owner: owner.token, key: writeKey },
    orgA,
    orgB,
    doomed,
    sub,
    agentId,
    teamId,
    holdId,
    topUpId,
    memberId: member.id,
    freeEmail: free.email,
    keyId,
    domainId,
    invitationId,
    invitationToken,
    signIn: { email: signIn.email, password: PASSWORD },
    signOutToken: (await signUp(t, 'signout', 7)).token,
    revoker: { token: revoke.token, target },
    changer: { token: changer.token, password: PASSWORD },
  };
}
