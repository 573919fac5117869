import { defineModule } from '../kernel.js';
import { meRoutes } from './me.routes.js';
import { createMeService, type MeService } from './me.service.js';

declare module '../kernel.js' {
  interface ServiceMap {
    me: MeService;
  }
}

export const meModule = defineModule({
  name: 'me',
  create: ({ db, services }) => createMeService({ db, organizations: services.organizations }),
  routes: (me, { services }) => meRoutes(me, services.organizations, services.ledger),
});
