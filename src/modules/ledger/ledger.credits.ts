/**
 * Credit movements: manual top-ups and deductions, transfers between organizations, and usage.
 * Every debit is checked against the organization's floor and monthly limit (ledger.core.ts)
 * in the transaction that posts it.
 */
import type { Static } from 'typebox';
import type { Executor } from '../../db/client.js';
import { type Actor, can, canSee, NO_SUCH_ORGANIZATION, type RequestContext } from '../../lib/authz.js';
import { AppError, invalidField } from '../../lib/problem.js';
import type { Book, LedgerOp } from './ledger.book.js';
import { idem, type LedgerContext } from './ledger.context.js';
import {
  CREDITS,
  checkCredit,
  checkDebit,
  checkTeam,
  checkUsageAllowance,
  recordUsageEvent,
  SYSTEM,
} from './ledger.core.js';
import { applied, type Outcome, refused } from './ledger.outcome.js';
import type { AddCreditsBody, DeductCreditsBody, TransferBody, UsageBody } from './ledger.schema.js';
import { fmt, nonNegative, positive, viewTransaction } from './ledger.views.js';

/** What an applied usage event answers. */
interface UsageApplied {
  transaction_id: string;
  balance_after: string;
}

/** Debit `credits` to a system account: deductions and usage. */
function debit(
  book: Book,
  orgId: string,
  amount: bigint,
  requestId: string,
  posting: {
    type: 'deduction' | 'usage';
    counter: string;
    description: string | null;
    metadata: Record<string, unknown>;
    actor: Actor;
    teamId?: string | undefined;
  },
) {
  const s = book.state(orgId);
  const team = posting.teamId === undefined ? undefined : book.teams.get(posting.teamId);
  let refusal =
    checkDebit(s, amount, book.month, true, fmt) ??
    (posting.teamId === undefined ? null : checkTeam(team, posting.teamId, orgId, amount, book.month, fmt));
  // Another tenant's team is as unknown as a missing one: 409 only where the caller sees its organization.
  if (
    refusal?.code === 'team_not_in_organization' &&
    (team?.organizationId == null || !canSee(posting.actor, team.organizationId))
  )
    refusal = { code: 'not_found', detail: `No team "${posting.teamId}"` };
  if (refusal) return { refused: refused(refusal.code, refusal.detail, requestId) };
  if (team) book.spendByTeam(team, amount);
  const t = book.post(orgId, {
    type: posting.type,
    amount,
    legs: [
      [CREDITS, -amount],
      [posting.counter, amount],
    ],
    spend: amount,
    description: posting.description,
    metadata: posting.metadata,
    actor: posting.actor,
  });
  return { transaction: t };
}

