import { type ChildProcess, spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));

export interface Run {
  child: ChildProcess;
  stdout: () => string;
  stderr: () => string;
  exited: Promise<number | null>;
}

/** The young generation `npm start` and the `orgbase` command give V8 (see the README). */
const SEMI_SPACE = '--max-semi-space-size=32';

/** Runs the real CLI (`orgbase …`) from source in a child process, with the flags it ships with. */
export function orgbase(args: string[], env: Record<string, string | undefined>): Run {
  const child = spawn(process.execPath, [SEMI_SPACE, '--import', 'tsx', 'src/cli/main.ts', ...args], {
    cwd: ROOT,
    env: { PATH: process.env.PATH, HOME: process.env.HOME, LOG_LEVEL: 'info', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  child.stdout?.on('data', (d) => {
    out += d;
  });
  child.stderr?.on('data', (d) => {
    err += d;
  });
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  return { child, stdout: () => out, stderr: () => err, exited };
}

/** Resolves with the base URL once the server logs that it listens; rejects if it exits first. */
export async function listening(run: Run, timeoutMs = 45_000): Promise<string> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const m = /Server listening at (http:\/\/127\.0\.0\.1:\d+)/.exec(run.stdout());
    if (m?.[1]) return m[1];
    if (run.child.exitCode !== null) throw new Error(`server exited ${run.child.exitCode}: ${run.stderr()}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`server did not start: ${run.stdout()} ${run.stderr()}`);
}
