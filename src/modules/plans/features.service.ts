/**
 * The features half of the plans module owns `organization_features`: what a parent grants its
 * sub-organizations, within its own effective features (a top-level organization's come from its
 * plan). It publishes features.changed for every organization of a subtree whose features may
 * have shrunk.
 */
import type { Db, Executor, Tx } from '../../db/client.js';
import { authorize, authorizeParentDecision, type RequestContext } from '../../lib/authz.js';
import type { EventBus } from '../../lib/events.js';
import { AppError } from '../../lib/problem.js';
import type { AuditService } from '../audit/audit.service.js';
import type { OrganizationsService } from '../organizations/organizations.service.js';
import { FEATURE_KEYS, FEATURES, type Feature, planIncluding, planOf } from './plans.catalog.js';
import * as repo from './plans.repo.js';

/** Refuses (403 feature_not_grantable, naming each) features the parent does not have. */
export function assertGrantable(parentHas: ReadonlySet<Feature>, features: readonly Feature[]): void {
  const refused = features.filter((f) => !parentHas.has(f));
  if (refused.length)
    throw new AppError(
      'feature_not_grantable',
      `The parent organization does not have ${refused.map((f) => `"${f}"`).join(', ')}`,
      {
        errors: refused.map((f) => ({ field: 'features', message: `"${f}" is not available to the parent` })),
        extra: { features: refused },
      },
    );
}

interface Node {
  id: string;
  parent_id: string | null;
  plan: string;
}

/**
 * Effective features, top-down: a top-level organization has its plan's features; a
 * sub-organization has what its plan includes, its parent granted it, and its parent has.
 */
function resolveTree(
  nodes: Node[],
  grants: Map<string, Set<string>>,
  known: Map<string, Set<Feature>> = new Map(),
): Map<string, Set<Feature>> {
  const out = new Map(known);
  for (const n of nodes) {
    const plan = planOf(n.plan).features;
    if (n.parent_id === null) {
      out.set(n.id, new Set(plan));
      continue;
    }
    const parent = out.get(n.parent_id) ?? new Set<Feature>();
    const granted = grants.get(n.id) ?? new Set();
    out.set(n.id, new Set(plan.filter((f) => granted.has(f) && parent.has(f))));
  }
  return out;
}

/**
 * The feature registry applied to organizations. Invariants: a sub-organization's grants are
 * always a subset of its parent's effective features; taking a feature from an organization
 * takes it from every organization below it, in the same transaction.
 */
