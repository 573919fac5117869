import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import type { OperatorService } from './operator.service.js';

/** The operator's own maintenance, for what the CLI cannot do beside a running PGlite server. */
export function operatorRoutes(operator: OperatorService): FastifyPluginAsyncTypebox {
  return async (app) => {
    app.post(
      '/api/operator/admin-token/rotate',
      {
        schema: {
          tags: ['operator'],
          summary:
            'Operator: revoke the stored operator token and return a new one, shown once (409 while ADMIN_TOKEN is set)',
          response: {
            201: Type.Object({
              token: Type.String({ description: 'The new operator token (obo_…); only its SHA-256 is kept' }),
              rotated_at: Type.String({ format: 'date-time' }),
            }),
          },
        },
      },
      async (req, reply) => reply.status(201).send(await operator.rotateToken(req.ctx)),
    );
  };
}
