import { defineModule } from '../kernel.js';
import { customizationRoutes } from './customization.routes.js';
import { type CustomizationService, createCustomizationService } from './customization.service.js';

declare module '../kernel.js' {
  interface ServiceMap {
    customization: CustomizationService;
  }
}

export const customizationModule = defineModule({
  name: 'customization',
  create: ({ db, audit, services }) =>
    createCustomizationService({
      db,
      audit,
      organizations: services.organizations,
      requireFeature: (ex, id) => services.features.require(ex, id, 'custom_branding'),
    }),
  routes: (customization) => customizationRoutes(customization),
});
