import { performance } from 'node:perf_hooks';

/**
 * One unit of load: sends one request (or runs one transaction) and resolves with how many
 * operations it carried were accepted. It throws when the outcome is unknown or failed.
 */
export type Op = () => Promise<number>;

export interface RunResult {
  /** Operations accepted per second, counting completions inside the measured window only. */
  opsPerSec: number;
  /** Requests per second offered (open loop) or achieved (closed loop). */
  requestsPerSec: number;
  /** Request latency percentiles in milliseconds; open loop measures from the scheduled start. */
  p50: number;
  p99: number;
  max: number;
  requests: number;
  accepted: number;
  errors: number;
  /** Open loop only: arrivals shed, never sent, while more than a second of them were queued. */
  dropped: number;
  firstError: string | undefined;
}

function percentile(sorted: Float64Array, p: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] as number;
}

class Recorder {
  private latencies = new Float64Array(1 << 16);
  private n = 0;
  requests = 0;
  accepted = 0;
  acceptedInWindow = 0;
  requestsInWindow = 0;
  errors = 0;
  firstError: string | undefined;

  constructor(
    private readonly windowStart: number,
    private readonly windowEnd: number,
  ) {}

  ok(latency: number, accepted: number, now: number) {
    this.add(latency);
    this.requests++;
    this.accepted += accepted;
    if (now >= this.windowStart && now <= this.windowEnd) {
      this.acceptedInWindow += accepted;
      this.requestsInWindow++;
    }
  }

  fail(latency: number, err: unknown) {
    this.add(latency);
    this.requests++;
    this.errors++;
    this.firstError ??= err instanceof Error ? err.message : String(err);
  }

  private add(latency: number) {
    if (this.n === this.latencies.length) {
      const grown = new Float64Array(this.latencies.length * 2);
      grown.set(this.latencies);
      this.latencies = grown;
    }
    this.latencies[this.n++] = latency;
  }

  result(requestsPerSec: number, dropped: number): RunResult {
    const sorted = this.latencies.slice(0, this.n).sort();
    const seconds = (this.windowEnd - this.windowStart) / 1000;
    return {
      opsPerSec: this.acceptedInWindow / seconds,
      requestsPerSec,
      p50: percentile(sorted, 50),
      p99: percentile(sorted, 99),
      max: sorted.length ? (sorted[sorted.length - 1] as number) : Number.NaN,
      requests: this.requests,
      accepted: this.accepted,
      errors: this.errors,
      dropped,
      firstError: this.firstError,
    };
  }
}

/**
 * Closed loop: `concurrency` workers each send the next request as soon as the previous one
 * answers, for `warmupMs + durationMs`; only the last `durationMs` count. This saturates the
 * system at that concurrency, which is how the peak is found.
 */
export async function closedLoop(op: Op, concurrency: number, durationMs: number, warmupMs: number) {
  const t0 = performance.now();
  const rec = new Recorder(t0 + warmupMs, t0 + warmupMs + durationMs);
  const end = t0 + warmupMs + durationMs;
  const worker = async () => {
    while (performance.now() < end) {
      const start = performance.now();
      try {
        const accepted = await op();
        const now = performance.now();
        rec.ok(now - start, accepted, now);
      } catch (err) {
        rec.fail(performance.now() - start, err);
      }
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  return rec.result(rec.requestsInWindow / (durationMs / 1000), 0);
}

/**
 * Open loop: request i is due at t0 + i/rate whatever the answers do, and at most `concurrency`
 * are in flight (one per socket or connection); a due request waits for a free one. Latency is
 * measured from the time it was due, so queueing in front of a slow server counts (no
 * coordinated omission). Runs `durationMs` of arrivals, then waits for the last answers.
 */
export async function openLoop(op: Op, rate: number, concurrency: number, durationMs: number) {
  const total = Math.max(1, Math.floor((rate * durationMs) / 1000));
  const interval = 1000 / rate;
  // The client-side queue holds at most a second of arrivals; past that the server is not
  // keeping up, and further arrivals are shed (never sent, so the ledger is unaffected) while
  // the server stays saturated for the rest of the window.
  const maxBacklog = Math.max(concurrency, Math.ceil(rate));
  const t0 = performance.now();
  const rec = new Recorder(t0, t0 + durationMs);
  let next = 0; // the next arrival to send or shed
  let finished = 0;
  let inFlight = 0;
  let dropped = 0;
  let resolved = false;

  return new Promise<RunResult>((resolve) => {
    const settle = () => {
      inFlight--;
      finished++;
      pump();
    };

    const launch = (i: number) => {
      const due = t0 + i * interval;
      inFlight++;
      op().then(
        (accepted) => {
          const now = performance.now();
          rec.ok(now - due, accepted, now);
          settle();
        },
        (err: unknown) => {
          rec.fail(performance.now() - due, err);
          settle();
        },
      );
    };

    const pump = () => {
      const dueCount = Math.min(total, Math.floor((performance.now() - t0) / interval) + 1);
      while (dueCount - next > maxBacklog) {
        next++;
        dropped++;
      }
      while (inFlight < concurrency && next < dueCount) launch(next++);
      if (!resolved && finished + dropped === total) {
        resolved = true;
        resolve(rec.result(rate, dropped));
      }
    };

    const tick = () => {
      pump();
      if (next < total) setTimeout(tick, 1);
    };
    tick();
  });
}
