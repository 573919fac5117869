import { createHash } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import type { InjectOptions } from 'fastify';
import { sql } from 'kysely';
import { SMTPServer } from 'smtp-server';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildApp } from '../../src/app.js';
import { createPostgresDb } from '../../src/db/client.js';
import { migrate } from '../../src/db/migrate.js';
import {
  type User as AccountUser,
  addMember,
  as,
  createOrg,
  readMe,
  signUp as signUpUser,
} from '../factories.js';
import {
  ADMIN_TOKEN,
  createScratchDatabase,
  createTestApp,
  onPostgres,
  type TestContext,
  tableCounts,
} from '../harness.js';
import { orgbase } from '../process/cli.js';

// ---------------------------------------------------------------------------------------------
// A real SMTP server on loopback, and just enough MIME to read what it receives.
// ---------------------------------------------------------------------------------------------

interface Mail {
  envelopeFrom: string;
  envelopeTo: string[];
  headers: Record<string, string>;
  subject: string;
  text: string;
  html: string;
}

/** Quoted-printable (or a Q encoded-word) to a byte string (one char per byte). */
const qpBytes = (s: string) =>
  s
    .replace(/=\r?\n/g, '')
    .replace(/=([0-9A-Fa-f]{2})/g, (_m, h: string) => String.fromCharCode(parseInt(h, 16)));

/** RFC 2047 encoded-words in a header; adjacent words are joined before UTF-8 decoding. */
function decodeWords(value: string): string {
  const bytes = value
    .replace(/(=\?[^?]+\?[BbQq]\?[^?]*\?=)\s+(?==\?)/g, '$1')
    .replace(/=\?[^?]+\?([BbQq])\?([^?]*)\?=/g, (_m, enc: string, data: string) =>
      enc.toUpperCase() === 'B'
        ? Buffer.from(data, 'base64').toString('latin1')
        : qpBytes(data.replace(/_/g, ' ')),
    );
  return Buffer.from(bytes, 'latin1').toString('utf8');
}

function splitHead(raw: string): { headers: Record<string, string>; body: string } {
  const m = /\r?\n\r?\n/.exec(raw);
  const head = m ? raw.slice(0, m.index) : raw;
  const body = m ? raw.slice(m.index + m[0].length) : '';
  const headers: Record<string, string> = {};
  for (const line of head.replace(/\r?\n(?=[ \t])/g, '').split(/\r?\n/)) {
    const colon = line.indexOf(':');
    const key = line.slice(0, colon).trim().toLowerCase();
    if (colon > 0 && !(key in headers)) headers[key] = line.slice(colon + 1).trim();
  }
  return { headers, body };
}

function decodeBody(body: string, encoding: string | undefined): string {
  switch ((encoding ?? '7bit').toLowerCase()) {
    case 'base64':
      return Buffer.from(body.replace(/\s+/g, ''), 'base64').toString('utf8');
    case 'quoted-printable':
      return Buffer.from(qpBytes(body), 'latin1').toString('utf8');
    default:
      return body;
  }
}

/** The text/plain and text/html bodies of a (possibly nested multipart) entity. */
function bodiesOf(entity: string, out: { text: string; html: string }) {
  const { headers, body } = splitHead(entity);
  const type = headers['content-type'] ?? 'text/plain';
  if (/^multipart\//i.test(type)) {
    const boundary = /boundary="?([^";]+)"?/i.exec(type)?.[1];
    if (!boundary) throw new Error(`multipart without boundary: ${type}`);
    for (const part of body.split(`--${boundary}`).slice(1)) {
      if (part.startsWith('--')) break;
      bodiesOf(part.replace(/^\r?\n/, '').replace(/\r?\n$/, ''), out);
    }
    return;
  }
  const decoded = decodeBody(body, headers['content-transfer-encoding']);
  if (/^text\/html/i.test(type)) out.html += decoded;
  else if (/^text\/plain/i.test(type)) out.text += decoded;
}

