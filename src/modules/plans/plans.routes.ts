import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { OrganizationParams } from '../organizations/organizations.schema.js';
import type { FeaturesService } from './features.service.js';
import {
  ChangePlanBody,
  FeaturesResponse,
  PlansResponse,
  SetFeaturesBody,
  SubscriptionResponse,
} from './plans.schema.js';
import type { PlansService } from './plans.service.js';

export const plansRoutes =
  (plans: PlansService, features: FeaturesService): FastifyPluginAsyncTypebox =>
  async (app) => {
    const tags = ['plans'];
    app.get(
      '/api/plans',
      {
        schema: {
          tags,
          summary: 'The plans (price, limits, features) and the feature registry',
          response: { 200: PlansResponse },
        },
      },
      async () => plans.plans(),
    );
    app.get(
      '/api/organizations/:id/subscription',
      {
        schema: {
          tags,
          summary: 'The subscription: plan, billing cycle, status, period, and usage against each limit',
          params: OrganizationParams,
          response: { 200: SubscriptionResponse },
        },
      },
      async (req) => plans.get(req.ctx, req.params.id),
    );
    app.put(
      '/api/organizations/:id/subscription',
      {
        schema: {
          tags,
          summary: 'Upgrade or downgrade (409 plan_downgrade_blocked while usage exceeds the lower plan)',
          params: OrganizationParams,
          body: ChangePlanBody,
          response: { 200: SubscriptionResponse },
        },
      },
      async (req) => plans.change(req.ctx, req.params.id, req.body),
    );
    app.post(
      '/api/organizations/:id/subscription/cancel',
      {
        schema: {
          tags,
          summary: 'Cancel at the end of the current period (then Free)',
          params: OrganizationParams,
          response: { 200: SubscriptionResponse },
        },
      },
      async (req) => plans.cancel(req.ctx, req.params.id),
    );
    app.post(
      '/api/organizations/:id/subscription/reactivate',
      {
        schema: {
          tags,
          summary: 'Undo a cancellation before the period ends',
          params: OrganizationParams,
          response: { 200: SubscriptionResponse },
        },
      },
      async (req) => plans.reactivate(req.ctx, req.params.id),
    );
    app.get(
      '/api/organizations/:id/features',
      {
        schema: {
          tags: ['features'],
          summary:
            'Effective features: the plan’s, and for a sub-organization only what its parent granted and has',
          params: OrganizationParams,
          response: { 200: FeaturesResponse },
        },
      },
      async (req) => features.get(req.ctx, req.params.id),
    );
    app.put(
      '/api/organizations/:id/features',
      {
        schema: {
          tags: ['features'],
          summary:
            'Set what a sub-organization is granted (its parent’s owners and admins; only features the parent has). Revoking cascades down.',
          params: OrganizationParams,
          body: SetFeaturesBody,
          response: { 200: FeaturesResponse },
        },
      },
      async (req) => features.set(req.ctx, req.params.id, req.body.features),
    );
  };
