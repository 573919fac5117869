import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import type { MailService } from './mail.service.js';

export const mailRoutes =
  (mail: MailService): FastifyPluginAsyncTypebox =>
  async (app) => {
    app.get(
      '/api/dev/mailbox',
      {
        schema: {
          tags: ['operator'],
          summary: 'Operator: the local mailbox (mail kept when SMTP_URL is unset), newest first',
        },
      },
      async (req) => mail.listMailbox(req.ctx),
    );
  };
