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
      shutdownDrainMs: 10_000,
      metricsToken: undefined,
      otelEndpoint: undefined,
      planChanges: 'operator',
      requireEmailVerification: false,
      signUp: 'open',
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
        SHUTDOWN_DRAIN_MS: '2500',
        METRICS_TOKEN: 'a-scraper-token-of-24ch',
        OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4318',
        PLAN_CHANGES: 'owners',
        REQUIRE_EMAIL_VERIFICATION: 'true',
        SIGNUP: 'Invite-Only',
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
      shutdownDrainMs: 2500,
      metricsToken: 'a-scraper-token-of-24ch',
      otelEndpoint: 'http://collector:4318',
      planChanges: 'owners',
      requireEmailVerification: true,
      signUp: 'invite-only',
    });
    expect(loadConfig({ SIGNUP: 'closed', REQUIRE_EMAIL_VERIFICATION: 'false' })).toMatchObject({
      signUp: 'closed',
      requireEmailVerification: false,
    });
    expect(loadConfig({ SHUTDOWN_DRAIN_MS: '0' }).shutdownDrainMs).toBe(0);
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
    ['REQUIRE_EMAIL_VERIFICATION', 'sometimes'],
    ['SIGNUP', 'invite'],
    ['SIGNUP', 'nobody'],
    ['HOST', 'bad host'],
    ['DNS_SERVERS', 'dns.example.com'],
    ['DNS_SERVERS', '1.1.1.1;8.8.8.8'],
    ['SHUTDOWN_DRAIN_MS', 'soon'],
    ['SHUTDOWN_DRAIN_MS', '600001'],
    ['SHUTDOWN_DRAIN_MS', '-5'],
    ['METRICS_TOKEN', 'short'],
    ['METRICS_TOKEN', 'sixteen chars with spaces'],
    ['OTEL_EXPORTER_OTLP_ENDPOINT', 'collector:4318'],
    ['OTEL_EXPORTER_OTLP_ENDPOINT', 'grpc://collector:4317'],
    ['PLAN_CHANGES', 'admins'],
  ])('%s=%j throws a ConfigError naming the variable', (variable, value) => {
    const err = configError({ [variable]: value });
    expect(err.variable).toBe(variable);
    expect(err.name).toBe('ConfigError');
    expect(err.message).toContain(variable);
  });

  it('does not echo a rejected ADMIN_TOKEN or METRICS_TOKEN in the message', () => {
    expect(configError({ ADMIN_TOKEN: 'short' }).message).not.toContain('short');
    expect(configError({ METRICS_TOKEN: 'tiny-secret' }).message).not.toContain('tiny-secret');
  });
});
