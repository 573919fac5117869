import { createHmac } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createScratchDatabase, onPostgres } from '../harness.js';
import { listening, orgbase } from './cli.js';

// The real CLI in child processes: what a user runs, on whichever database the suite targets.
let dbEnv: Record<string, string>;
let cleanup: () => Promise<void>;

beforeAll(async () => {
  if (onPostgres) {
    const scratch = await createScratchDatabase();
    dbEnv = { DATABASE_URL: scratch.url };
    cleanup = scratch.drop;
  } else {
    const dir = mkdtempSync(join(tmpdir(), 'orgbase-data-'));
    dbEnv = { ORGBASE_DATA_DIR: dir };
    cleanup = async () => rmSync(dir, { recursive: true, force: true });
  }
});
afterAll(() => cleanup());

const TOKEN_LINE = /^\s+(obo_[A-Za-z0-9_-]+)$/m;

describe('orgbase serve', () => {
  it('prints a generated operator token once, keeps data across restarts, and stops cleanly', async () => {
    const first = orgbase(['serve'], { ...dbEnv, PORT: '0' });
    const base = await listening(first);
    const token = TOKEN_LINE.exec(first.stdout())?.[1];
    expect(token).toBeDefined();
    const auth = { authorization: `Bearer ${token}`, 'content-type': 'application/json' };

    const created = await fetch(`${base}/api/organizations`, {
      method: 'POST',
      headers: auth,
      body: JSON.stringify({ name: 'Survivor', billing_rate_per_agent: '1.25' }),
    });
    expect(created.status).toBe(201);
    // A burst of writes in flight when SIGTERM arrives: each either completes or is refused whole.
    const burst = Array.from({ length: 20 }, (_, i) =>
      fetch(`${base}/api/organizations`, {
        method: 'POST',
        headers: auth,
        body: JSON.stringify({ name: `Burst ${i}` }),
      })
        .then((r) => r.status)
        .catch(() => 0),
    );
    await new Promise((r) => setTimeout(r, 5));
    first.child.kill('SIGTERM');
    const statuses = await Promise.all(burst);
    expect(await first.exited).toBe(0);
    expect(statuses.every((s) => s === 201 || s === 503 || s === 0)).toBe(true);
    expect(first.stdout()).toContain('shutting down');

    const second = orgbase(['serve'], { ...dbEnv, PORT: '0' });
    const base2 = await listening(second);
    expect(second.stdout()).not.toMatch(TOKEN_LINE);
    const list = await fetch(`${base2}/api/organizations?limit=100`, { headers: auth });
    expect(list.status).toBe(200);
    const orgs = (await list.json()) as { data: Array<{ name: string; billing_rate_per_agent: string }> };
    expect(orgs.data.find((o) => o.name === 'Survivor')?.billing_rate_per_agent).toBe('1.25');
    const burstNames = orgs.data.filter((o) => o.name.startsWith('Burst ')).length;
    expect(burstNames).toBe(statuses.filter((s) => s === 201).length);

    const wrong = await fetch(`${base2}/api/organizations`, {
      headers: { authorization: 'Bearer obo_wrong' },
    });
    expect(wrong.status).toBe(401);
    second.child.kill('SIGINT');
    expect(await second.exited).toBe(0);
    // Two cold starts of a server process (the first creates the PGlite data directory and runs
    // every migration): on a busy two-core machine that alone can take half a minute.
  }, 120_000);

  it('rotates the stored operator token from the CLI', async () => {
    const rotate = orgbase(['admin-token', 'rotate'], dbEnv);
    expect(await rotate.exited).toBe(0);
    const token = rotate.stdout().trim();
    expect(token).toMatch(/^obo_/);
    const server = orgbase(['serve'], { ...dbEnv, PORT: '0' });
    const base = await listening(server);
    const ok = await fetch(`${base}/api/organizations/internal`, {
      headers: { authorization: `Bearer ${token}` },
    });
    expect(ok.status).toBe(200);
    server.child.kill('SIGTERM');
    expect(await server.exited).toBe(0);
    // Two cold starts from source, one after the other: past 30 s on a loaded 2-core machine.
  }, 120_000);

  it('uses ADMIN_TOKEN from the environment when set', async () => {
    const adminToken = 'env-operator-token-abcdefgh';
    const server = orgbase(['serve'], { ...dbEnv, PORT: '0', ADMIN_TOKEN: adminToken });
    const base = await listening(server);
    const ok = await fetch(`${base}/api/organizations/internal`, {
      headers: { authorization: `Bearer ${adminToken}` },
    });
    expect(ok.status).toBe(200);
    server.child.kill('SIGTERM');
    expect(await server.exited).toBe(0);
  });

  it.runIf(!onPostgres)('refuses a second process on the same PGlite data directory', async () => {
    const owner = orgbase(['serve'], { ...dbEnv, PORT: '0' });
    await listening(owner);
    const intruder = orgbase(['migrate'], dbEnv);
    expect(await intruder.exited).toBe(1);
    expect(intruder.stderr()).toMatch(/in use by process \d+.*DATABASE_URL/s);
    owner.child.kill('SIGTERM');
    expect(await owner.exited).toBe(0);
  });
});

