import { describe, expect, it } from 'vitest';
import { orgbase } from './cli.js';

describe('the sign-up and verification settings', () => {
  it.each([
    ['SIGNUP', 'invitation-only'],
    ['REQUIRE_EMAIL_VERIFICATION', 'sometimes'],
  ])(
    '%s=%s stops the service with exit code 2, naming the variable',
    async (variable, value) => {
      const run = orgbase(['serve'], {
        [variable]: value,
        PORT: '0',
        ORGBASE_DATA_DIR: '/nonexistent/never-opened',
      });
      expect(await run.exited).toBe(2);
      expect(run.stderr()).toContain(variable);
      expect(run.stderr()).toContain(value);
    },
    60_000,
  );
});
