import { defineModule } from '../kernel.js';
import { operatorRoutes } from './operator.routes.js';
import { createOperatorService, type OperatorService } from './operator.service.js';

declare module '../kernel.js' {
  interface ServiceMap {
    operator: OperatorService;
  }
}

export const operatorModule = defineModule({
  name: 'operator',
  create: (k) => createOperatorService({ db: k.db, adminToken: k.deps.adminToken }),
  routes: (operator) => operatorRoutes(operator),
});
