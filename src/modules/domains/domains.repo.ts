import type { Selectable } from 'kysely';
import type { Executor } from '../../db/client.js';
import type { OrganizationDomainsTable } from '../../db/schema.js';

// The `organization_domains` table's SQL: custom domains and their verification state.

export type DomainRow = Selectable<OrganizationDomainsTable>;

export async function findDomain(
  db: Executor,
  organizationId: string,
  id: string,
): Promise<DomainRow | undefined> {
  return db
    .selectFrom('organization_domains')
    .selectAll()
    .where('organization_id', '=', organizationId)
    .where('id', '=', id)
    .executeTakeFirst();
}

/** An organization's domains, by name. */
export async function findDomainsOf(db: Executor, organizationId: string): Promise<DomainRow[]> {
  return db
    .selectFrom('organization_domains')
    .selectAll()
    .where('organization_id', '=', organizationId)
    .orderBy('domain')
    .execute();
}

/** Whether an organization other than `organizationId` holds `domain` verified. */
export async function isVerifiedElsewhere(
  db: Executor,
  organizationId: string,
  domain: string,
): Promise<boolean> {
  const row = await db
    .selectFrom('organization_domains')
    .select('organization_id')
    .where('domain', '=', domain)
    .where('status', '=', 'verified')
    .where('organization_id', '!=', organizationId)
    .executeTakeFirst();
  return row !== undefined;
}

/** Inserts a pending domain; undefined when the organization lists it already. */
export async function insertDomain(
  db: Executor,
  row: { organization_id: string; id: string; domain: string; verification_token: string },
): Promise<DomainRow | undefined> {
  return db
    .insertInto('organization_domains')
    .values(row)
    .onConflict((oc) => oc.columns(['organization_id', 'domain']).doNothing())
    .returningAll()
    .executeTakeFirst();
}

/** Marks the domain verified now (a unique violation when another organization verified it meanwhile). */
export async function updateVerified(db: Executor, organizationId: string, id: string): Promise<DomainRow> {
  const now = new Date();
  return db
    .updateTable('organization_domains')
    .set({ status: 'verified', verified_at: now, last_checked_at: now })
    .where('organization_id', '=', organizationId)
    .where('id', '=', id)
    .returningAll()
    .executeTakeFirstOrThrow();
}

export async function deleteDomain(db: Executor, organizationId: string, id: string): Promise<void> {
  await db
    .deleteFrom('organization_domains')
    .where('organization_id', '=', organizationId)
    .where('id', '=', id)
    .execute();
}

export async function deleteDomainsOf(db: Executor, organizationId: string): Promise<void> {
  await db.deleteFrom('organization_domains').where('organization_id', '=', organizationId).execute();
}
