import { createSocket } from 'node:dgram';
import { Resolver } from 'node:dns/promises';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createDnsResolver, DnsLookupError, type TxtResolver } from '../src/modules/domains/dns.js';
import { startDnsServer, type TestDnsServer } from './support/dns-server.js';

let server: TestDnsServer;
let resolver: TxtResolver;

beforeAll(async () => {
  server = await startDnsServer();
  resolver = createDnsResolver({ servers: [server.address], timeoutMs: 1000 });
});
afterAll(() => server.close());
beforeEach(() => server.clear());

/** A UDP port on loopback that nothing listens on: bound once to get it, then released. */
async function closedPort(): Promise<number> {
  const socket = createSocket('udp4');
  await new Promise<void>((resolve) => socket.bind(0, '127.0.0.1', resolve));
  const { port } = socket.address();
  await new Promise<void>((resolve) => socket.close(resolve));
  return port;
}

/** The rejection reason, or undefined if the promise resolved. */
function failure(p: Promise<unknown>): Promise<unknown> {
  return p.then(
    () => undefined,
    (e: unknown) => e,
  );
}

describe('createDnsResolver against the test DNS server', () => {
  it('returns the TXT values of a name', async () => {
    server.setTxt('_orgbase.example.com', ['orgbase-verify=abc123']);
    expect(await resolver.resolveTxt('_orgbase.example.com')).toEqual(['orgbase-verify=abc123']);
  });

  it('returns several records, and joins a value longer than 255 bytes back together', async () => {
    const long = `orgbase-verify=${'x'.repeat(300)}`;
    server.setTxt('multi.example.com', ['v=spf1 -all', long, '']);
    const got = await resolver.resolveTxt('multi.example.com');
    expect(got).toHaveLength(3);
    expect(got).toEqual(expect.arrayContaining(['v=spf1 -all', long, '']));
  });

  it('matches names case-insensitively, with or without a trailing dot', async () => {
    server.setTxt('Mixed.Example.COM.', ['hello']);
    expect(await resolver.resolveTxt('mixed.example.com')).toEqual(['hello']);
    expect(await resolver.resolveTxt('MIXED.EXAMPLE.com')).toEqual(['hello']);
  });

  it('returns [] for an unknown name (NXDOMAIN)', async () => {
    expect(await resolver.resolveTxt('nobody.example.com')).toEqual([]);
  });

  it('returns [] for a known name without TXT records (NOERROR, no data)', async () => {
    server.setTxt('empty.example.com', []);
    expect(await resolver.resolveTxt('empty.example.com')).toEqual([]);
  });

  it('clear() removes a name, and clear() without a name removes all', async () => {
    server.setTxt('a.example.com', ['one']);
    server.setTxt('b.example.com', ['two']);
    expect(await resolver.resolveTxt('a.example.com')).toEqual(['one']);

    server.clear('A.example.com');
    expect(await resolver.resolveTxt('a.example.com')).toEqual([]);
    expect(await resolver.resolveTxt('b.example.com')).toEqual(['two']);

    server.clear();
    expect(await resolver.resolveTxt('b.example.com')).toEqual([]);
  });

  it('answers A/AAAA with no data for a known name and NXDOMAIN for an unknown one', async () => {
    const raw = new Resolver({ timeout: 1000, tries: 1 });
    raw.setServers([server.address]);
    server.setTxt('known.example.com', ['x']);
    await expect(raw.resolve4('known.example.com')).rejects.toMatchObject({ code: 'ENODATA' });
    await expect(raw.resolve6('known.example.com')).rejects.toMatchObject({ code: 'ENODATA' });
    await expect(raw.resolve4('unknown.example.com')).rejects.toMatchObject({ code: 'ENOTFOUND' });
  });

  it('throws DnsLookupError quickly when nothing listens on the server port', async () => {
    const dead = createDnsResolver({ servers: [`127.0.0.1:${await closedPort()}`], timeoutMs: 300 });
    const started = Date.now();
    const err = await failure(dead.resolveTxt('example.com'));
    expect(err).toBeInstanceOf(DnsLookupError);
    // Loopback usually reports the closed port at once (ICMP unreachable); a timeout is also a failure.
    expect((err as DnsLookupError).code).toMatch(/^E(TIMEOUT|CONNREFUSED)$/);
    expect((err as DnsLookupError).message).toContain('example.com');
    expect(Date.now() - started).toBeLessThan(3000);
  });

  it('throws DnsLookupError with ETIMEOUT when the server never answers', async () => {
    const silent = createSocket('udp4');
    await new Promise<void>((resolve) => silent.bind(0, '127.0.0.1', resolve));
    try {
      const mute = createDnsResolver({ servers: [`127.0.0.1:${silent.address().port}`], timeoutMs: 300 });
      const started = Date.now();
      const err = await failure(mute.resolveTxt('example.com'));
      expect(err).toBeInstanceOf(DnsLookupError);
      expect((err as DnsLookupError).code).toBe('ETIMEOUT');
      expect((err as DnsLookupError).message).toMatch(/timed out/);
      expect(Date.now() - started).toBeLessThan(3000);
    } finally {
      await new Promise<void>((resolve) => silent.close(resolve));
    }
  });
});