function parseMail(raw: string, envelopeFrom: string, envelopeTo: string[]): Mail {
  const { headers } = splitHead(raw);
  const out = { text: '', html: '' };
  bodiesOf(raw, out);
  return { envelopeFrom, envelopeTo, headers, subject: decodeWords(headers.subject ?? ''), ...out };
}

const received: Mail[] = [];
const smtp = new SMTPServer({
  authOptional: true,
  disabledCommands: ['STARTTLS'],
  logger: false,
  onData(stream, session, callback) {
    const chunks: Buffer[] = [];
    stream.on('data', (c: Buffer) => chunks.push(c));
    stream.on('end', () => {
      const envelope = session.envelope;
      received.push(
        parseMail(
          Buffer.concat(chunks).toString('latin1'),
          envelope.mailFrom ? envelope.mailFrom.address : '',
          envelope.rcptTo.map((r) => r.address),
        ),
      );
      callback();
    });
  },
});

const mailsTo = (address: string) => received.filter((m) => m.envelopeTo.includes(address));

/** The newest message to `address`, waiting briefly for it; fails if there are not `count` of them. */
async function lastMailTo(address: string, count = 1): Promise<Mail> {
  const deadline = Date.now() + 5000;
  while (mailsTo(address).length < count && Date.now() < deadline)
    await new Promise((r) => setTimeout(r, 20));
  const all = mailsTo(address);
  expect(all.length, `mail to ${address}`).toBe(count);
  return all[all.length - 1] as Mail;
}

const PUBLIC_URL = 'https://orgbase.test';
const LINK = /https:\/\/orgbase\.test\/invitations\/([A-Za-z0-9_-]+)/;

function tokenOf(mail: Mail): string {
  const token = LINK.exec(mail.html)?.[1];
  expect(token, mail.html).toBeTruthy();
  return token as string;
}

// ---------------------------------------------------------------------------------------------
// Users, through the HTTP API only.
// ---------------------------------------------------------------------------------------------

const PASSWORD = 'correct-horse-battery';

interface User extends AccountUser {
  personalOrgId: string;
}

/** A user signed up with `email` and `name`, with the one (personal) organization they start with. */
async function signUp(ctx: TestContext, email: string, name: string): Promise<User> {
  const user = await signUpUser(ctx, { email, name, password: PASSWORD });
  const me = await readMe(ctx, user);
  expect(me.organizations).toHaveLength(1);
  return { ...user, email: me.user.email, personalOrgId: me.organizations[0]?.id as string };
}

function invite(user: User, orgId: string, payload: unknown) {
  return user.call({
    method: 'POST',
    url: `/api/organizations/${orgId}/invitations`,
    payload: payload as Record<string, unknown>,
  });
}

async function listInvitations(user: User, orgId: string) {
  const res = await user.call({ method: 'GET', url: `/api/organizations/${orgId}/invitations?limit=100` });
  expect(res.statusCode, res.body).toBe(200);
  return res.json().data as Array<{ id: string; email: string; status: string; role: string }>;
}

const DAY = 24 * 3600 * 1000;

function expectSevenDays(expiresAt: string) {
  const ms = Date.parse(expiresAt) - Date.now();
  expect(ms).toBeGreaterThan(7 * DAY - 120_000);
  expect(ms).toBeLessThanOrEqual(7 * DAY + 1000);
}

// ---------------------------------------------------------------------------------------------

let t: TestContext;
beforeAll(async () => {
  await new Promise<void>((resolve, reject) => {
    smtp.server.once('error', reject);
    smtp.listen(0, '127.0.0.1', () => resolve());
  });
  const { port } = smtp.server.address() as AddressInfo;
  t = await createTestApp({ smtpUrl: `smtp://127.0.0.1:${port}`, publicUrl: PUBLIC_URL });
});
afterAll(async () => {
  await t?.close();
  await new Promise<void>((resolve) => smtp.close(() => resolve()));
});

