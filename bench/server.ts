import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { orgbase, type Run } from '../test/process/cli.js';

export interface Server {
  base: string;
  pid: number;
  stop(): Promise<void>;
  /** What the server wrote to stderr (warnings and errors at LOG_LEVEL=warn). */
  output(): string;
}

/**
 * The TCP port a process listens on at 127.0.0.1, read from /proc: its socket fds' inodes,
 * looked up among the LISTEN sockets. At LOG_LEVEL=warn the server does not log its address,
 * and PORT=0 lets the kernel pick it.
 */
function listeningPort(pid: number): number | undefined {
  const inodes = new Set<string>();
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    try {
      const m = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`));
      if (m?.[1]) inodes.add(m[1]);
    } catch {
      // the fd closed while we looked
    }
  }
  for (const line of readFileSync(`/proc/${pid}/net/tcp`, 'utf8').split('\n').slice(1)) {
    const f = line.trim().split(/\s+/);
    const [local, , state] = [f[1], f[2], f[3]];
    // 0100007F is 127.0.0.1 (little-endian hex); 0A is LISTEN; field 9 is the inode.
    if (state === '0A' && local?.startsWith('0100007F:') && f[9] && inodes.has(f[9]))
      return Number.parseInt(local.slice(9), 16);
  }
  return undefined;
}

async function waitForPort(run: Run, timeoutMs: number): Promise<number> {
  const pid = run.child.pid;
  if (pid === undefined) throw new Error('the server process did not start');
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (run.child.exitCode !== null)
      throw new Error(`the server exited with ${run.child.exitCode}:\n${run.stderr()}${run.stdout()}`);
    const port = listeningPort(pid);
    if (port !== undefined) return port;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`the server did not listen within ${timeoutMs} ms:\n${run.stderr()}${run.stdout()}`);
}

/** Starts the real server (`node --import tsx src/cli/main.ts serve`) on 127.0.0.1 and a free port. */
export async function startServer(databaseUrl: string, adminToken: string): Promise<Server> {
  const run = orgbase(['serve'], {
    DATABASE_URL: databaseUrl,
    PORT: '0',
    HOST: '127.0.0.1',
    ADMIN_TOKEN: adminToken,
    LOG_LEVEL: 'warn',
  });
  // Should this process die without cleaning up, the server must not outlive it.
  const kill = () => run.child.kill('SIGKILL');
  process.once('exit', kill);
  const stop = async () => {
    process.off('exit', kill);
    if (run.child.exitCode === null && run.child.signalCode === null) {
      run.child.kill('SIGTERM');
      const killer = setTimeout(() => run.child.kill('SIGKILL'), 10_000);
      await run.exited;
      clearTimeout(killer);
    }
  };
  try {
    const port = await waitForPort(run, 60_000);
    const base = `http://127.0.0.1:${port}`;
    for (let i = 0; ; i++) {
      const ready = await fetch(`${base}/readyz`).then(
        (r) => r.ok,
        () => false,
      );
      if (ready) break;
      if (i > 100) throw new Error(`the server at ${base} never became ready`);
      await new Promise((r) => setTimeout(r, 100));
    }
    return { base, pid: run.child.pid as number, stop, output: () => run.stderr() + run.stdout() };
  } catch (err) {
    await stop();
    throw err;
  }
}
