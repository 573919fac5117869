/**
 * The domains module owns `organization_domains`: custom domains, proven with a DNS TXT record.
 * Rules: an organization lists a domain once; at most one organization holds a domain verified;
 * verification writes only on success; adding or proving one takes the `custom_domains` feature
 * (a plan that lost it keeps its list); a deleted organization lets its domains go.
 */
import { randomBytes } from 'node:crypto';
import type { Db, Executor, Tx } from '../../db/client.js';
import { authorize, type RequestContext } from '../../lib/authz.js';
import { newId } from '../../lib/ids.js';
import { AppError } from '../../lib/problem.js';
import type { AuditService } from '../audit/audit.service.js';
import type { OrganizationsService } from '../organizations/organizations.service.js';
import type { FeaturesService } from '../plans/features.service.js';
import { DnsLookupError, type TxtResolver } from './dns.js';
import * as repo from './domains.repo.js';

type DomainRow = repo.DomainRow;

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

/** Custom domains: added, listed, verified against DNS, removed. */
export function createDomainsService(deps: {
  db: Db;
  audit: AuditService;
  organizations: OrganizationsService;
  features: FeaturesService;
  resolver: TxtResolver;
}) {
  const { db, audit, organizations, features, resolver } = deps;

  async function loadDomain(ex: Executor, organizationId: string, id: string): Promise<DomainRow> {
    const row = await repo.findDomain(ex, organizationId, id);
    if (!row) throw new AppError('not_found', 'No such domain');
    return row;
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
      if (await repo.isVerifiedElsewhere(db, org.id, domain)) throw taken(domain);
      return db.transaction().execute(async (tx) => {
        const row = await repo.insertDomain(tx, {
          organization_id: org.id,
          id: newId('dom'),
          domain,
          verification_token: randomBytes(20).toString('hex'),
        });
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
      const rows = await repo.findDomainsOf(db, org.id);
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
      if (await repo.isVerifiedElsewhere(db, org.id, row.domain)) throw taken(row.domain);
      return db.transaction().execute(async (tx) => {
        let updated: DomainRow;
        try {
          updated = await repo.updateVerified(tx, org.id, row.id);
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
        await repo.deleteDomain(tx, org.id, row.id);
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
      await repo.deleteDomainsOf(tx, organizationId);
    },

    async exportSection(ex: Executor, organizationId: string) {
      return { domains: (await repo.findDomainsOf(ex, organizationId)).map(view) };
    },
  };
}

export type DomainsService = ReturnType<typeof createDomainsService>;
