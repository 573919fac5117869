import type { FastifyInstance } from 'fastify';
import { sendProblem } from './http.js';
import { AppError } from './problem.js';

/**
 * Graceful shutdown's state, in two steps the server takes in order:
 * - `begin()`: draining. /readyz answers 503 so load balancers stop sending traffic; requests
 *   still arriving are served, each answered with `Connection: close` so clients move off.
 * - `close()`: closing. The listener is about to close; a request arriving on a connection still
 *   open is refused with a 503 problem (Fastify's own 503 is not problem+json).
 * Requests in flight are counted at the HTTP server, so ones Fastify refuses early count too.
 */
export function createDrain() {
  let draining = false;
  let closing = false;
  let inFlight = 0;

  return {
    get draining() {
      return draining;
    },
    get inFlight() {
      return inFlight;
    },
    begin() {
      draining = true;
    },
    close() {
      draining = true;
      closing = true;
    },
    /** Resolves true once no request is in flight, or false when `ms` pass first. */
    async settled(ms: number): Promise<boolean> {
      const deadline = Date.now() + ms;
      while (inFlight > 0) {
        if (Date.now() >= deadline) return false;
        await new Promise((r) => setTimeout(r, Math.min(20, Math.max(1, deadline - Date.now()))));
      }
      return true;
    },
    install(app: FastifyInstance) {
      app.server.on('request', (_req, res) => {
        inFlight++;
        res.once('close', () => {
          inFlight--;
        });
      });
      app.addHook('onRequest', (req, reply, done) => {
        if (!draining) return done();
        reply.header('connection', 'close');
        if (!closing) return done();
        reply.header('retry-after', '1');
        sendProblem(reply, new AppError('service_unavailable', 'The service is shutting down'), req.id);
      });
    },
  };
}

export type Drain = ReturnType<typeof createDrain>;
