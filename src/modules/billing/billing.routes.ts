import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { OrganizationParams } from '../organizations/organizations.schema.js';
import {
  AnalyticsQuery,
  AnalyticsResponse,
  BillingQuery,
  BillingResponse,
  PlatformSummaryQuery,
  PlatformSummaryResponse,
  SummaryQuery,
  SummaryResponse,
} from './billing.schema.js';
import type { BillingService } from './billing.service.js';

const tags = ['billing'];

export const billingRoutes =
  (billing: BillingService): FastifyPluginAsyncTypebox =>
  async (app) => {
    app.get(
      '/api/organizations/:id/billing-summary',
      {
        schema: {
          tags,
          summary: 'Monthly revenue, cost and token totals (default: the last 12 months)',
          params: OrganizationParams,
          querystring: SummaryQuery,
          response: { 200: SummaryResponse },
        },
      },
      async (req) => billing.summary(req.ctx, req.params.id, req.query),
    );
    app.get(
      '/api/organizations/:id/billing',
      {
        schema: {
          tags,
          summary: 'Per-agent billing records of a month (default: this month), pro-rated by days assigned',
          params: OrganizationParams,
          querystring: BillingQuery,
          response: { 200: BillingResponse },
        },
      },
      async (req) => billing.billing(req.ctx, req.params.id, req.query),
    );
    app.get(
      '/api/billing-summary',
      {
        schema: {
          tags,
          summary: 'Operator: the whole platform’s month, per currency',
          querystring: PlatformSummaryQuery,
          response: { 200: PlatformSummaryResponse },
        },
      },
      async (req) => billing.platformSummary(req.ctx, req.query),
    );
    app.get(
      '/api/organizations/:id/analytics',
      {
        schema: {
          tags,
          summary: 'Usage per day over a range, and the top agents by credits',
          params: OrganizationParams,
          querystring: AnalyticsQuery,
          response: { 200: AnalyticsResponse },
        },
      },
      async (req) => billing.analytics(req.ctx, req.params.id, req.query),
    );
  };
