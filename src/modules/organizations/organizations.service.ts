/**
 * The organizations module owns `organizations` (and its rate history): creation with unique
 * slugs, reads, updates, activation, deletion and export. It publishes organization.* events in
 * the changing transaction; what other modules refuse (guards) or add to its views comes from
 * their module declarations, through the hub.
 */
import type { Static } from 'typebox';
import type { Db, DbHandle, Executor, Tx } from '../../db/client.js';
import { authorize, can, NO_SUCH_ORGANIZATION, type RequestContext } from '../../lib/authz.js';
import { ID_PATTERN, newId } from '../../lib/ids.js';
import { formatMoney, nonNegativeAmount } from '../../lib/money.js';
import { DEFAULT_LIMIT, decodeCursor, type Page, toPage } from '../../lib/pagination.js';
import { AppError } from '../../lib/problem.js';
import { slugCandidate, slugify } from '../../lib/slug.js';
import { type AuditEventView, type AuditService, diff } from '../audit/audit.service.js';
import { type Hub, runGuards } from '../kernel.js';
import { createLiveness } from './organizations.liveness.js';
import * as repo from './organizations.repo.js';
import type {
  CreateOrganizationBody,
  ListOrganizationsQuery,
  OrganizationDetailResponse,
  OrganizationListItemResponse,
  OrganizationResponse,
  UpdateOrganizationBody,
} from './organizations.schema.js';

export type OrganizationView = Static<typeof OrganizationResponse>;
export type OrganizationDetail = Static<typeof OrganizationDetailResponse>;
type OrganizationListItem = Static<typeof OrganizationListItemResponse>;
type CreateInput = Static<typeof CreateOrganizationBody>;
type UpdateInput = Static<typeof UpdateOrganizationBody>;

export const DEFAULT_ORGANIZATION_SLUG = 'internal';

/** The organizations an actor may list: undefined means all of them (the operator). */
function visibleIds(ctx: RequestContext): string[] | undefined {
  switch (ctx.actor.type) {
    case 'operator':
      return undefined;
    case 'user':
      return [...ctx.actor.roles.keys()];
    case 'api_key':
      return [ctx.actor.organizationId];
  }
}
const SLUG_ATTEMPTS = 8;

export function toView(row: repo.OrganizationRow): OrganizationView {
  return {
    id: row.id,
    name: row.name,
    slug: row.slug,
    description: row.description,
    contact_name: row.contact_name,
    contact_email: row.contact_email,
    billing_rate_per_agent: formatMoney(row.billing_rate_per_agent),
    currency: row.currency,
    active: row.active,
    plan: row.plan,
    parent_id: row.parent_id,
    branding: row.branding,
    is_default: row.is_default,
    created_at: row.created_at.toISOString(),
    updated_at: row.updated_at.toISOString(),
  };
}

function parseRate(input: string | number | undefined): bigint | undefined {
  return input === undefined ? undefined : nonNegativeAmount('billing_rate_per_agent', input);
}

function isUniqueViolation(err: unknown): boolean {
  return typeof err === 'object' && err !== null && (err as { code?: unknown }).code === '23505';
}

/** The smallest free `base`, `base-2`, `base-3`, ... given the live slugs of that family. */
function freeSlug(base: string, taken: Set<string>): string {
  for (let n = 1; ; n++) {
    const candidate = slugCandidate(base, n);
    if (!taken.has(candidate)) return candidate;
  }
}

/**
 * Invariants: a live slug is unique; the default organization always exists; every change is
 * audited and published in the transaction that makes it.
 */
