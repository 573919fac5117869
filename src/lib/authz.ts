import { AppError, type FieldError } from './problem.js';

/**
 * Who is calling, and what they may do. The permission catalogue is declared once, as data
 * (resource -> actions), and so is each role's share of it. Every service method starts with
 * `authorize`; the README's matrix is generated from ROLE_PERMISSIONS.
 */
export const PERMISSIONS = {
  organization: ['read', 'create', 'update', 'delete', 'toggle', 'export', 'change_slug'],
  members: ['read', 'manage', 'manage_owners'],
  invitations: ['manage'],
  api_keys: ['read', 'manage'],
  agents: ['read', 'manage'],
  teams: ['read', 'manage'],
  audit_log: ['read'],
  credits: ['read', 'add', 'deduct', 'transfer', 'settings'],
  usage: ['record', 'read'],
  billing: ['read', 'read_all'],
  top_ups: ['mark_paid'],
  ledger: ['verify'],
  mailbox: ['read'],
  admin_token: ['rotate'],
  subscription: ['read', 'manage'],
  features: ['read'],
  sub_organizations: ['read', 'manage'],
  domains: ['read', 'manage'],
} as const;

type Catalogue = typeof PERMISSIONS;
export type Permission = {
  [R in keyof Catalogue]: `${R & string}:${Catalogue[R][number]}`;
}[keyof Catalogue];

export const ALL_PERMISSIONS = Object.entries(PERMISSIONS).flatMap(([resource, actions]) =>
  actions.map((a) => `${resource}:${a}` as Permission),
);

export const ROLES = ['owner', 'admin', 'developer', 'manager', 'agent'] as const;
export type Role = (typeof ROLES)[number];

/** Only the platform operator: changing slugs, adding credits by hand, settling top-ups, verifying. */
export const OPERATOR_ONLY: readonly Permission[] = [
  'organization:change_slug',
  'credits:add',
  'top_ups:mark_paid',
  'ledger:verify',
  'mailbox:read',
  'billing:read_all',
  'admin_token:rotate',
];

/**
 * Needs no role, only a signed-in user: creating a top-level organization (its creator becomes
 * the owner). No role holds it, since a role is held in an organization and this is asked outside
 * one; a sub-organization is created with `sub_organizations:manage` on its parent.
 */
export const SIGNED_IN_ONLY: readonly Permission[] = ['organization:create'];

const owner: Permission[] = ALL_PERMISSIONS.filter(
  (p) => !OPERATOR_ONLY.includes(p) && !SIGNED_IN_ONLY.includes(p),
);
const admin = owner.filter((p) => p !== 'organization:delete' && p !== 'members:manage_owners');

/** The permission matrix. Everything not listed is refused. */
export const ROLE_PERMISSIONS: Record<Role, readonly Permission[]> = {
  owner,
  admin,
  manager: [
    'organization:read',
    'agents:read',
    'members:read',
    'audit_log:read',
    'credits:read',
    'credits:settings',
    'api_keys:read',
    'usage:read',
    'billing:read',
    'teams:read',
    'teams:manage',
    'subscription:read',
    'features:read',
    'sub_organizations:read',
    'domains:read',
  ],
  developer: [
    'organization:read',
    'members:read',
    'credits:read',
    'usage:record',
    'api_keys:read',
    'api_keys:manage',
    'agents:read',
    'agents:manage',
    'usage:read',
    'teams:read',
    'features:read',
    'domains:read',
  ],
  agent: ['organization:read', 'credits:read', 'usage:record', 'agents:read', 'teams:read', 'features:read'],
};

export const API_KEY_SCOPES = ['read', 'write'] as const;
export type ApiKeyScope = (typeof API_KEY_SCOPES)[number];

/** An organization API key: `read` reads its organization; `write` also records usage (and reads). */
export const SCOPE_PERMISSIONS: Record<ApiKeyScope, readonly Permission[]> = {
  read: [
    'organization:read',
    'members:read',
    'audit_log:read',
    'credits:read',
    'api_keys:read',
    'agents:read',
    'usage:read',
    'billing:read',
    'teams:read',
    'subscription:read',
    'features:read',
  ],
  write: ['usage:record'],
};

/** What an agent's own key may do: its scopes, within the agent role's permissions. */
export const AGENT_KEY_PERMISSIONS: readonly Permission[] = ROLE_PERMISSIONS.agent;

