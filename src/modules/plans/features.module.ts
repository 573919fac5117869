import { defineModule } from '../kernel.js';
import { createFeaturesService, type FeaturesService } from './features.service.js';

declare module '../kernel.js' {
  interface ServiceMap {
    features: FeaturesService;
  }
}

/** The feature registry applied to organizations; its routes are the plans module's. */
export const featuresModule = defineModule({
  name: 'features',
  create: ({ db, audit, hub, services }) =>
    createFeaturesService({ db, audit, organizations: services.organizations, events: hub.events }),
  guards: {
    'credit_settings.change': async (features, ex, _ctx, id, policy) => {
      if (policy.overdraft_enabled === true) await features.require(ex, id, 'allow_overdraft');
    },
  },
});