export function createFeaturesService(deps: {
  db: Db;
  audit: AuditService;
  organizations: OrganizationsService;
  events: EventBus;
}) {
  const { db, audit, organizations } = deps;

  async function effective(ex: Executor, organizationId: string): Promise<Set<Feature>> {
    const chain = (await organizations.ancestryOf(ex, organizationId)).reverse();
    const grants = await repo.findGrants(
      ex,
      chain.map((n) => n.id),
    );
    return resolveTree(chain, grants).get(organizationId) ?? new Set();
  }

  /** Effective features of the organization and everything below it. */
  async function effectiveBelow(ex: Executor, organizationId: string): Promise<Map<string, Set<Feature>>> {
    const top = await effective(ex, organizationId);
    const below = await organizations.descendantsOf(ex, [organizationId]);
    const grants = await repo.findGrants(
      ex,
      below.map((n) => n.id),
    );
    return resolveTree(below, grants, new Map([[organizationId, top]]));
  }

  function view(
    org: { id: string; plan: string; parent_id: string | null },
    eff: Set<Feature>,
    grants: Set<string>,
    parentHas: Set<Feature> | null,
  ) {
    const plan = planOf(org.plan);
    return {
      organization_id: org.id,
      plan: plan.key,
      enabled: FEATURE_KEYS.filter((f) => eff.has(f)),
      features: FEATURE_KEYS.map((key) => ({
        key,
        name: FEATURES[key].name,
        description: FEATURES[key].description,
        enabled: eff.has(key),
        in_plan: plan.features.includes(key),
        granted: org.parent_id === null ? null : grants.has(key),
        parent_has: parentHas === null ? null : parentHas.has(key),
      })),
    };
  }

  async function get(ctx: RequestContext, idOrSlug: string) {
    const org = await organizations.load(db, idOrSlug);
    authorize(ctx, ['features:read'], org.id);
    const chain = (await organizations.ancestryOf(db, org.id)).reverse();
    const grants = await repo.findGrants(
      db,
      chain.map((n) => n.id),
    );
    const all = resolveTree(chain, grants);
    return view(
      org,
      all.get(org.id) ?? new Set(),
      grants.get(org.id) ?? new Set(),
      org.parent_id === null ? null : (all.get(org.parent_id) ?? new Set()),
    );
  }

  /**
   * After an organization's features may have shrunk (grants revoked, plan changed, detached):
   * takes `removed` from every organization below it, audits each, and publishes
   * features.changed with the effective set of each organization of the subtree.
   */
  async function cascade(tx: Tx, ctx: RequestContext, organizationId: string, removed: string[]) {
    const below = await organizations.descendantsOf(tx, [organizationId]);
    const taken = await repo.deleteGrants(
      tx,
      below.map((n) => n.id),
      removed,
    );
    const byOrg = new Map<string, string[]>();
    for (const t of taken) byOrg.set(t.organization_id, [...(byOrg.get(t.organization_id) ?? []), t.feature]);
    for (const [id, lost] of byOrg)
      await audit.record(tx, ctx, {
        organizationId: id,
        action: 'features.revoked',
        targetType: 'organization',
        targetId: id,
        changes: {
          features: { before: lost.sort(), after: [] },
          revoked_from: { before: null, after: organizationId },
        },
      });
    const eff = await effectiveBelow(tx, organizationId);
    for (const [id, features] of eff)
      await deps.events.publish(
        tx,
        {
          type: 'features.changed',
          organization_id: id,
          features: FEATURE_KEYS.filter((f) => features.has(f)),
        },
        ctx,
      );
  }

  return {
    effective,

    /** Throws 403 feature_not_enabled unless the organization has the feature, naming what lifts it. */
    async require(ex: Executor, organizationId: string, feature: Feature): Promise<void> {
      if ((await effective(ex, organizationId)).has(feature)) return;
      const org = await organizations.load(ex, organizationId);
      const inPlan = planOf(org.plan).features.includes(feature);
      const upgrade = planIncluding(feature);
      throw new AppError(
        'feature_not_enabled',
        inPlan
          ? `The feature "${feature}" has not been granted by the parent organization`
          : `The feature "${feature}" is not in the ${org.plan} plan; the ${upgrade} plan includes it`,
        { extra: { feature, plan: org.plan, upgrade_to: inPlan ? null : upgrade } },
      );
    },

    get,

    /**
     * Replaces what a sub-organization is granted. Only its parent's owners and admins may, and
     * only with features the parent has; what is taken away is taken from everything below too.
     */
    async set(ctx: RequestContext, idOrSlug: string, features: Feature[]) {
      const found = await organizations.load(db, idOrSlug);
      if (found.parent_id === null) {
        authorize(ctx, ['sub_organizations:manage'], found.id);
        throw new AppError(
          'not_a_sub_organization',
          "A top-level organization's features come from its plan: change the plan instead",
        );
      }
      authorizeParentDecision(ctx, found, 'features are');
      await db.transaction().execute(async (tx) => {
        const org = await organizations.load(tx, found.id, { forUpdate: true });
        const parentHas = await effective(tx, org.parent_id as string);
        assertGrantable(parentHas, features);
        const before = (await repo.findGrants(tx, [org.id])).get(org.id) ?? new Set<string>();
        const after = [...new Set(features)].sort();
        await repo.replaceGrants(tx, org.id, after);
        const removed = [...before].filter((f) => !after.includes(f as Feature));
        const changes = { features: { before: [...before].sort(), after } };
        if (removed.length || after.length !== before.size)
          await audit.record(tx, ctx, {
            organizationId: org.id,
            action: 'features.changed',
            targetType: 'organization',
            targetId: org.id,
            changes,
          });
        await cascade(tx, ctx, org.id, removed);
      });
      return get(ctx, found.id);
    },

    cascade,

    /** Grants a new sub-organization its features (already checked against the parent). */
    grant: (tx: Tx, organizationId: string, features: Feature[]) =>
      repo.replaceGrants(tx, organizationId, [...new Set(features)].sort()),

    /** A detached organization stands alone: its grants go, its plan decides. */
    dropGrants: (tx: Tx, organizationId: string) => repo.deleteAllGrants(tx, organizationId),
  };
}

export type FeaturesService = ReturnType<typeof createFeaturesService>;
