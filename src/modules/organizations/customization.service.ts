/**
 * An organization's customization (white-label): display name, logo and colour. It owns no table:
 * they are kept in the organization's `branding`, read and written through the organizations
 * service. Rules: reading takes `organization:read`; changing it takes `organization:update` and
 * the `custom_branding` feature, and is audited; a field left out falls back to the default.
 * Invitation mail and the accept page use it; the dashboard themes itself with it.
 */
import type { Db, Executor } from '../../db/client.js';
import { authorize, type RequestContext } from '../../lib/authz.js';
import type { AuditService } from '../audit/audit.service.js';
import { diff } from '../audit/audit.service.js';
import type { OrganizationsService } from './organizations.service.js';

export interface Customization {
  display_name: string | null;
  logo_url: string | null;
  primary_color: string | null;
}

function customizationOf(branding: Record<string, unknown>): Customization {
  const text = (v: unknown) => (typeof v === 'string' && v ? v : null);
  return {
    display_name: text(branding.display_name),
    logo_url: text(branding.logo_url),
    primary_color: text(branding.primary_color),
  };
}

/** Customization: read and replaced as a whole. */
export function createCustomizationService(deps: {
  db: Db;
  audit: AuditService;
  organizations: OrganizationsService;
  /** Throws 403 feature_not_enabled unless the organization has `custom_branding`. */
  requireFeature: (ex: Executor, organizationId: string) => Promise<void>;
}) {
  const { db, audit, organizations } = deps;

  function view(org: { id: string; name: string; branding: Record<string, unknown> }) {
    const c = customizationOf(org.branding);
    return { organization_id: org.id, name: c.display_name ?? org.name, ...c };
  }

  return {
    async get(ctx: RequestContext, idOrSlug: string) {
      const org = await organizations.load(db, idOrSlug);
      authorize(ctx, ['organization:read'], org.id);
      return view(org);
    },

    /** Replaces the customization: a field left out or null falls back to the default. */
    async put(ctx: RequestContext, idOrSlug: string, input: Partial<Customization>) {
      const found = await organizations.load(db, idOrSlug);
      authorize(ctx, ['organization:update'], found.id);
      await deps.requireFeature(db, found.id);
      return db.transaction().execute(async (tx) => {
        const org = await organizations.load(tx, found.id, { forUpdate: true });
        const before = customizationOf(org.branding);
        const after: Customization = {
          display_name: input.display_name ?? null,
          logo_url: input.logo_url ?? null,
          primary_color: input.primary_color ?? null,
        };
        const branding: Record<string, unknown> = { ...org.branding };
        for (const [k, v] of Object.entries(after)) {
          if (v === null) delete branding[k];
          else branding[k] = v;
        }
        const updated = await organizations.setFields(tx, org.id, { branding });
        const changes = diff(
          before as unknown as Record<string, unknown>,
          after as unknown as Record<string, unknown>,
        );
        if (Object.keys(changes).length)
          await audit.record(tx, ctx, {
            organizationId: org.id,
            action: 'organization.customized',
            targetType: 'organization',
            targetId: org.id,
            changes,
          });
        return view({ id: updated.id, name: updated.name, branding: updated.branding });
      });
    },
  };
}

export type CustomizationService = ReturnType<typeof createCustomizationService>;
