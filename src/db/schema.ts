import type { ColumnType, Generated } from 'kysely';

type CreatedAt = ColumnType<Date, Date | undefined, never>;
type UpdatedAt = ColumnType<Date, Date | undefined, Date>;

export interface OrganizationsTable {
  id: string;
  name: string;
  slug: string;
  description: string | null;
  contact_name: string | null;
  contact_email: string | null;
  billing_rate_per_agent: ColumnType<bigint, bigint | undefined, bigint>;
  currency: Generated<string>;
  active: Generated<boolean>;
  plan: Generated<string>;
  parent_id: string | null;
  branding: ColumnType<Record<string, unknown>, string | undefined, string>;
  is_default: Generated<boolean>;
  created_at: CreatedAt;
  updated_at: UpdatedAt;
  deleted_at: Date | null;
}

export interface AuditEventsTable {
  organization_id: string;
  id: string;
  actor_type: string;
  actor_id: string | null;
  action: string;
  target_type: string;
  target_id: string;
  changes: ColumnType<Record<string, unknown>, string, never>;
  request_id: string | null;
  created_at: CreatedAt;
}

export interface OperatorCredentialsTable {
  id: string;
  token_hash: string;
  created_at: CreatedAt;
  revoked_at: Date | null;
}

export interface SchemaMigrationsTable {
  version: number;
  name: string;
  checksum: string;
  applied_at: CreatedAt;
}

export interface Database {
  organizations: OrganizationsTable;
  audit_events: AuditEventsTable;
  operator_credentials: OperatorCredentialsTable;
  schema_migrations: SchemaMigrationsTable;
}
