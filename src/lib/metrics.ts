import { createHash, timingSafeEqual } from 'node:crypto';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { Counter, collectDefaultMetrics, Gauge, Histogram, type Metric, Registry } from 'prom-client';
import type { DbHandle } from '../db/client.js';
import { bearerToken, sendProblem } from './http.js';
import { AppError } from './problem.js';

/** What the ledger offers for metrics (its service exposes both). */
export interface LedgerTelemetry {
  stats(): { lanes: { queued: number; running: boolean }[] };
  observe(observer: (batch: { size: number; seconds: number }) => void): void;
}

export interface MetricsDeps {
  db: Pick<DbHandle, 'poolStats'>;
  ledger: LedgerTelemetry;
  /** Requests the HTTP server is handling right now. */
  inFlight: () => number;
  /**
   * Node's process metrics (CPU, memory, event-loop delay, GC). They are process-wide and start
   * observers of their own, so only the server turns them on (tests build many apps in one process).
   */
  processMetrics?: boolean;
}

export type ProcessErrorKind = 'unhandled_rejection' | 'uncaught_exception';

/** Route label of a request no route matched: the raw URL would make one series per URL. */
const UNMATCHED = 'unmatched';

/**
 * One Prometheus registry per app. Labels carry route patterns (`/api/organizations/:id`), methods,
 * statuses, lanes and pool names: nothing of a tenant's, and a bounded set of series.
 */
export function createMetrics(deps: MetricsDeps) {
  const registry = new Registry();
  const registers = [registry];
  const requests = createRequestHistogram();
  registry.registerMetric(requests.metric);
  new Gauge({
    name: 'orgbase_http_requests_in_flight',
    help: 'Requests being handled (this scrape included)',
    registers,
    collect() {
      this.set(deps.inFlight());
    },
  });
  const batchSize = new Histogram({
    name: 'orgbase_ledger_batch_size',
    help: 'Ledger operations per group-committed batch',
    buckets: [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000],
    registers,
  });
  const batchSeconds = new Histogram({
    name: 'orgbase_ledger_batch_duration_seconds',
    help: 'Time to decide and commit one ledger batch',
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
    registers,
  });
  deps.ledger.observe((batch) => {
    batchSize.observe(batch.size);
    batchSeconds.observe(batch.seconds);
  });
  new Gauge({
    name: 'orgbase_ledger_lane_queue_depth',
    help: 'Ledger operations waiting in each commit lane',
    labelNames: ['lane'] as const,
    registers,
    collect() {
      deps.ledger.stats().lanes.forEach((l, i) => {
        this.set({ lane: String(i) }, l.queued);
      });
    },
  });
  new Gauge({
    name: 'orgbase_ledger_lane_busy',
    help: '1 while a lane has a batch in flight',
    labelNames: ['lane'] as const,
    registers,
    collect() {
      deps.ledger.stats().lanes.forEach((l, i) => {
        this.set({ lane: String(i) }, l.running ? 1 : 0);
      });
    },
  });
  const poolGauge = (
    name: string,
    help: string,
    pick: (s: ReturnType<DbHandle['poolStats']>[number]) => number | undefined,
  ) =>
    new Gauge({
      name,
      help,
      labelNames: ['pool'] as const,
      registers,
      collect() {
        for (const s of deps.db.poolStats()) {
          const v = pick(s);
          if (v !== undefined) this.set({ pool: s.pool }, v);
        }
      },
    });
  poolGauge('orgbase_db_pool_max_connections', 'Connections the pool may open', (s) => s.max);
  poolGauge('orgbase_db_pool_connections', 'Connections open (idle or in use)', (s) => s.total);
  poolGauge('orgbase_db_pool_idle_connections', 'Open connections not in use', (s) => s.idle);
  poolGauge('orgbase_db_pool_waiting_clients', 'Queries waiting for a connection', (s) => s.waiting);
  const processErrors = new Counter({
    name: 'orgbase_process_errors_total',
    help: 'Unhandled promise rejections and uncaught exceptions the process logged and survived',
    labelNames: ['kind'] as const,
    registers,
  });
  if (deps.processMetrics) collectDefaultMetrics({ register: registry });

  return {
    registry,
    processError: (kind: ProcessErrorKind) => processErrors.inc({ kind }),
    /** Times every response by its route pattern (a root hook, so every route has it). */
    install(app: FastifyInstance) {
      app.addHook('onResponse', (req, reply, done) => {
        requests.observe(
          req.method,
          req.routeOptions.url ?? UNMATCHED,
          reply.statusCode,
          reply.elapsedTime / 1000,
        );
        done();
      });
    },
  };
}