describe('an invitation, from the mail to a new account', () => {
  let owner: User;
  let org: { id: string; name: string };
  let invitationId: string;
  let token: string;
  let invitee: string;

  it('sends a branded mail over SMTP and answers 201 with a pending, 7-day invitation', async () => {
    owner = await signUp(t, 'ada@person.test', 'Ada Owner');
    org = await createOrg(t, { by: owner, name: 'Zoë Robotics', plan: 'growth' });
    await sql`update organizations set branding = '{"logo_url":"https://cdn.test/logo.png","primary_color":"#ff0066"}'
      where id = ${org.id}`.execute(t.db.db);

    const res = await invite(owner, org.id, { email: 'new@person.test', role: 'developer' });
    expect(res.statusCode, res.body).toBe(201);
    const inv = res.json();
    expect(inv).toMatchObject({
      organization_id: org.id,
      email: 'new@person.test',
      role: 'developer',
      status: 'pending',
      sent_count: 1,
    });
    expect(inv.id).toMatch(/^inv_/);
    expectSevenDays(inv.expires_at);
    invitationId = inv.id;

    const mail = await lastMailTo('new@person.test');
    expect(mail.envelopeTo).toEqual(['new@person.test']);
    expect(mail.envelopeFrom).toBe('no-reply@orgbase.local');
    expect(mail.headers.to).toContain('new@person.test');
    expect(mail.subject).toBe('Ada Owner invited you to join Zoë Robotics');
    expect(mail.html).toContain('Zoë Robotics');
    expect(mail.html).toMatch(/<img src="https:\/\/cdn\.test\/logo\.png"/);
    expect(mail.html).toContain('#ff0066');
    expect(mail.html).toContain('<strong>developer</strong>');
    token = tokenOf(mail);
    expect(mail.text).toContain(`${PUBLIC_URL}/invitations/${token}`);
    expect(mail.text).toContain(`POST ${PUBLIC_URL}/api/invitations/${token}/accept`);

    // The token is neither answered nor stored: only its SHA-256 is.
    expect(res.body).not.toContain(token);
    const listed = await owner.call({ method: 'GET', url: `/api/organizations/${org.id}/invitations` });
    expect(listed.statusCode).toBe(200);
    expect(listed.body).not.toContain(token);
    expect(listed.json().data).toMatchObject([{ id: invitationId, status: 'pending' }]);
    const stored = await t.db.db
      .selectFrom('invitations')
      .selectAll()
      .where('id', '=', invitationId)
      .execute();
    expect(stored).toHaveLength(1);
    expect(stored[0]?.token_hash).toBe(createHash('sha256').update(token).digest('hex'));
    expect(JSON.stringify(stored)).not.toContain(token);
  });

  it('previews the organization, email and role without authentication', async () => {
    const res = await t.app.inject({ method: 'GET', url: `/api/invitations/${token}` });
    expect(res.statusCode, res.body).toBe(200);
    expect(res.json()).toMatchObject({
      organization: {
        id: org.id,
        name: 'Zoë Robotics',
        branding: { logo_url: 'https://cdn.test/logo.png', primary_color: '#ff0066' },
      },
      email: 'new@person.test',
      role: 'developer',
    });
    expect(res.body).not.toContain(token);
  });

  it('answers 400 naming the field when accepting without a session and without name or password', async () => {
    const before = await tableCounts(t.db);
    const cases: Array<[Record<string, unknown> | undefined, string]> = [
      [undefined, 'name'],
      [{}, 'name'],
      [{ name: 'New Person' }, 'password'],
      [{ password: PASSWORD }, 'name'],
      [{ name: '   ', password: PASSWORD }, 'name'],
      [{ name: 'New Person', password: 'short' }, 'password'],
      [{ name: 'New Person', password: PASSWORD, role: 'owner' }, 'role'],
    ];
    for (const [payload, field] of cases) {
      const res = await t.app.inject({
        method: 'POST',
        url: `/api/invitations/${token}/accept`,
        ...(payload ? { payload } : {}),
      });
      expect(res.statusCode, `${JSON.stringify(payload)}: ${res.body}`).toBe(400);
      expect(res.json().code).toBe('validation_failed');
      expect(res.json().errors.map((e: { field: string }) => e.field)).toContain(field);
    }
    expect(await tableCounts(t.db)).toEqual(before);
  });

  it('creates the account on accept, makes it a developer and activates the organization', async () => {
    const res = await t.app.inject({
      method: 'POST',
      url: `/api/invitations/${token}/accept`,
      payload: { name: 'New Person', password: PASSWORD },
    });
    expect(res.statusCode, res.body).toBe(200);
    expect(res.body).not.toContain(token);
    const session = res.headers['set-auth-token'];
    expect(typeof session).toBe('string');
    expect(res.json()).toMatchObject({ organization_id: org.id, role: 'developer' });
    invitee = res.json().user_id;

    const me = await as(t, session as string, { method: 'GET', url: '/api/me' });
    expect(me.statusCode, me.body).toBe(200);
    const body = me.json();
    expect(body.user).toMatchObject({ id: invitee, email: 'new@person.test', name: 'New Person' });
    expect(body.organizations).toContainEqual(expect.objectContaining({ id: org.id, role: 'developer' }));
    expect(body.active_organization).toMatchObject({ id: org.id, role: 'developer' });

    const members = await owner.call({ method: 'GET', url: `/api/organizations/${org.id}/members` });
    expect(members.json().data).toContainEqual(
      expect.objectContaining({ user_id: invitee, email: 'new@person.test', role: 'developer' }),
    );
    const list = await listInvitations(owner, org.id);
    expect(list).toMatchObject([{ id: invitationId, status: 'accepted' }]);
  });

  it('answers 410 invitation_gone for a used link, and writes nothing', async () => {
    const before = await tableCounts(t.db);
    const again = await t.app.inject({
      method: 'POST',
      url: `/api/invitations/${token}/accept`,
      payload: { name: 'Someone Else', password: PASSWORD },
    });
    expect(again.statusCode, again.body).toBe(410);
    expect(again.json().code).toBe('invitation_gone');
    const preview = await t.app.inject({ method: 'GET', url: `/api/invitations/${token}` });
    expect(preview.statusCode).toBe(410);
    expect(preview.json().code).toBe('invitation_gone');
    expect(await tableCounts(t.db)).toEqual(before);
  });

  it('answers 404 for an unknown token and 400 for a malformed one', async () => {
    const unknown = await t.app.inject({ method: 'GET', url: `/api/invitations/${'A'.repeat(43)}` });
    expect(unknown.statusCode).toBe(404);
    expect(unknown.json().code).toBe('not_found');
    const malformed = await t.app.inject({ method: 'GET', url: '/api/invitations/short' });
    expect(malformed.statusCode).toBe(400);
    expect(malformed.json().errors.map((e: { field: string }) => e.field)).toContain('token');
  });
});

