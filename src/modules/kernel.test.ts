import type { FastifyBaseLogger } from 'fastify';
import { describe, expect, it } from 'vitest';
import type { DbHandle } from '../db/client.js';
import { type AnyModule, type AppDeps, assemble, runGuards } from './kernel.js';

const deps = { db: { db: {} } as unknown as DbHandle, adminToken: undefined } as AppDeps;
const log = {} as FastifyBaseLogger;
const mod = (m: Record<string, unknown>) => m as unknown as AnyModule;

describe('assemble', () => {
  it('builds modules in order and binds their declarations to their service', async () => {
    const calls: string[] = [];
    const { kernel, modules } = await assemble(
      [
        mod({
          name: 'a',
          create: () => ({ tag: 'A' }),
          jobs: { tick: async (s: { tag: string }) => calls.push(`job ${s.tag}`) },
        }),
        mod({
          name: 'b',
          create: (k: { services: Record<string, { tag: string }> }) => ({
            tag: `B after ${k.services.a?.tag}`,
          }),
          guards: {
            'organization.delete': async (s: { tag: string }, _tx: unknown, id: string) =>
              void calls.push(`${s.tag} ${id}`),
          },
        }),
      ],
      deps,
      log,
    );
    await runGuards(kernel.hub, 'organization.delete', {} as never, 'org_1');
    await modules[0]?.jobs[0]?.run();
    expect(calls).toEqual(['B after A org_1', 'job A']);
  });

  it('refuses a module used before it is built, and one listed twice', async () => {
    const early = mod({ name: 'x', create: (k: { services: Record<string, unknown> }) => k.services.later });
    await expect(assemble([early], deps, log)).rejects.toThrow('Module "later" is used before it is built');
    const twice = mod({ name: 'y', create: () => ({}) });
    await expect(assemble([twice, twice], deps, log)).rejects.toThrow('listed twice');
  });
});
