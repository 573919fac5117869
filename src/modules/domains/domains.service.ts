import { randomBytes } from 'node:crypto';
import type { Selectable } from 'kysely';
import type { Db, Executor, Tx } from '../../db/client.js';
import type { OrganizationDomainsTable } from '../../db/schema.js';
import { authorize, type RequestContext } from '../../lib/authz.js';
import { newId } from '../../lib/ids.js';
import { AppError } from '../../lib/problem.js';
import type { AuditService } from '../audit/audit.service.js';
import type { OrganizationsService } from '../organizations/organizations.service.js';
import type { FeaturesService } from '../plans/features.service.js';
import { DnsLookupError, type TxtResolver } from './dns.js';

type DomainRow = Selectable<OrganizationDomainsTable>;

/** Where the proof goes: a TXT record on this name below the domain. */
export const CHALLENGE_LABEL = '_orgbase-challenge';
const VALUE_PREFIX = 'orgbase-verify=';

function view(r: DomainRow) {
  return {
    id: r.id,
    organization_id: r.organization_id,
    domain: r.domain,
    status: r.status as 'pending' | 'verified',
    verification: {
      type: 'TXT' as const,
      name: `${CHALLENGE_LABEL}.${r.domain}`,
      value: `${VALUE_PREFIX}${r.verification_token}`,
    },
    verified_at: r.verified_at?.toISOString() ?? null,
    last_checked_at: r.last_checked_at?.toISOString() ?? null,
    created_at: r.created_at.toISOString(),
  };
}

function isUniqueViolation(err: unknown): boolean {
  return typeof err === 'object' && err !== null && (err as { code?: unknown }).code === '23505';
}

/**
 * Custom domains, proven with a DNS TXT record. Invariants: an organization lists a domain
 * once; at most one organization holds a domain verified; verification writes only on success.
 */