export function createLedgerCredits({
  db,
  organizations,
  engine,
  resolve,
  submit,
  agentOrganizations,
  log,
}: LedgerContext) {
  /** 403 outside_organization_tree unless both organizations have one top-level organization. */
  async function assertOneTree(ex: Executor, fromId: string, toId: string) {
    if ((await organizations.rootOf(ex, fromId)) === (await organizations.rootOf(ex, toId))) return;
    throw new AppError(
      'outside_organization_tree',
      'Credits move only between organizations of one tree (a top-level organization and those below it); ask the platform operator otherwise',
      {
        errors: [
          {
            field: 'to_organization_id',
            message: 'is not in the sending organization’s tree of organizations',
          },
        ],
      },
    );
  }

  return {
    /** Credits an organization (a manual top-up). Inactive organizations can still receive credits. */
    async addCredits(
      ctx: RequestContext,
      idOrSlug: string,
      body: Static<typeof AddCreditsBody>,
      key?: string,
    ) {
      const org = await resolve(ctx, idOrSlug, 'credits:add');
      const amount = positive('amount', body.amount);
      return submit({
        organizationIds: [org.id],
        requestId: ctx.requestId,
        inMemory: true,
        idempotency: idem(key, [
          'credits.add',
          org.id,
          amount,
          body.description ?? null,
          body.metadata ?? {},
        ]),
        run: (book) => {
          const capped = checkCredit(book.state(org.id), amount, fmt);
          if (capped) return refused(capped.code, capped.detail, ctx.requestId);
          const t = book.post(org.id, {
            type: 'top_up',
            amount,
            legs: [
              [SYSTEM.topUps, -amount],
              [CREDITS, amount],
            ],
            description: body.description ?? null,
            metadata: body.metadata ?? {},
            actor: ctx.actor,
          });
          return applied(viewTransaction(t));
        },
      });
    },

    async deductCredits(
      ctx: RequestContext,
      idOrSlug: string,
      body: Static<typeof DeductCreditsBody>,
      key?: string,
    ) {
      const org = await resolve(ctx, idOrSlug, 'credits:deduct');
      const amount = positive('amount', body.amount);
      return submit({
        organizationIds: [org.id],
        teamIds: body.team_id === undefined ? undefined : [body.team_id],
        requestId: ctx.requestId,
        inMemory: true,
        idempotency: idem(key, [
          'credits.deduct',
          org.id,
          amount,
          body.reason ?? null,
          body.metadata ?? {},
          body.team_id ?? null,
        ]),
        run: (book) => {
          const r = debit(book, org.id, amount, ctx.requestId, {
            type: 'deduction',
            counter: SYSTEM.adjustments,
            description: body.reason ?? null,
            metadata:
              body.team_id === undefined
                ? (body.metadata ?? {})
                : { ...body.metadata, team_id: body.team_id },
            actor: ctx.actor,
            teamId: body.team_id,
          });
          // The seed's field comes back under its own name too, beside `description`.
          return (
            r.refused ?? applied({ ...viewTransaction(r.transaction), reason: r.transaction.description })
          );
        },
      });
    },

    /** Moves credits from one organization to another in one atomic transaction. */
    async transfer(ctx: RequestContext, idOrSlug: string, body: Static<typeof TransferBody>, key?: string) {
      const from = await resolve(ctx, idOrSlug, 'credits:transfer');
      // The receiver must be an organization the caller can see (a sub-organization, say).
      const to = await organizations.load(db, body.to_organization_id).catch(() => undefined);
      if (!to || !canSee(ctx.actor, to.id))
        throw invalidField('to_organization_id', 'is not an organization you can see');
      if (to.id === from.id)
        throw invalidField('to_organization_id', 'must differ from the sending organization');
      // Credits stay within one tree of organizations (a parent funding its sub-organizations):
      // moving them to an unrelated organization, even one's own, is the operator's. Checked
      // here for a refusal that touches no ledger row, and again in the ledger's transaction.
      const anywhere = ctx.actor.type === 'operator';
      if (!anywhere) await assertOneTree(db, from.id, to.id);
      const amount = positive('amount', body.amount);
      return submit({
        organizationIds: [from.id, to.id],
        requestId: ctx.requestId,
        // The tree is read again under the rows' locks, so a detach that committed since the
        // check above is seen: that read is SQL, so the operator's transfers alone stay in memory.
        inMemory: anywhere,
        idempotency: idem(key, [
          'credits.transfer',
          from.id,
          to.id,
          amount,
          body.description ?? null,
          body.metadata ?? {},
        ]),
        run: async (book) => {
          if (!anywhere) await assertOneTree(book.tx, from.id, to.id);
          // What leaves by transfer counts against the sender's monthly limit like any spend:
          // else a sub-organization could move its credits past the cap its parent set.
          const refusal =
            checkDebit(book.state(from.id), amount, book.month, true, fmt) ??
            checkCredit(book.state(to.id), amount, fmt);
          if (refusal) return refused(refusal.code, refusal.detail, ctx.requestId);
          const meta = body.metadata ?? {};
          const out = book.post(from.id, {
            type: 'transfer_out',
            amount,
            legs: [
              [CREDITS, -amount],
              [SYSTEM.transfers, amount],
            ],
            spend: amount,
            description: body.description ?? null,
            metadata: { ...meta, to_organization_id: to.id },
            actor: ctx.actor,
          });
          const inbound = book.post(to.id, {
            type: 'transfer_in',
            amount,
            legs: [
              [SYSTEM.transfers, -amount],
              [CREDITS, amount],
            ],
            description: body.description ?? null,
            metadata: { ...meta, from_organization_id: from.id },
            relatedId: out.id,
            actor: ctx.actor,
          });
          out.related_id = inbound.id;
          return applied({ from: viewTransaction(out), to: viewTransaction(inbound) });
        },
      });
    },

    /**
     * Applies a batch of usage events in order, each on its own: a refused event does not stop
     * the others. Each event's idempotency key makes its retry safe.
     */
    async recordUsage(ctx: RequestContext, body: Static<typeof UsageBody>) {
      // Authorized per event: one batch may span organizations, and each answers on its own.
      // An agent's own key records usage as that agent, and only as that agent.
      const self = ctx.actor.type === 'api_key' ? ctx.actor.agentId : undefined;
      if (self) {
        const other = body.events.findIndex((e) => e.agent_id !== undefined && e.agent_id !== self);
        if (other >= 0)
          throw invalidField(`events.${other}.agent_id`, 'an agent’s key records only its own usage');
      }
      const events = body.events.map((e) =>
        self && e.agent_id === undefined ? { ...e, agent_id: self } : e,
      );
      const parsed = events.map((e, i) => {
        const credits = positive(`events.${i}.credits`, e.credits);
        const cost = e.cost === undefined ? undefined : nonNegative(`events.${i}.cost`, e.cost);
        return { e, credits, cost };
      });
      // Where each named agent works, read once for the batch: an event is attributed to an agent
      // only in the organization that agent belongs to.
      const agentIds = [...new Set(events.flatMap((e) => (e.agent_id === undefined ? [] : [e.agent_id])))];
      const agentOrg = agentIds.length ? await agentOrganizations(agentIds) : new Map<string, string>();
      // Every event's operation is built (its key hashed, its access decided) before any is
      // submitted: nothing may throw once an event is on its way to the ledger, or its answer
      // would be lost while it commits.
      const ops = parsed.map(({ e, credits, cost }): Outcome<UsageApplied> | LedgerOp<UsageApplied> => {
        const { idempotency_key, ...content } = e;
        if (!can(ctx.actor, ['usage:record'], e.organization_id))
          return canSee(ctx.actor, e.organization_id)
            ? refused('forbidden', 'Requires usage:record', ctx.requestId)
            : refused('not_found', NO_SUCH_ORGANIZATION, ctx.requestId);
        return {
          organizationIds: [e.organization_id],
          teamIds: e.team_id === undefined ? undefined : [e.team_id],
          requestId: ctx.requestId,
          inMemory: true,
          idempotency: idem(idempotency_key, [
            'usage',
            content.organization_id,
            credits,
            cost ?? null,
            content.agent_id ?? null,
            content.tokens_in ?? null,
            content.tokens_out ?? null,
            content.description ?? null,
            content.metadata ?? {},
            content.team_id ?? null,
          ]),
          run: (book) => {
            if (e.agent_id !== undefined) {
              const home = agentOrg.get(e.agent_id);
              if (home === undefined) return refused('not_found', `No agent "${e.agent_id}"`, ctx.requestId);
              // Another tenant's agent is as unknown as a missing one; 409 only where the caller sees it.
              if (home !== e.organization_id)
                return canSee(ctx.actor, home)
                  ? refused(
                      'agent_not_in_organization',
                      `Agent "${e.agent_id}" works for another organization`,
                      ctx.requestId,
                    )
                  : refused('not_found', `No agent "${e.agent_id}"`, ctx.requestId);
            }
            // The event's own fields win over look-alikes in its free-form metadata, so the
            // transaction says exactly what the roll-up counted.
            const {
              agent_id: _agent,
              team_id: _team,
              tokens_in: _in,
              tokens_out: _out,
              cost: _cost,
              ...free
            } = e.metadata ?? {};
            const metadata: Record<string, unknown> = free;
            if (e.agent_id !== undefined) metadata.agent_id = e.agent_id;
            if (e.team_id !== undefined) metadata.team_id = e.team_id;
            if (e.tokens_in !== undefined) metadata.tokens_in = e.tokens_in;
            if (e.tokens_out !== undefined) metadata.tokens_out = e.tokens_out;
            if (cost !== undefined) metadata.cost = fmt(cost);
            const allowance = checkUsageAllowance(book.state(e.organization_id), book.month);
            if (allowance) return refused(allowance.code, allowance.detail, ctx.requestId);
            const r = debit(book, e.organization_id, credits, ctx.requestId, {
              type: 'usage',
              counter: SYSTEM.usage,
              description: e.description ?? null,
              metadata,
              actor: ctx.actor,
              teamId: e.team_id,
            });
            if (r.refused) return r.refused;
            recordUsageEvent(book.state(e.organization_id), book.month);
            book.countUsage(e.organization_id, e.agent_id, {
              credits,
              tokensIn: e.tokens_in ?? 0,
              tokensOut: e.tokens_out ?? 0,
              cost: cost ?? 0n,
            });
            return applied({
              transaction_id: r.transaction.id,
              balance_after: fmt(r.transaction.balance_after),
            });
          },
        };
      });
      // Each event answers on its own: one that failed unexpectedly is reported as rejected
      // beside the others that committed, never as a failure of the whole request.
      const settled = await Promise.allSettled(ops.map((op) => ('run' in op ? engine.submit(op) : op)));
      const outcomes = settled.map((s): Outcome<UsageApplied> => {
        if (s.status === 'fulfilled') return s.value;
        log.error({ err: s.reason, requestId: ctx.requestId }, 'usage event failed');
        return refused(
          'internal_error',
          'This event failed on our side; retry it with the same key',
          ctx.requestId,
        );
      });
      const view = outcomes.map((o, index) =>
        o.ok
          ? {
              index,
              status: 'applied' as const,
              transaction_id: o.value.transaction_id ?? null,
              balance_after: o.value.balance_after ?? null,
              code: null,
              detail: null,
              replayed: o.replayed === true,
            }
          : {
              index,
              status: 'rejected' as const,
              transaction_id: null,
              balance_after: null,
              code: o.code,
              detail: o.detail,
              replayed: o.replayed === true,
            },
      );
      return {
        applied: view.filter((v) => v.status === 'applied').length,
        rejected: view.filter((v) => v.status === 'rejected').length,
        results: view,
      };
    },
  };
}