export type Actor =
  | { type: 'operator'; id: string }
  | {
      type: 'user';
      id: string;
      sessionId: string | null;
      /**
       * Role per organization the user acts in: its memberships, `admin` in every sub-organization
       * below one it owns or administers (oversight), and the role it joined a sub-organization as.
       */
      roles: ReadonlyMap<string, Role>;
      /** Organizations where the role comes from a parent's oversight, not a membership. */
      oversight?: ReadonlySet<string>;
      /** The sub-organization this session joined as a role ("join as"), if any. */
      joined?: { organizationId: string; role: Role; returnTo: string | null };
    }
  | {
      type: 'api_key';
      id: string;
      organizationId: string;
      scopes: readonly ApiKeyScope[];
      /** Set for an agent's own key: usage it records is that agent's. */
      agentId?: string | undefined;
    };

export type UserActor = Extract<Actor, { type: 'user' }>;

/**
 * The sub-organization oversight rule: a user acts with its memberships (`direct`); as `admin` in
 * every organization below one it owns or administers (`below`: those organizations' live
 * descendants), unless it is an owner or admin there itself; and, for a session that joined a
 * sub-organization it oversees ("join as"), with the role it joined as there.
 */
export function userAccess(
  direct: ReadonlyMap<string, Role>,
  below: ReadonlyArray<{ id: string }>,
  joined: UserActor['joined'],
): Pick<UserActor, 'roles' | 'oversight' | 'joined'> {
  const roles = new Map<string, Role>(direct);
  const oversight = new Set<string>();
  for (const n of below) {
    const own = direct.get(n.id);
    if (own === 'owner' || own === 'admin') continue;
    roles.set(n.id, 'admin');
    oversight.add(n.id);
  }
  if (joined && below.some((n) => n.id === joined.organizationId)) {
    roles.set(joined.organizationId, joined.role);
    return { roles, oversight, joined };
  }
  return { roles, oversight };
}

/** The organizations whose descendants a user oversees: those where it is an owner or admin. */
export function overseeing(direct: ReadonlyMap<string, Role>): string[] {
  return [...direct].filter(([, r]) => r === 'owner' || r === 'admin').map(([id]) => id);
}

export interface RequestContext {
  actor: Actor;
  requestId: string;
}

function granted(actor: Actor, organizationId: string | null): ReadonlySet<Permission> | 'all' {
  switch (actor.type) {
    case 'operator':
      return 'all';
    case 'user': {
      if (organizationId === null) return new Set(SIGNED_IN_ONLY);
      const role = actor.roles.get(organizationId);
      return new Set(role ? ROLE_PERMISSIONS[role] : []);
    }
    case 'api_key': {
      if (organizationId !== actor.organizationId) return new Set();
      // A write key can read too.
      const scopes: ApiKeyScope[] = actor.scopes.includes('write') ? ['read', 'write'] : [...actor.scopes];
      const held = scopes.flatMap((s) => SCOPE_PERMISSIONS[s]);
      // An agent's own key acts for the agent: never more than the agent role may.
      return new Set(actor.agentId ? held.filter((p) => AGENT_KEY_PERMISSIONS.includes(p)) : held);
    }
  }
}

/**
 * True when the actor holds every one of `permissions` on the organization (null: not tied to
 * one). All of them are required: approving on the first one that passes was a real bug
 * elsewhere (see STYLE.md), and a test proves we don't.
 */
export function can(actor: Actor, permissions: Permission[], organizationId: string | null): boolean {
  const set = granted(actor, organizationId);
  return set === 'all' || permissions.every((p) => set.has(p));
}

/** Whether the actor can see the organization at all. */
export function canSee(actor: Actor, organizationId: string): boolean {
  return can(actor, ['organization:read'], organizationId);
}

export const NO_SUCH_ORGANIZATION = 'No such organization';

/**
 * A sub-organization's plan, features and spending limit are its parent's to decide: passes for a
 * top-level organization or an actor who manages its parent's sub-organizations; else 404 to one
 * who cannot see the organization, 403 (saying `decided` is the parent's) to one who can.
 */
export function authorizeParentDecision(
  ctx: RequestContext,
  organization: { id: string; parent_id: string | null },
  decided: string,
  errors?: FieldError[],
): void {
  if (organization.parent_id === null || can(ctx.actor, ['sub_organizations:manage'], organization.parent_id))
    return;
  authorize(ctx, ['organization:read'], organization.id);
  throw new AppError(
    'forbidden',
    `A sub-organization's ${decided} set by its parent organization's owners and admins`,
    errors ? { errors } : {},
  );
}

/**
 * Throws unless the actor holds every permission. An organization the actor cannot see at all
 * answers 404 (no existence leak); one it sees but may not act on answers 403.
 */
export function authorize(
  ctx: RequestContext,
  permissions: Permission[],
  organizationId: string | null,
): void {
  if (can(ctx.actor, permissions, organizationId)) return;
  if (organizationId !== null && !canSee(ctx.actor, organizationId))
    throw new AppError('not_found', NO_SUCH_ORGANIZATION);
  throw new AppError('forbidden', `Requires ${permissions.join(', ')}`);
}