describe('accepting, revoking, expiring, resending; who may invite whom', () => {
  let owner: User;
  let org: { id: string; name: string };

  beforeAll(async () => {
    owner = await signUp(t, 'olu@person.test', 'Olu Owner');
    org = await createOrg(t, { by: owner, name: 'Acme Agents', plan: 'growth' });
  });

  async function inviteOk(email: string, role = 'developer', by: User = owner) {
    const count = mailsTo(email.toLowerCase()).length;
    const res = await invite(by, org.id, { email, role });
    expect(res.statusCode, res.body).toBe(201);
    const mail = await lastMailTo(email.toLowerCase(), count + 1);
    return { invitation: res.json() as { id: string; email: string; status: string }, token: tokenOf(mail) };
  }

  it('lets a signed-in user whose email matches (in any case) join, and activates the organization', async () => {
    const user = await signUp(t, 'Mixed.Case@Person.test', 'Mixed Case');
    const { invitation, token } = await inviteOk('MIXED.case@person.TEST', 'manager');
    expect(invitation.email).toBe('mixed.case@person.test');
    const res = await user.call({ method: 'POST', url: `/api/invitations/${token}/accept` });
    expect(res.statusCode, res.body).toBe(200);
    expect(res.json()).toEqual({ organization_id: org.id, user_id: user.id, role: 'manager' });
    expect(res.headers['set-auth-token']).toBeUndefined();
    const me = (await user.call({ method: 'GET', url: '/api/me' })).json();
    expect(me.organizations).toContainEqual(expect.objectContaining({ id: org.id, role: 'manager' }));
    expect(me.active_organization).toMatchObject({ id: org.id });
  });

  it('answers 403 email_mismatch to a signed-in user with another email, and writes nothing', async () => {
    const other = await signUp(t, 'other@person.test', 'Other Person');
    const { invitation, token } = await inviteOk('intended@person.test');
    const before = await tableCounts(t.db);
    for (const payload of [undefined, { name: 'Other', password: PASSWORD }]) {
      const res = await other.call({
        method: 'POST',
        url: `/api/invitations/${token}/accept`,
        ...(payload ? { payload } : {}),
      });
      expect(res.statusCode, res.body).toBe(403);
      expect(res.json().code).toBe('email_mismatch');
    }
    expect(await tableCounts(t.db)).toEqual(before);
    const me = (await other.call({ method: 'GET', url: '/api/me' })).json();
    expect(me.organizations.map((o: { id: string }) => o.id)).toEqual([other.personalOrgId]);
    expect((await listInvitations(owner, org.id)).find((i) => i.id === invitation.id)?.status).toBe(
      'pending',
    );
  });

  it('answers 410 for a revoked invitation', async () => {
    const { invitation, token } = await inviteOk('revoked@person.test');
    const del = await owner.call({
      method: 'DELETE',
      url: `/api/organizations/${org.id}/invitations/${invitation.id}`,
    });
    expect(del.statusCode, del.body).toBe(204);
    const before = await tableCounts(t.db);
    const preview = await t.app.inject({ method: 'GET', url: `/api/invitations/${token}` });
    expect(preview.statusCode).toBe(410);
    const res = await t.app.inject({
      method: 'POST',
      url: `/api/invitations/${token}/accept`,
      payload: { name: 'Revoked', password: PASSWORD },
    });
    expect(res.statusCode, res.body).toBe(410);
    expect(res.json().code).toBe('invitation_gone');
    expect(await tableCounts(t.db)).toEqual(before);
    expect((await listInvitations(owner, org.id)).find((i) => i.id === invitation.id)?.status).toBe(
      'revoked',
    );
    const resend = await owner.call({
      method: 'POST',
      url: `/api/organizations/${org.id}/invitations/${invitation.id}/resend`,
    });
    expect(resend.statusCode).toBe(410);
    expect(resend.json().code).toBe('invitation_gone');
  });

  it('answers 410 for an expired invitation, lists it as expired, and lets a new one be sent', async () => {
    const { invitation, token } = await inviteOk('late@person.test');
    await sql`update invitations set expires_at = now() - interval '1 minute' where id = ${invitation.id}`.execute(
      t.db.db,
    );
    const before = await tableCounts(t.db);
    const preview = await t.app.inject({ method: 'GET', url: `/api/invitations/${token}` });
    expect(preview.statusCode).toBe(410);
    expect(preview.json().code).toBe('invitation_gone');
    const res = await t.app.inject({
      method: 'POST',
      url: `/api/invitations/${token}/accept`,
      payload: { name: 'Late Person', password: PASSWORD },
    });
    expect(res.statusCode, res.body).toBe(410);
    expect(res.json().code).toBe('invitation_gone');
    expect(await tableCounts(t.db)).toEqual(before);
    expect((await listInvitations(owner, org.id)).find((i) => i.id === invitation.id)?.status).toBe(
      'expired',
    );

    // An expired invitation does not block a new one.
    const fresh = await inviteOk('late@person.test');
    expect(fresh.invitation.status).toBe('pending');
    const accepted = await t.app.inject({
      method: 'POST',
      url: `/api/invitations/${fresh.token}/accept`,
      payload: { name: 'Late Person', password: PASSWORD },
    });
    expect(accepted.statusCode, accepted.body).toBe(200);
  });

  it('resends with a new token and a new mail; the old link stops working', async () => {
    const first = await inviteOk('resend@person.test', 'agent');
    const res = await owner.call({
      method: 'POST',
      url: `/api/organizations/${org.id}/invitations/${first.invitation.id}/resend`,
    });
    expect(res.statusCode, res.body).toBe(200);
    expect(res.json()).toMatchObject({ id: first.invitation.id, status: 'pending', sent_count: 2 });
    expectSevenDays(res.json().expires_at);
    const second = tokenOf(await lastMailTo('resend@person.test', 2));
    expect(second).not.toBe(first.token);
    expect(res.body).not.toContain(second);

    const old = await t.app.inject({ method: 'GET', url: `/api/invitations/${first.token}` });
    expect([404, 410]).toContain(old.statusCode);
    const oldAccept = await t.app.inject({
      method: 'POST',
      url: `/api/invitations/${first.token}/accept`,
      payload: { name: 'Resent', password: PASSWORD },
    });
    expect([404, 410]).toContain(oldAccept.statusCode);

    const accepted = await t.app.inject({
      method: 'POST',
      url: `/api/invitations/${second}/accept`,
      payload: { name: 'Resent', password: PASSWORD },
    });
    expect(accepted.statusCode, accepted.body).toBe(200);
    expect(accepted.json()).toMatchObject({ organization_id: org.id, role: 'agent' });
  });

  it('answers 409 invitation_pending for a second pending invitation to one email, sending nothing', async () => {
    await inviteOk('dup@person.test');
    const before = await tableCounts(t.db);
    for (const email of ['dup@person.test', 'DUP@Person.Test']) {
      const res = await invite(owner, org.id, { email, role: 'admin' });
      expect(res.statusCode, res.body).toBe(409);
      expect(res.json().code).toBe('invitation_pending');
    }
    expect(await tableCounts(t.db)).toEqual(before);
    expect(mailsTo('dup@person.test')).toHaveLength(1);
  });

  it('answers 409 already_member for a member, in any case', async () => {
    const before = await tableCounts(t.db);
    for (const email of ['olu@person.test', 'OLU@person.test']) {
      const res = await invite(owner, org.id, { email, role: 'developer' });
      expect(res.statusCode, res.body).toBe(409);
      expect(res.json().code).toBe('already_member');
    }
    expect(await tableCounts(t.db)).toEqual(before);
    expect(mailsTo('olu@person.test')).toHaveLength(0);
  });

  it('answers 409 already_member for a member who signed up with a mixed-case email', async () => {
    const member = await signUp(t, 'Member.Case@Person.test', 'Member Case');
    await addMember(t, org.id, { email: 'member.case@person.test' }, 'developer');
    const before = await tableCounts(t.db);
    for (const email of ['member.case@person.test', 'Member.Case@Person.test']) {
      const res = await invite(owner, org.id, { email, role: 'agent' });
      expect(res.statusCode, `${member.email} invited as ${email}: ${res.body}`).toBe(409);
      expect(res.json().code).toBe('already_member');
    }
    expect(await tableCounts(t.db)).toEqual(before);
  });

  it('answers 409 email_taken to a link used without a session for an email that has an account', async () => {
    await signUp(t, 'has.account@person.test', 'Has Account');
    const { token } = await inviteOk('has.account@person.test');
    const before = await tableCounts(t.db);
    const res = await t.app.inject({
      method: 'POST',
      url: `/api/invitations/${token}/accept`,
      payload: { name: 'Impostor', password: 'another-password-123' },
    });
    expect(res.statusCode, res.body).toBe(409);
    expect(res.json().code).toBe('email_taken');
    expect(await tableCounts(t.db)).toEqual(before);
    const preview = await t.app.inject({ method: 'GET', url: `/api/invitations/${token}` });
    expect(preview.statusCode).toBe(200);
  });

  it('does not let a link join an organization deleted since it was sent', async () => {
    const doomed = await createOrg(t, { by: owner, name: 'Doomed Dynamics', plan: 'growth' });
    const res = await invite(owner, doomed.id, { email: 'orphan@person.test', role: 'developer' });
    expect(res.statusCode, res.body).toBe(201);
    const token = tokenOf(await lastMailTo('orphan@person.test'));
    const del = await owner.call({ method: 'DELETE', url: `/api/organizations/${doomed.id}` });
    expect(del.statusCode, del.body).toBe(204);

    const preview = await t.app.inject({ method: 'GET', url: `/api/invitations/${token}` });
    expect([404, 410], preview.body).toContain(preview.statusCode);
    const before = await tableCounts(t.db);
    const accepted = await t.app.inject({
      method: 'POST',
      url: `/api/invitations/${token}/accept`,
      payload: { name: 'Orphan', password: PASSWORD },
    });
    expect([404, 410], accepted.body).toContain(accepted.statusCode);
    expect(await tableCounts(t.db)).toEqual(before);
  });

  it('refuses a developer (403) and another organization’s user (404)', async () => {
    const dev = await signUp(t, 'dev@person.test', 'Dev Eloper');
    await addMember(t, org.id, { email: dev.email }, 'developer');
    const stranger = await signUp(t, 'stranger@person.test', 'Stranger');
    const { invitation } = await inviteOk('target@person.test');
    const before = await tableCounts(t.db);
    const base = `/api/organizations/${org.id}/invitations`;
    for (const [user, status, code] of [
      [dev, 403, 'forbidden'],
      [stranger, 404, 'not_found'],
    ] as const) {
      const requests: InjectOptions[] = [
        { method: 'POST', url: base, payload: { email: 'someone@person.test', role: 'agent' } },
        { method: 'GET', url: base },
        { method: 'POST', url: `${base}/${invitation.id}/resend` },
        { method: 'DELETE', url: `${base}/${invitation.id}` },
      ];
      for (const req of requests) {
        const res = await user.call(req);
        expect(res.statusCode, `${user.email} ${req.method} ${req.url}: ${res.body}`).toBe(status);
        expect(res.json().code).toBe(code);
      }
    }
    expect(await tableCounts(t.db)).toEqual(before);
    expect(mailsTo('someone@person.test')).toHaveLength(0);
    expect(mailsTo('target@person.test')).toHaveLength(1);
  });

  it('lets only an owner invite an owner', async () => {
    const admin = await signUp(t, 'admin@person.test', 'Ad Min');
    await addMember(t, org.id, { email: admin.email }, 'admin');
    const before = await tableCounts(t.db);
    const refused = await invite(admin, org.id, { email: 'boss@person.test', role: 'owner' });
    expect(refused.statusCode, refused.body).toBe(403);
    expect(refused.json().code).toBe('forbidden');
    expect(await tableCounts(t.db)).toEqual(before);
    expect(mailsTo('boss@person.test')).toHaveLength(0);

    const byAdmin = await inviteOk('helper@person.test', 'admin', admin);
    expect(byAdmin.invitation).toMatchObject({ status: 'pending' });
    const byOwner = await inviteOk('boss@person.test', 'owner');
    const accepted = await t.app.inject({
      method: 'POST',
      url: `/api/invitations/${byOwner.token}/accept`,
      payload: { name: 'New Boss', password: PASSWORD },
    });
    expect(accepted.statusCode, accepted.body).toBe(200);
    expect(accepted.json().role).toBe('owner');
  });

  const bad: Array<[string, unknown, string]> = [
    ['a bad email', { email: 'not-an-email', role: 'developer' }, 'email'],
    ['a missing email', { role: 'developer' }, 'email'],
    ['an oversized email', { email: `${'a'.repeat(250)}@x.test`, role: 'developer' }, 'email'],
    ['an unknown role', { email: 'valid@person.test', role: 'superuser' }, 'role'],
    ['a capitalised role', { email: 'valid@person.test', role: 'Developer' }, 'role'],
    ['a missing role', { email: 'valid@person.test' }, 'role'],
    ['an unknown field', { email: 'valid@person.test', role: 'developer', note: 'hi' }, 'note'],
  ];
  it.each(bad)(
    'rejects %s with 400 naming the field, writing and sending nothing',
    async (_l, payload, field) => {
      const before = await tableCounts(t.db);
      const mails = received.length;
      const res = await invite(owner, org.id, payload);
      expect(res.statusCode, res.body).toBe(400);
      expect(res.json().code).toBe('validation_failed');
      expect(res.json().errors.map((e: { field: string }) => e.field)).toContain(field);
      expect(await tableCounts(t.db)).toEqual(before);
      expect(received.length).toBe(mails);
    },
  );
});