describe('configuration', () => {
  it.each([
    [{ PORT: 'abc' }, 'PORT'],
    [{ LOG_LEVEL: 'loud' }, 'LOG_LEVEL'],
    [{ DATABASE_URL: 'mysql://x' }, 'DATABASE_URL'],
    [{ ADMIN_TOKEN: 'short' }, 'ADMIN_TOKEN'],
  ])('refuses to start with %j, naming the variable', async (env, variable) => {
    const run = orgbase(['serve'], { ...dbEnv, ...env });
    expect(await run.exited).toBe(2);
    expect(run.stderr()).toContain(variable);
  });

  it('shows its commands in --help', async () => {
    const run = orgbase(['--help'], {});
    expect(await run.exited).toBe(0);
    for (const cmd of ['serve', 'migrate', 'admin-token']) expect(run.stdout()).toContain(cmd);
  });
});

describe.runIf(onPostgres)('orgbase migrate on PostgreSQL', () => {
  it('is safe when two processes migrate one fresh database at once', async () => {
    const scratch = await createScratchDatabase();
    try {
      const a = orgbase(['migrate'], { DATABASE_URL: scratch.url });
      const b = orgbase(['migrate'], { DATABASE_URL: scratch.url });
      expect([await a.exited, await b.exited]).toEqual([0, 0]);
      const outputs = [a.stdout(), b.stdout()];
      expect(outputs.filter((o) => o.startsWith('Applied')).length).toBe(1);
      expect(outputs.filter((o) => o.startsWith('Nothing to apply')).length).toBe(1);
      const again = orgbase(['migrate'], { DATABASE_URL: scratch.url });
      expect(await again.exited).toBe(0);
      expect(again.stdout()).toMatch(/^Nothing to apply/);
    } finally {
      await scratch.drop();
    }
  });
});

describe('AUTH_SECRET and PUBLIC_URL', () => {
  it('signs sessions with AUTH_SECRET and puts PUBLIC_URL in invitation links', async () => {
    const secret = 'a-session-signing-secret-of-32-chars!';
    const adminToken = 'env-operator-token-abcdefgh';
    const server = orgbase(['serve'], {
      ...dbEnv,
      PORT: '0',
      ADMIN_TOKEN: adminToken,
      AUTH_SECRET: secret,
      PUBLIC_URL: 'https://orgbase.example.test',
    });
    const base = await listening(server);
    try {
      const signUp = await fetch(`${base}/api/auth/sign-up/email`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({
          email: `secret-${Date.now()}@example.test`,
          password: 'long-enough-1',
          name: 'Sig',
        }),
      });
      expect(signUp.status, await signUp.clone().text()).toBe(200);
      const signed = signUp.headers.get('set-auth-token') ?? '';
      const [token, signature] = signed.split('.');
      expect(signature).toBe(
        createHmac('sha256', secret)
          .update(token ?? '')
          .digest('base64'),
      );

      const me = (await (
        await fetch(`${base}/api/me`, { headers: { authorization: `Bearer ${signed}` } })
      ).json()) as {
        active_organization: { id: string };
      };
      const invited = await fetch(`${base}/api/organizations/${me.active_organization.id}/invitations`, {
        method: 'POST',
        headers: { authorization: `Bearer ${signed}`, 'content-type': 'application/json' },
        body: JSON.stringify({ email: 'link@example.test', role: 'agent' }),
      });
      expect(invited.status).toBe(201);
      const mailbox = (await (
        await fetch(`${base}/api/dev/mailbox`, { headers: { authorization: `Bearer ${adminToken}` } })
      ).json()) as {
        data: Array<{ to: string; text: string }>;
      };
      const mail = mailbox.data.find((m) => m.to === 'link@example.test');
      expect(mail?.text).toMatch(/https:\/\/orgbase\.example\.test\/invitations\/[A-Za-z0-9_-]+/);
    } finally {
      server.child.kill('SIGTERM');
      expect(await server.exited).toBe(0);
    }
  });
});
