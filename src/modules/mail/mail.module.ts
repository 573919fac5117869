import { defineModule } from '../kernel.js';
import { mailRoutes } from './mail.routes.js';
import { createMailService, type MailService } from './mail.service.js';

declare module '../kernel.js' {
  interface ServiceMap {
    mail: MailService;
  }
}

export const mailModule = defineModule({
  name: 'mail',
  create: ({ db, deps }) =>
    createMailService({
      db,
      smtpUrl: deps.smtpUrl,
      from: deps.mailFrom ?? 'Orgbase <no-reply@orgbase.local>',
    }),
  routes: (mail) => mailRoutes(mail),
  start: async (mail) => () => mail.close(),
});