describe('without SMTP: the embedded mailbox', () => {
  let m: TestContext;
  beforeAll(async () => {
    m = await createTestApp({ publicUrl: PUBLIC_URL });
  });
  afterAll(() => m?.close());

  it('keeps the mail in GET /api/dev/mailbox for the operator only', async () => {
    const owner = await signUp(m, 'box@person.test', 'Box Owner');
    const org = await createOrg(m, { by: owner, name: 'Mailbox Makers', plan: 'growth' });
    const res = await invite(owner, org.id, { email: 'boxed@person.test', role: 'agent' });
    expect(res.statusCode, res.body).toBe(201);
    expect(mailsTo('boxed@person.test')).toHaveLength(0);

    const box = await m.call({ method: 'GET', url: '/api/dev/mailbox' });
    expect(box.statusCode, box.body).toBe(200);
    expect(box.json().transport).toBe('mailbox');
    const mail = box.json().data[0];
    expect(mail).toMatchObject({
      to: 'boxed@person.test',
      subject: 'Box Owner invited you to join Mailbox Makers',
    });
    const token = LINK.exec(mail.html)?.[1] as string;
    expect(token).toBeTruthy();
    expect(mail.text).toContain(`${PUBLIC_URL}/invitations/${token}`);

    const asUser = await owner.call({ method: 'GET', url: '/api/dev/mailbox' });
    expect(asUser.statusCode).toBe(403);
    expect(asUser.json().code).toBe('forbidden');
    const anonymous = await m.app.inject({ method: 'GET', url: '/api/dev/mailbox' });
    expect(anonymous.statusCode).toBe(401);

    const accepted = await m.app.inject({
      method: 'POST',
      url: `/api/invitations/${token}/accept`,
      payload: { name: 'Boxed', password: PASSWORD },
    });
    expect(accepted.statusCode, accepted.body).toBe(200);
    expect(accepted.json()).toMatchObject({ organization_id: org.id, role: 'agent' });
  });

  describe.runIf(onPostgres)('orgbase mailbox', () => {
    it('prints the recipient and subject of a mail an app kept', async () => {
      const scratch = await createScratchDatabase();
      try {
        const db = createPostgresDb(scratch.url, 2);
        try {
          await migrate(db.db);
          const app = await buildApp({ db, adminToken: ADMIN_TOKEN, publicUrl: PUBLIC_URL });
          try {
            await app.ready();
            const ctx = {
              app,
              db,
              call: (opts) =>
                app.inject({ ...opts, headers: { authorization: `Bearer ${ADMIN_TOKEN}`, ...opts.headers } }),
            } as TestContext;
            const owner = await signUp(ctx, 'cli-owner@person.test', 'Cli Owner');
            const org = await createOrg(ctx, { by: owner, name: 'Command Line Co', plan: 'growth' });
            const res = await invite(owner, org.id, { email: 'cli@person.test', role: 'developer' });
            expect(res.statusCode, res.body).toBe(201);
          } finally {
            await app.close();
          }
        } finally {
          await db.close();
        }
        const run = orgbase(['mailbox'], { DATABASE_URL: scratch.url });
        const code = await run.exited;
        expect(code, run.stderr()).toBe(0);
        expect(run.stdout()).toContain('To: cli@person.test');
        expect(run.stdout()).toContain('Subject: Cli Owner invited you to join Command Line Co');
        expect(run.stdout()).toMatch(/https:\/\/orgbase\.test\/invitations\/[A-Za-z0-9_-]{20,}/);
      } finally {
        await scratch.drop();
      }
    }, 60_000);
  });
});