export function createDomainsService(deps: {
  db: Db;
  audit: AuditService;
  organizations: OrganizationsService;
  features: FeaturesService;
  resolver: TxtResolver;
}) {
  const { db, audit, organizations, features, resolver } = deps;

  async function loadDomain(ex: Executor, organizationId: string, id: string): Promise<DomainRow> {
    const row = await ex
      .selectFrom('organization_domains')
      .selectAll()
      .where('organization_id', '=', organizationId)
      .where('id', '=', id)
      .executeTakeFirst();
    if (!row) throw new AppError('not_found', 'No such domain');
    return row;
  }

  async function verifiedElsewhere(ex: Executor, organizationId: string, domain: string) {
    const row = await ex
      .selectFrom('organization_domains')
      .select('organization_id')
      .where('domain', '=', domain)
      .where('status', '=', 'verified')
      .where('organization_id', '!=', organizationId)
      .executeTakeFirst();
    return row !== undefined;
  }

  const taken = (domain: string) =>
    new AppError('domain_taken', `${domain} is verified by another organization`, {
      errors: [{ field: 'domain', message: 'is verified by another organization' }],
    });

  return {
    async add(ctx: RequestContext, idOrSlug: string, input: { domain: string }) {
      const org = await organizations.load(db, idOrSlug);
      authorize(ctx, ['domains:manage'], org.id);
      await features.require(db, org.id, 'custom_domains');
      const domain = input.domain.toLowerCase().replace(/\.$/, '');
      if (await verifiedElsewhere(db, org.id, domain)) throw taken(domain);
      return db.transaction().execute(async (tx) => {
        const row = await tx
          .insertInto('organization_domains')
          .values({
            organization_id: org.id,
            id: newId('dom'),
            domain,
            verification_token: randomBytes(20).toString('hex'),
          })
          .onConflict((oc) => oc.columns(['organization_id', 'domain']).doNothing())
          .returningAll()
          .executeTakeFirst();
        if (!row)
          throw new AppError('domain_taken', `${domain} is already listed for this organization`, {
            errors: [{ field: 'domain', message: 'is already listed' }],
          });
        await audit.record(tx, ctx, {
          organizationId: org.id,
          action: 'domain.added',
          targetType: 'domain',
          targetId: row.id,
          changes: { domain: { before: null, after: domain } },
        });
        return view(row);
      });
    },

    async list(ctx: RequestContext, idOrSlug: string) {
      const org = await organizations.load(db, idOrSlug);
      authorize(ctx, ['domains:read'], org.id);
      const rows = await db
        .selectFrom('organization_domains')
        .selectAll()
        .where('organization_id', '=', org.id)
        .orderBy('domain')
        .execute();
      return { data: rows.map(view), next_cursor: null };
    },

    /**
     * Looks up the TXT record now. Found: the domain is verified (409 domain_taken if another
     * organization verified it first). Not found: 409 domain_not_verified naming the record to
     * publish. DNS unreachable: 503 dns_unavailable. Nothing is written unless it verifies.
     */
    async verify(ctx: RequestContext, idOrSlug: string, domainId: string) {
      const org = await organizations.load(db, idOrSlug);
      authorize(ctx, ['domains:manage'], org.id);
      const row = await loadDomain(db, org.id, domainId);
      if (row.status === 'verified') return view(row);
      // A plan that lost custom domains keeps their list, but proves no new one.
      await features.require(db, org.id, 'custom_domains');
      const expected = view(row).verification;
      let records: string[];
      try {
        records = await resolver.resolveTxt(expected.name);
      } catch (err) {
        if (err instanceof DnsLookupError)
          throw new AppError(
            'dns_unavailable',
            `DNS could not be asked about ${expected.name}: ${err.message}`,
          );
        throw err;
      }
      if (!records.some((r) => r.trim() === expected.value))
        throw new AppError(
          'domain_not_verified',
          `No TXT record "${expected.value}" at ${expected.name} yet (DNS changes can take a while to appear)`,
          { extra: { record: expected, found: records.length } },
        );
      if (await verifiedElsewhere(db, org.id, row.domain)) throw taken(row.domain);
      return db.transaction().execute(async (tx) => {
        const now = new Date();
        let updated: DomainRow;
        try {
          updated = await tx
            .updateTable('organization_domains')
            .set({ status: 'verified', verified_at: now, last_checked_at: now })
            .where('organization_id', '=', org.id)
            .where('id', '=', row.id)
            .returningAll()
            .executeTakeFirstOrThrow();
        } catch (err) {
          if (isUniqueViolation(err)) throw taken(row.domain);
          throw err;
        }
        await audit.record(tx, ctx, {
          organizationId: org.id,
          action: 'domain.verified',
          targetType: 'domain',
          targetId: row.id,
          changes: { status: { before: 'pending', after: 'verified' } },
        });
        return view(updated);
      });
    },

    async remove(ctx: RequestContext, idOrSlug: string, domainId: string) {
      const org = await organizations.load(db, idOrSlug);
      authorize(ctx, ['domains:manage'], org.id);
      await db.transaction().execute(async (tx) => {
        const row = await loadDomain(tx, org.id, domainId);
        await tx
          .deleteFrom('organization_domains')
          .where('organization_id', '=', org.id)
          .where('id', '=', row.id)
          .execute();
        await audit.record(tx, ctx, {
          organizationId: org.id,
          action: 'domain.removed',
          targetType: 'domain',
          targetId: row.id,
          changes: { domain: { before: row.domain, after: null } },
        });
      });
    },

    /** A deleted organization lets its domains go, so another can verify them. */
    async onOrganizationDeleted(tx: Tx, organizationId: string) {
      await tx.deleteFrom('organization_domains').where('organization_id', '=', organizationId).execute();
    },

    async exportSection(ex: Executor, organizationId: string) {
      const rows = await ex
        .selectFrom('organization_domains')
        .selectAll()
        .where('organization_id', '=', organizationId)
        .orderBy('domain')
        .execute();
      return { domains: rows.map(view) };
    },
  };
}

export type DomainsService = ReturnType<typeof createDomainsService>;
