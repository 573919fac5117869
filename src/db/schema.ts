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
  actor_role: string | null;
  actor_via: string | null;
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
  ledger_accounts: LedgerAccountsTable;
  ledger_transactions: LedgerTransactionsTable;
  idempotency_records: IdempotencyRecordsTable;
  ledger_holds: LedgerHoldsTable;
  top_ups: TopUpsTable;
  users: UsersTable;
  sessions: SessionsTable;
  platform_settings: PlatformSettingsTable;
  members: MembersTable;
  session_contexts: SessionContextsTable;
  invitations: InvitationsTable;
  api_keys: ApiKeysTable;
  mailbox_messages: MailboxMessagesTable;
  agents: AgentsTable;
  agent_assignments: AgentAssignmentsTable;
  usage_daily: UsageDailyTable;
  teams: TeamsTable;
  subscriptions: SubscriptionsTable;
  organization_features: OrganizationFeaturesTable;
  organization_domains: OrganizationDomainsTable;
  organization_rate_history: OrganizationRateHistoryTable;
  agent_rate_history: AgentRateHistoryTable;
  usage_org_daily: UsageOrgDailyTable;
}

export interface UsageOrgDailyTable {
  organization_id: string;
  day: ColumnType<string, string, string>;
  events: bigint;
  credits: bigint;
  tokens_in: bigint;
  tokens_out: bigint;
  cost: bigint;
}

/** Written by triggers (migration 0009): read-only to the code. */
export interface OrganizationRateHistoryTable {
  organization_id: string;
  changed_at: Date;
  rate: bigint;
}

export interface AgentRateHistoryTable {
  agent_id: string;
  changed_at: Date;
  billing_rate: bigint | null;
}

export interface SubscriptionsTable {
  organization_id: string;
  billing_cycle: ColumnType<string, string | undefined, string>;
  status: ColumnType<string, string | undefined, string>;
  cancel_at_period_end: ColumnType<boolean, boolean | undefined, boolean>;
  current_period_start: ColumnType<Date, Date | undefined, Date>;
  current_period_end: Date;
  canceled_at: ColumnType<Date | null, Date | null | undefined, Date | null>;
  created_at: CreatedAt;
  updated_at: UpdatedAt;
}

export interface OrganizationFeaturesTable {
  organization_id: string;
  feature: string;
  granted_at: CreatedAt;
}

export interface OrganizationDomainsTable {
  organization_id: string;
  id: string;
  domain: string;
  verification_token: string;
  status: ColumnType<string, string | undefined, string>;
  verified_at: Date | null;
  last_checked_at: Date | null;
  created_at: CreatedAt;
}

export interface LedgerAccountsTable {
  organization_id: string;
  code: string;
  balance: ColumnType<bigint, bigint | undefined, bigint>;
  overdraft_enabled: ColumnType<boolean, boolean | undefined, boolean>;
  overdraft_limit: ColumnType<bigint, bigint | undefined, bigint>;
  monthly_spending_limit: bigint | null;
  spend_month: ColumnType<string, string | undefined, string>;
  month_spend: ColumnType<bigint, bigint | undefined, bigint>;
  auto_recharge_enabled: ColumnType<boolean, boolean | undefined, boolean>;
  auto_recharge_threshold: ColumnType<bigint, bigint | undefined, bigint>;
  auto_recharge_amount: ColumnType<bigint, bigint | undefined, bigint>;
  auto_recharge_payment_method: string | null;
  /** Advanced by a trigger on every update; the engine's one-statement batches check it. */
  version: ColumnType<bigint, never, never>;
  updated_at: UpdatedAt;
}

export interface LedgerTransactionsTable {
  organization_id: string;
  id: string;
  type: string;
  amount: bigint;
  entry_accounts: string[];
  entry_amounts: bigint[];
  balance_after: bigint;
  description: string | null;
  actor_type: string;
  actor_id: string | null;
  metadata: ColumnType<Record<string, unknown>, string, never>;
  related_id: string | null;
  created_at: CreatedAt;
}

