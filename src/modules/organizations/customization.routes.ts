import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import { DisplayName, Nullable } from '../../lib/schema.js';
import type { CustomizationService } from './customization.service.js';
import { OrganizationParams } from './organizations.schema.js';

const CustomizationBody = Type.Object(
  {
    display_name: Type.Optional(Nullable(DisplayName(100))),
    logo_url: Type.Optional(
      Nullable(
        Type.String({
          maxLength: 2000,
          format: 'uri',
          pattern: '^https://',
          'x-message': 'must be an https:// URL',
        }),
      ),
    ),
    primary_color: Type.Optional(
      Nullable(
        Type.String({
          pattern: '^#([0-9a-fA-F]{3}|[0-9a-fA-F]{6})$',
          'x-message': 'must be a hex colour like "#4f46e5"',
        }),
      ),
    ),
  },
  { additionalProperties: false },
);

const CustomizationResponse = Type.Object({
  organization_id: Type.String(),
  name: Type.String({ description: 'What to show: the display name, else the organization name' }),
  display_name: Nullable(Type.String()),
  logo_url: Nullable(Type.String()),
  primary_color: Nullable(Type.String()),
});

export const customizationRoutes =
  (customization: CustomizationService): FastifyPluginAsyncTypebox =>
  async (app) => {
    const tags = ['organizations'];
    app.get(
      '/api/organizations/:id/customization',
      {
        schema: {
          tags,
          summary: 'Name, logo and colour to theme the dashboard and mail with',
          params: OrganizationParams,
          response: { 200: CustomizationResponse },
        },
      },
      async (req) => customization.get(req.ctx, req.params.id),
    );
    app.put(
      '/api/organizations/:id/customization',
      {
        schema: {
          tags,
          summary: 'Set the customization (needs the custom_branding feature); omitted fields are cleared',
          params: OrganizationParams,
          body: CustomizationBody,
          response: { 200: CustomizationResponse },
        },
      },
      async (req) => customization.put(req.ctx, req.params.id, req.body),
    );
  };