export function createOrganizationsService(deps: {
  db: Db;
  audit: AuditService;
  hub: Pick<Hub, 'events' | 'guards' | 'views'>;
  listen?: DbHandle['listen'] | undefined;
}) {
  const { db, audit, hub } = deps;
  const liveness = createLiveness(deps.listen);

  /** Finds an organization by id or slug; 404 when missing. */
  async function load(
    ex: Executor,
    idOrSlug: string,
    opts: { forUpdate?: boolean; includeDeleted?: boolean } = {},
  ): Promise<repo.OrganizationRow> {
    const key = ID_PATTERN.test(idOrSlug) ? { id: idOrSlug } : { slug: idOrSlug };
    const row = await repo.findOrganization(ex, key, opts);
    if (!row) throw new AppError('not_found', NO_SUCH_ORGANIZATION);
    return row;
  }

  async function insertWithGeneratedSlug(tx: Tx, row: Omit<repo.NewOrganizationRow, 'slug'>) {
    const base = slugify(row.name) || 'org';
    for (let attempt = 0; attempt < SLUG_ATTEMPTS; attempt++) {
      const slug = freeSlug(base, new Set(await repo.findSlugFamily(tx, base)));
      const inserted = await repo.insertOrganization(tx, { ...row, slug });
      if (inserted) return inserted;
      // Another request took that slug between our read and our insert: look again.
    }
    throw new AppError('slug_taken', 'Could not find a free slug; pass one explicitly');
  }

  async function mutate(
    ctx: RequestContext,
    idOrSlug: string,
    permission: 'organization:update' | 'organization:toggle',
    change: (tx: Tx, row: repo.OrganizationRow) => Promise<{ row: repo.OrganizationRow; action?: string }>,
  ): Promise<OrganizationView> {
    const view = await db.transaction().execute(async (tx) => {
      const current = await load(tx, idOrSlug, { forUpdate: true });
      authorize(ctx, [permission], current.id);
      const { row, action } = await change(tx, current);
      if (row.active !== current.active) await liveness.announce(tx, row.id);
      if (action) {
        const changes = diff(toView(current), toView(row));
        delete changes.updated_at;
        await audit.record(tx, ctx, {
          organizationId: row.id,
          action,
          targetType: 'organization',
          targetId: row.id,
          changes,
        });
        await hub.events.publish(
          tx,
          row.active !== current.active
            ? { type: 'organization.toggled', organization_id: row.id, active: row.active }
            : { type: 'organization.updated', organization_id: row.id, fields: Object.keys(changes) },
          ctx,
        );
      }
      return toView(row);
    });
    // Committed: this process must not wait for its own NOTIFY.
    liveness.forget(view.id);
    return view;
  }

  return {
    load,

    /** Starts hearing other processes' changes of liveness (activation, deletion). */
    start: liveness.start,

    /** Which of `ids` are live organizations, and whether each is active (for the ledger's hot path). */
    liveStates: liveness.states,

    /**
     * Creates an organization. `within` makes it a sub-organization (the caller checked the
     * parent's rules) and runs `inTransaction` in the creating transaction, after organization.created is handled.
     */
    async create(
      ctx: RequestContext,
      input: CreateInput,
      within?: {
        parentId: string;
        plan: string;
        /** Run in the creating transaction before the organization is written. */
        beforeInsert: (tx: Tx) => Promise<void>;
        inTransaction: (tx: Tx, created: OrganizationView) => Promise<void>;
      },
    ): Promise<OrganizationView> {
      if (!within) authorize(ctx, ['organization:create'], null);
      const row = {
        id: newId('org'),
        name: input.name,
        description: input.description ?? null,
        contact_name: input.contact_name ?? null,
        contact_email: input.contact_email ?? null,
        billing_rate_per_agent: parseRate(input.billing_rate_per_agent) ?? 0n,
        currency: input.currency ?? 'USD',
        parent_id: within?.parentId ?? null,
        ...(within ? { plan: within.plan } : {}),
      };
      return db.transaction().execute(async (tx) => {
        if (within) await within.beforeInsert(tx);
        else await runGuards(hub, 'organization.create', tx, ctx);
        let created: repo.OrganizationRow | undefined;
        if (input.slug !== undefined) {
          created = await repo.insertOrganization(tx, { ...row, slug: input.slug });
          if (!created)
            throw new AppError('slug_taken', `The slug "${input.slug}" is taken`, {
              errors: [{ field: 'slug', message: 'is already taken' }],
            });
        } else {
          created = await insertWithGeneratedSlug(tx, row);
        }
        await hub.events.publish(
          tx,
          { type: 'organization.created', organization_id: created.id, parent_id: created.parent_id },
          ctx,
        );
        const view = toView(created);
        const changes = diff({} as Record<string, unknown>, view);
        await audit.record(tx, ctx, {
          organizationId: created.id,
          action: 'organization.created',
          targetType: 'organization',
          targetId: created.id,
          changes,
        });
        if (within) await within.inTransaction(tx, view);
        return view;
      });
    },

    /** A page of an organization's direct children (no permission check: the caller made one). */
    childrenPage: (ex: Executor, parentId: string, opts: { beforeId: string | undefined; limit: number }) =>
      repo.findChildren(ex, parentId, opts),

    summaries: (ex: Executor, ids: string[]) => repo.findSummaries(ex, ids),

    countChildren: (ex: Executor, id: string) => repo.countSubOrganizations(ex, id),

    /** billing_rate_per_agent over time , for billing past months at their rates. */
    rateHistories: (ex: Executor, ids: string[]) => repo.findRateHistories(ex, ids),

    /** Every organization's rate history (platform-wide reports). */
    allRateHistories: (ex: Executor) => repo.findRateHistories(ex, undefined),

    /** Every live organization below these (not themselves), nearest first. */
    descendantsOf: (ex: Executor, ids: string[]) => repo.findDescendants(ex, ids),

    /** The organization, then its parent, up to its top-level organization. */
    ancestryOf: (ex: Executor, id: string) => repo.findAncestry(ex, id),

    /** The id of the organization's top-level organization (its own when it has no parent). */
    async rootOf(ex: Executor, id: string): Promise<string> {
      const chain = await repo.findAncestry(ex, id);
      return chain.at(-1)?.id ?? id;
    },

    /** The live organizations among `ids` (name, slug, active, parent), by id. */
    liveSummaries: (ex: Executor, ids: string[]) => repo.findLiveSummaries(ex, ids),

    /** The live top-level organizations among `ids`, the default one left out, with their plans. */
    topLevelAmong: (ex: Executor, ids: string[]) => repo.findTopLevelAmong(ex, ids),

    /** Changes plan, parent or branding: the callers (plans, sub-organizations) audit the change. */
    async setFields(
      tx: Tx,
      id: string,
      patch: { plan?: string; parent_id?: string | null; branding?: Record<string, unknown> },
    ): Promise<OrganizationView> {
      const { branding, ...rest } = patch;
      const row = await repo.updateOrganization(tx, id, {
        ...rest,
        ...(branding ? { branding: JSON.stringify(branding) } : {}),
      });
      return toView(row);
    },

    async list(
      ctx: RequestContext,
      query: Static<typeof ListOrganizationsQuery>,
    ): Promise<Page<OrganizationListItem>> {
      // Everyone lists what they can see: no permission beyond that.
      const limit = query.limit ?? DEFAULT_LIMIT;
      const rows = await repo.findOrganizations(db, {
        visibleIds: visibleIds(ctx),
        q: query.q,
        active: query.active,
        beforeId: decodeCursor(query.cursor),
        limit: limit + 1,
      });
      const page = toPage(rows, limit, (r) => r.id, toView);
      const ids = page.data.map((o) => o.id);
      const counts = await Promise.all(hub.views.organizationCounts.map((c) => c(db, ids)));
      return {
        ...page,
        data: page.data.map((o) => ({
          ...o,
          member_count: 0,
          agent_count: 0,
          team_count: 0,
          ...Object.assign({}, ...counts.map((m) => m.get(o.id) ?? {})),
        })),
      };
    },

    async get(ctx: RequestContext, idOrSlug: string): Promise<OrganizationDetail> {
      const row = await load(db, idOrSlug);
      authorize(ctx, ['organization:read'], row.id);
      const extra = await Promise.all(hub.views.organizationDetail.map((d) => d(db, row.id)));
      return {
        ...toView(row),
        ...Object.assign({}, ...extra),
        sub_organization_count: await repo.countSubOrganizations(db, row.id),
      };
    },

    /** Slug changes are the operator's alone (`organization:change_slug`): clients route by slug. */
    update(ctx: RequestContext, idOrSlug: string, input: UpdateInput): Promise<OrganizationView> {
      return mutate(ctx, idOrSlug, 'organization:update', async (tx, current) => {
        const patch: repo.OrganizationPatch = {};
        if (input.name !== undefined) patch.name = input.name;
        if (input.description !== undefined) patch.description = input.description;
        if (input.contact_name !== undefined) patch.contact_name = input.contact_name;
        if (input.contact_email !== undefined) patch.contact_email = input.contact_email;
        if (input.currency !== undefined) patch.currency = input.currency;
        const rate = parseRate(input.billing_rate_per_agent);
        if (rate !== undefined) patch.billing_rate_per_agent = rate;
        if (input.slug !== undefined && input.slug !== current.slug) {
          if (!can(ctx.actor, ['organization:change_slug'], current.id))
            throw new AppError(
              'slug_immutable',
              'Slugs are fixed after creation; ask the platform operator',
              {
                errors: [{ field: 'slug', message: 'cannot be changed' }],
              },
            );
          if (await repo.slugInUse(tx, input.slug, current.id))
            throw new AppError('slug_taken', `The slug "${input.slug}" is taken`, {
              errors: [{ field: 'slug', message: 'is already taken' }],
            });
          patch.slug = input.slug;
        }
        const changed = Object.entries(patch).some(([k, v]) => current[k as keyof typeof current] !== v);
        if (!changed) return { row: current };
        try {
          return {
            row: await repo.updateOrganization(tx, current.id, patch),
            action: 'organization.updated',
          };
        } catch (err) {
          if (isUniqueViolation(err)) throw new AppError('slug_taken', `The slug "${input.slug}" is taken`);
          throw err;
        }
      });
    },

    /** Flips active <-> inactive. An inactive organization's agents are suspended. */
    toggle(ctx: RequestContext, idOrSlug: string): Promise<OrganizationView> {
      return mutate(ctx, idOrSlug, 'organization:toggle', async (tx, current) => {
        const row = await repo.updateOrganization(tx, current.id, { active: !current.active });
        return { row, action: row.active ? 'organization.activated' : 'organization.deactivated' };
      });
    },

    /**
     * Deletes an organization. The row stays (marked deleted, slug freed) so its ledger and
     * audit records keep their owner. Refused for the default organization and while
     * sub-organizations are attached.
     */
    async remove(ctx: RequestContext, idOrSlug: string): Promise<void> {
      const id = await db.transaction().execute(async (tx) => {
        const row = await load(tx, idOrSlug, { forUpdate: true });
        authorize(ctx, ['organization:delete'], row.id);
        if (row.is_default)
          throw new AppError(
            'default_organization_protected',
            'The default internal organization cannot be deleted',
          );
        const children = await repo.countSubOrganizations(tx, row.id);
        if (children > 0)
          throw new AppError(
            'organization_has_sub_organizations',
            `Detach or delete its ${children} sub-organization(s) first`,
            { extra: { sub_organization_count: children } },
          );
        await runGuards(hub, 'organization.delete', tx, row.id);
        await repo.softDeleteOrganization(tx, row.id);
        await liveness.announce(tx, row.id);
        await hub.events.publish(tx, { type: 'organization.deleted', organization_id: row.id }, ctx);
        await audit.record(tx, ctx, {
          organizationId: row.id,
          action: 'organization.deleted',
          targetType: 'organization',
          targetId: row.id,
        });
        return row.id;
      });
      liveness.forget(id);
    },

    /** Everything the organization owns, in one document, so its users can take their data. */
    async exportData(ctx: RequestContext, idOrSlug: string) {
      const row = await load(db, idOrSlug);
      authorize(ctx, ['organization:export'], row.id);
      const sections = await Promise.all(hub.views.organizationExport.map((section) => section(db, row.id)));
      return {
        format: 'orgbase.organization-export.v1',
        exported_at: new Date().toISOString(),
        organization: toView(row),
        sub_organization_ids: await repo.findSubOrganizationIds(db, row.id),
        ...Object.assign({}, ...sections),
        audit_log: await audit.exportAll(db, row.id),
      };
    },

    /** The operator can still read a deleted organization's trail, by id. */
    async auditLog(
      ctx: RequestContext,
      idOrSlug: string,
      query: { limit?: number; cursor?: string },
    ): Promise<Page<AuditEventView>> {
      const row = await load(db, idOrSlug, { includeDeleted: ctx.actor.type === 'operator' });
      authorize(ctx, ['audit_log:read'], row.id);
      return audit.list(db, row.id, {
        beforeId: decodeCursor(query.cursor),
        limit: query.limit ?? DEFAULT_LIMIT,
      });
    },
  };
}

export type OrganizationsService = ReturnType<typeof createOrganizationsService>;