export interface IdempotencyRecordsTable {
  organization_id: string;
  key: string;
  fingerprint: string;
  /** The answer as the ledger's outcome, JSON text (replayed byte for byte); null on records before 0013. */
  outcome: string | null;
  /** Records before 0013: the HTTP status and body (jsonb); null on newer ones. */
  status_code: number | null;
  response: ColumnType<unknown, string | null, never>;
  created_at: CreatedAt;
}

export interface LedgerHoldsTable {
  organization_id: string;
  id: string;
  amount: bigint;
  captured_amount: ColumnType<bigint, bigint | undefined, bigint>;
  status: ColumnType<string, string | undefined, string>;
  description: string | null;
  metadata: ColumnType<Record<string, unknown>, string | undefined, never>;
  expires_at: Date;
  created_at: CreatedAt;
  closed_at: Date | null;
}

export interface TopUpsTable {
  organization_id: string;
  id: string;
  amount: bigint;
  status: ColumnType<string, string | undefined, string>;
  reason: string;
  provider: string;
  payment_method: string | null;
  external_id: string | null;
  transaction_id: string | null;
  created_at: CreatedAt;
  updated_at: UpdatedAt;
}

export interface UsersTable {
  id: string;
  name: string;
  email: string;
  email_verified: boolean;
  image: string | null;
  created_at: CreatedAt;
  updated_at: UpdatedAt;
}

export interface SessionsTable {
  id: string;
  token: string;
  user_id: string;
  expires_at: Date;
  ip_address: string | null;
  user_agent: string | null;
  created_at: CreatedAt;
  updated_at: UpdatedAt;
}

export interface PlatformSettingsTable {
  key: string;
  value: string;
  created_at: CreatedAt;
}

export interface MembersTable {
  organization_id: string;
  user_id: string;
  role: string;
  created_at: CreatedAt;
  updated_at: UpdatedAt;
}

export interface SessionContextsTable {
  session_id: string;
  active_organization_id: string;
  joined_organization_id: ColumnType<string | null, string | null | undefined, string | null>;
  joined_role: ColumnType<string | null, string | null | undefined, string | null>;
  return_organization_id: ColumnType<string | null, string | null | undefined, string | null>;
  updated_at: UpdatedAt;
}

export interface InvitationsTable {
  organization_id: string;
  id: string;
  email: string;
  role: string;
  token_hash: string;
  status: ColumnType<string, string | undefined, string>;
  invited_by: string | null;
  expires_at: Date;
  sent_count: ColumnType<number, number | undefined, number>;
  last_sent_at: Date | null;
  accepted_by: string | null;
  created_at: CreatedAt;
  updated_at: UpdatedAt;
}

export interface ApiKeysTable {
  organization_id: string;
  id: string;
  name: string;
  prefix: string;
  key_hash: string;
  scopes: string[];
  agent_id: ColumnType<string | null, string | null | undefined, string | null>;
  created_by: string | null;
  expires_at: Date | null;
  last_used_at: Date | null;
  revoked_at: Date | null;
  created_at: CreatedAt;
}

export interface MailboxMessagesTable {
  id: string;
  to_address: string;
  from_address: string;
  subject: string;
  text_body: string;
  html_body: string;
  created_at: CreatedAt;
}

export interface AgentsTable {
  organization_id: string;
  id: string;
  name: string;
  description: string | null;
  status: ColumnType<string, string | undefined, string>;
  billing_rate: bigint | null;
  created_at: CreatedAt;
  updated_at: UpdatedAt;
  deleted_at: Date | null;
}

export interface AgentAssignmentsTable {
  organization_id: string;
  agent_id: string;
  assigned_at: Date;
  unassigned_at: Date | null;
}

export interface UsageDailyTable {
  organization_id: string;
  day: ColumnType<string, string, string>;
  agent_id: string;
  events: bigint;
  credits: bigint;
  tokens_in: bigint;
  tokens_out: bigint;
  cost: bigint;
}

export interface TeamsTable {
  id: string;
  organization_id: string | null;
  name: string;
  description: string | null;
  monthly_budget: bigint | null;
  spend_month: ColumnType<string, string | undefined, string>;
  month_spend: ColumnType<bigint, bigint | undefined, bigint>;
  created_at: CreatedAt;
  updated_at: UpdatedAt;
  deleted_at: Date | null;
}
