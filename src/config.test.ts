import { resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from './config.js';

function configError(env: NodeJS.ProcessEnv): ConfigError {
  try {
    loadConfig(env);
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return err as ConfigError;
  }
  throw new Error(`expected loadConfig(${JSON.stringify(env)}) to throw`);
}

describe('loadConfig', () => {
  it('has defaults for everything', () => {
    expect(loadConfig({})).toEqual({
      port: 3000,
      host: '127.0.0.1',
      databaseUrl: undefined,
      dataDir: resolve('./data'),
      adminToken: undefined,
      logLevel: 'info',
      databasePoolSize: 10,
      databasePrepare: true,
      ledgerLanes: 2,
      publicUrl: undefined,
      authSecret: undefined,
      rateLimit: { perIp: 1200, perKey: 6000 },
      smtpUrl: undefined,
      mailFrom: 'Orgbase <no-reply@orgbase.local>',
      dnsServers: [],
    });
  });

  it('treats empty variables as unset', () => {
    expect(
      loadConfig({
        PORT: '',
        HOST: '',
        DATABASE_URL: '',
        ORGBASE_DATA_DIR: '',
        ADMIN_TOKEN: '',
        LOG_LEVEL: '',
        DATABASE_POOL_SIZE: '',
        PUBLIC_URL: '',
      }),
    ).toEqual(loadConfig({}));
  });

  it('reads valid values', () => {
    expect(
      loadConfig({
        PORT: '8080',
        HOST: '0.0.0.0',
        DATABASE_URL: 'postgres://u:p@db:5432/orgbase',
        ORGBASE_DATA_DIR: '/var/lib/orgbase',
        ADMIN_TOKEN: 'a-very-long-operator-token',
        LOG_LEVEL: 'DEBUG',
        DATABASE_POOL_SIZE: '25',
        LEDGER_LANES: '4',
        DATABASE_PREPARE: 'off',
        PUBLIC_URL: 'https://orgbase.example.com',
        AUTH_SECRET: 's'.repeat(32),
        RATE_LIMIT_PER_MINUTE: '60',
        RATE_LIMIT_KEY_PER_MINUTE: '600',
        SMTP_URL: 'smtp://mail.example.com:587',
        MAIL_FROM: 'Acme <hi@acme.test>',
        DNS_SERVERS: '1.1.1.1, 127.0.0.1:5353',
      }),
    ).toEqual({
      port: 8080,
      host: '0.0.0.0',
      databaseUrl: 'postgres://u:p@db:5432/orgbase',
      dataDir: '/var/lib/orgbase',
      adminToken: 'a-very-long-operator-token',
      logLevel: 'debug',
      databasePoolSize: 25,
      databasePrepare: false,
      ledgerLanes: 4,
      publicUrl: 'https://orgbase.example.com',
      authSecret: 's'.repeat(32),
      rateLimit: { perIp: 60, perKey: 600 },
      smtpUrl: 'smtp://mail.example.com:587',
      mailFrom: 'Acme <hi@acme.test>',
      dnsServers: ['1.1.1.1', '127.0.0.1:5353'],
    });
    expect(loadConfig({ DATABASE_URL: 'postgresql://localhost/x' }).databaseUrl).toBe(
      'postgresql://localhost/x',
    );
    expect(loadConfig({ PORT: '0' }).port).toBe(0);
    expect(loadConfig({ PORT: '65535' }).port).toBe(65535);
    expect(loadConfig({ PUBLIC_URL: 'http://localhost:3000' }).publicUrl).toBe('http://localhost:3000');
  });

  it.each([
    [{ AUTH_SECRET: 'short' }, 'AUTH_SECRET'],
    [{ SMTP_URL: 'http://mail' }, 'SMTP_URL'],
    [{ RATE_LIMIT_PER_MINUTE: '0' }, 'RATE_LIMIT_PER_MINUTE'],
    [{ RATE_LIMIT_KEY_PER_MINUTE: 'lots' }, 'RATE_LIMIT_KEY_PER_MINUTE'],
  ])('names %j in its error', (env, variable) => {
    expect(() => loadConfig(env)).toThrow(expect.objectContaining({ variable }));
  });

  it.each([
    ['PORT', 'abc'],
    ['PORT', '70000'],
    ['PORT', '65536'],
    ['PORT', '-1'],
    ['PORT', '80.5'],
    ['PORT', ' 80'],
    ['LOG_LEVEL', 'loud'],
    ['DATABASE_URL', 'mysql://x'],
    ['DATABASE_URL', 'not a url'],
    ['ADMIN_TOKEN', 'short'],
    ['ADMIN_TOKEN', 'sixteen chars with spaces'],
    ['PUBLIC_URL', 'nope'],
    ['PUBLIC_URL', 'ftp://example.com'],
    ['DATABASE_POOL_SIZE', '0'],
    ['DATABASE_POOL_SIZE', 'many'],
    ['LEDGER_LANES', '0'],
    ['LEDGER_LANES', '65'],
    ['DATABASE_PREPARE', 'maybe'],
    ['HOST', 'bad host'],
    ['DNS_SERVERS', 'dns.example.com'],
    ['DNS_SERVERS', '1.1.1.1;8.8.8.8'],
  ])('%s=%j throws a ConfigError naming the variable', (variable, value) => {
    const err = configError({ [variable]: value });
    expect(err.variable).toBe(variable);
    expect(err.name).toBe('ConfigError');
    expect(err.message).toContain(variable);
  });

  it('does not echo a rejected ADMIN_TOKEN in the message', () => {
    const err = configError({ ADMIN_TOKEN: 'short' });
    expect(err.message).not.toContain('short');
  });
});
