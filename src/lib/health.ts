import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { sql } from 'kysely';
import { Type } from 'typebox';
import type { DbHandle } from '../db/client.js';
import type { Drain } from './drain.js';
import { sendProblem } from './http.js';
import { AppError } from './problem.js';

/** `/healthz` (the process is up) and `/readyz` (it can serve: the database answers, not draining). */
export const healthRoutes =
  (db: DbHandle, drain: Drain): FastifyPluginAsyncTypebox =>
  async (app) => {
    app.get(
      '/healthz',
      {
        schema: {
          tags: ['health'],
          summary: 'The process is up',
          security: [],
          response: { 200: Type.Object({ status: Type.Literal('ok') }) },
        },
      },
      async () => ({ status: 'ok' as const }),
    );
    app.get(
      '/readyz',
      {
        schema: {
          tags: ['health'],
          summary: 'The database answers and the process is not shutting down (503 once it is)',
          security: [],
          response: { 200: Type.Object({ status: Type.Literal('ready'), database: Type.String() }) },
        },
      },
      async (req, reply) => {
        // Expected while shutting down: answered, not logged as a failure.
        if (drain.draining)
          return sendProblem(
            reply,
            new AppError('service_unavailable', 'The service is shutting down'),
            req.id,
          );
        try {
          await sql`select 1`.execute(db.db);
        } catch {
          throw new AppError('service_unavailable', 'The database does not answer');
        }
        return { status: 'ready' as const, database: db.kind };
      },
    );
  };
