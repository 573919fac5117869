import { AppError } from './problem.js';

/**
 * Who is calling, and what they may do. The permission catalogue is declared once, as data:
 * resource -> actions. Every service method starts with `authorize`.
 */
export const PERMISSIONS = {
  organization: ['read', 'create', 'update', 'delete', 'toggle', 'export', 'change_slug'],
  audit_log: ['read'],
  credits: ['read', 'add', 'deduct', 'transfer', 'settings'],
  top_ups: ['mark_paid'],
  ledger: ['verify'],
} as const;

type Catalogue = typeof PERMISSIONS;
export type Permission = {
  [R in keyof Catalogue]: `${R & string}:${Catalogue[R][number]}`;
}[keyof Catalogue];

export type Actor = { type: 'operator'; id: string };

export interface RequestContext {
  actor: Actor;
  requestId: string;
}

/**
 * True when the actor holds every one of `permissions` on the organization. All of them are
 * required: approving on the first one that passes was a real bug elsewhere (see STYLE.md).
 */
export function can(actor: Actor, permissions: Permission[], _organizationId: string | null): boolean {
  return permissions.every(() => actor.type === 'operator');
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
  if (organizationId !== null && !can(ctx.actor, ['organization:read'], organizationId))
    throw new AppError('not_found', 'No such organization');
  throw new AppError('forbidden', `Requires ${permissions.join(', ')}`);
}