export type Metrics = ReturnType<typeof createMetrics>;

const REQUEST_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

/**
 * The request histogram, kept by hand: prom-client's Histogram validates and hashes the labels of
 * every observation (~2 µs each, measured), and this runs on every request. Here a request finds
 * its series by one string and bumps one bucket; the cumulative buckets are computed at scrape.
 */
function createRequestHistogram() {
  const name = 'orgbase_http_request_duration_seconds';
  interface Series {
    labels: { method: string; route: string; status: string };
    buckets: number[];
    sum: number;
    count: number;
  }
  const series = new Map<string, Series>();
  function observe(method: string, route: string, status: number, seconds: number) {
    const key = `${method} ${status} ${route}`;
    let s = series.get(key);
    if (s === undefined) {
      s = {
        labels: { method, route, status: String(status) },
        buckets: new Array<number>(REQUEST_BUCKETS.length).fill(0),
        sum: 0,
        count: 0,
      };
      series.set(key, s);
    }
    let i = 0;
    while (i < REQUEST_BUCKETS.length && seconds > (REQUEST_BUCKETS[i] as number)) i++;
    if (i < REQUEST_BUCKETS.length) s.buckets[i] = (s.buckets[i] as number) + 1;
    s.sum += seconds;
    s.count++;
  }
  const metric = {
    name,
    help: 'HTTP request latency by route pattern, method and status; its _count is the requests served',
    type: 'histogram',
    aggregator: 'sum',
    get: async () => ({
      name,
      help: metric.help,
      type: 'histogram',
      aggregator: 'sum',
      values: [...series.values()].flatMap((s) => {
        let cumulative = 0;
        return [
          ...REQUEST_BUCKETS.map((le, i) => {
            cumulative += s.buckets[i] as number;
            return { metricName: `${name}_bucket`, labels: { ...s.labels, le }, value: cumulative };
          }),
          { metricName: `${name}_bucket`, labels: { ...s.labels, le: '+Inf' }, value: s.count },
          { metricName: `${name}_sum`, labels: s.labels, value: s.sum },
          { metricName: `${name}_count`, labels: s.labels, value: s.count },
        ];
      }),
    }),
  };
  // The registry reads a metric only through name, type and get(): what this object offers.
  return { observe, metric: metric as unknown as Metric };
}

const sha256 = (s: string) => createHash('sha256').update(s).digest();

/**
 * GET /metrics, for the operator's token or METRICS_TOKEN (a scraper's token that reads nothing
 * else). Outside /api: no organization's data is in it.
 */
export function metricsRoute(
  metrics: Metrics,
  opts: { metricsToken: string | undefined; isOperator: (token: string) => Promise<boolean> },
) {
  const expected = opts.metricsToken === undefined ? undefined : sha256(opts.metricsToken);
  return async (app: FastifyInstance) => {
    app.get(
      '/metrics',
      {
        schema: {
          tags: ['health'],
          summary: 'Prometheus metrics (operator token or METRICS_TOKEN)',
          produces: ['text/plain'],
        },
      },
      async (req: FastifyRequest, reply: FastifyReply) => {
        const token = bearerToken(req.headers);
        const allowed =
          token !== undefined &&
          ((expected !== undefined && timingSafeEqual(sha256(token), expected)) ||
            (await opts.isOperator(token)));
        if (!allowed) {
          reply.header('www-authenticate', 'Bearer');
          return sendProblem(
            reply,
            new AppError(
              'unauthenticated',
              token ? 'The bearer token may not read metrics' : 'Send Authorization: Bearer <token>',
            ),
            req.id,
          );
        }
        const text = await metrics.registry.metrics();
        return reply.type(metrics.registry.contentType).send(text);
      },
    );
  };
}
