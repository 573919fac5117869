import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import type { FastifyReply } from 'fastify';
import { type Static, Type } from 'typebox';
import type { RequestContext } from '../../lib/authz.js';
import { sendProblem } from '../../lib/http.js';
import { PageResponse } from '../../lib/pagination.js';
import { OrganizationParams } from '../organizations/organizations.schema.js';
import { asError, type Outcome } from './ledger.outcome.js';
import {
  AddCreditsBody,
  BalanceResponse,
  CaptureHoldBody,
  CreateHoldBody,
  CreditSettingsBody,
  DeductCreditsBody,
  HoldParams,
  HoldResponse,
  IdempotencyHeaders,
  TopUpParams,
  TopUpResponse,
  TransactionResponse,
  TransactionsQuery,
  TransferBody,
  UsageBody,
} from './ledger.schema.js';
import type { LedgerService } from './ledger.service.js';

/** A deduction answers with the seed's `reason` as well as `description` (the same text). */
const DeductionResponse = Type.Object({
  ...TransactionResponse.properties,
  reason: Type.Union([Type.String(), Type.Null()], { description: 'The request’s reason (= description)' }),
});

const tags = ['credits'];

/**
 * Renders a ledger outcome: its value as JSON with the route's success status, or its refusal as
 * problem+json (status from the code); marks idempotent replays. A replay is rendered from the
 * outcome as stored, by the same code, so its bytes are the first answer's (ledger.outcome.ts).
 */
function send(reply: FastifyReply, outcome: Outcome, status: 200 | 201) {
  if (outcome.replayed) reply.header('idempotent-replayed', 'true');
  if (!outcome.ok) return sendProblem(reply, asError(outcome), outcome.requestId);
  return reply.status(status).type('application/json').send(JSON.stringify(outcome.value));
}

/** JSON page, or with ?format=csv every matching row as a download. Shared with /api/organization/transactions. */
export async function sendTransactions(
  reply: FastifyReply,
  ledger: LedgerService,
  ctx: RequestContext,
  organization: string,
  query: Static<typeof TransactionsQuery>,
) {
  if (query.format !== 'csv') return ledger.transactions(ctx, organization, query);
  const csv = await ledger.transactionsCsv(ctx, organization, query);
  return reply
    .type('text/csv; charset=utf-8')
    .header('content-disposition', `attachment; filename="${csv.filename}"`)
    .send(csv.body as never);
}

const UsageResult = Type.Object({
  index: Type.Integer(),
  status: Type.Union([Type.Literal('applied'), Type.Literal('rejected')]),
  transaction_id: Type.Union([Type.String(), Type.Null()]),
  balance_after: Type.Union([Type.String(), Type.Null()]),
  code: Type.Union([Type.String(), Type.Null()]),
  detail: Type.Union([Type.String(), Type.Null()]),
  replayed: Type.Boolean(),
});

export const ledgerRoutes =
  (ledger: LedgerService): FastifyPluginAsyncTypebox =>
  async (app) => {
    app.post(
      '/api/organizations/:id/credits/add',
      {
        schema: {
          tags,
          summary: 'Add credits',
          params: OrganizationParams,
          headers: IdempotencyHeaders,
          body: AddCreditsBody,
          response: { 201: TransactionResponse },
        },
      },
      async (req, reply) =>
        send(
          reply,
          await ledger.addCredits(req.ctx, req.params.id, req.body, req.headers['idempotency-key']),
          201,
        ),
    );

    app.post(
      '/api/organizations/:id/credits/deduct',
      {
        schema: {
          tags,
          summary:
            'Deduct credits (402 insufficient_credits or spending_limit_exceeded, 403 organization_inactive)',
          params: OrganizationParams,
          headers: IdempotencyHeaders,
          body: DeductCreditsBody,
          response: { 201: DeductionResponse },
        },
      },
      async (req, reply) =>
        send(
          reply,
          await ledger.deductCredits(req.ctx, req.params.id, req.body, req.headers['idempotency-key']),
          201,
        ),
    );

    app.post(
      '/api/organizations/:id/credits/transfer',
      {
        schema: {
          tags,
          summary: 'Transfer credits to another organization, atomically',
          params: OrganizationParams,
          headers: IdempotencyHeaders,
          body: TransferBody,
          response: { 201: Type.Object({ from: TransactionResponse, to: TransactionResponse }) },
        },
      },
      async (req, reply) =>
        send(
          reply,
          await ledger.transfer(req.ctx, req.params.id, req.body, req.headers['idempotency-key']),
          201,
        ),
    );

    app.get(
      '/api/organizations/:id/balance',
      {
        schema: {
          tags,
          summary: 'Balance, holds, overdraft, monthly spend and limits',
          params: OrganizationParams,
          response: { 200: BalanceResponse },
        },
      },
      async (req) => ledger.balance(req.ctx, req.params.id),
    );

    app.patch(
      '/api/organizations/:id/credit-settings',
      {
        schema: {
          tags,
          summary: 'Set overdraft, monthly spending limit and auto-recharge',
          params: OrganizationParams,
          body: CreditSettingsBody,
          response: { 200: BalanceResponse },
        },
      },
      async (req) => ledger.updateSettings(req.ctx, req.params.id, req.body ?? {}),
    );

    app.get(
      '/api/organizations/:id/transactions',
      {
        schema: {
          tags,
          summary: 'Transactions, newest first; ?format=csv downloads them',
          params: OrganizationParams,
          querystring: TransactionsQuery,
          response: { 200: PageResponse(TransactionResponse) },
        },
      },
      async (req, reply) => sendTransactions(reply, ledger, req.ctx, req.params.id, req.query),
    );

    app.post(
      '/api/organizations/:id/holds',
      {
        schema: {
          tags,
          summary: 'Reserve credits until captured, released or expired',
          params: OrganizationParams,
          headers: IdempotencyHeaders,
          body: CreateHoldBody,
          response: { 201: HoldResponse },
        },
      },
      async (req, reply) =>
        send(
          reply,
          await ledger.createHold(req.ctx, req.params.id, req.body, req.headers['idempotency-key']),
          201,
        ),
    );

    app.get(
      '/api/organizations/:id/holds/:holdId',
      { schema: { tags, summary: 'A hold', params: HoldParams, response: { 200: HoldResponse } } },
      async (req) => ledger.getHold(req.ctx, req.params.id, req.params.holdId),
    );

    app.post(
      '/api/organizations/:id/holds/:holdId/capture',
      {
        schema: {
          tags,
          summary: 'Capture up to the held amount; the rest returns to the balance',
          params: HoldParams,
          headers: IdempotencyHeaders,
          body: Type.Optional(CaptureHoldBody),
          response: { 200: Type.Object({ hold: HoldResponse, transaction: TransactionResponse }) },
        },
      },
      async (req, reply) =>
        send(
          reply,
          await ledger.captureHold(
            req.ctx,
            req.params.id,
            req.params.holdId,
            req.body ?? {},
            req.headers['idempotency-key'],
          ),
          200,
        ),
    );

    app.post(
      '/api/organizations/:id/holds/:holdId/release',
      {
        schema: {
          tags,
          summary: 'Release a hold, returning its credits',
          params: HoldParams,
          headers: IdempotencyHeaders,
          response: { 200: Type.Object({ hold: HoldResponse, transaction: TransactionResponse }) },
        },
      },
      async (req, reply) =>
        send(
          reply,
          await ledger.releaseHold(req.ctx, req.params.id, req.params.holdId, req.headers['idempotency-key']),
          200,
        ),
    );

    app.get(
      '/api/organizations/:id/top-ups',
      {
        schema: {
          tags,
          summary: 'Top-ups (auto-recharge invoices), newest first',
          params: OrganizationParams,
          response: { 200: Type.Object({ data: Type.Array(TopUpResponse) }) },
        },
      },
      async (req) => ({ data: await ledger.listTopUps(req.ctx, req.params.id) }),
    );

    app.post(
      '/api/organizations/:id/top-ups/:topUpId/mark-paid',
      {
        schema: {
          tags,
          summary: 'Operator: mark a pending top-up paid, crediting the organization',
          params: TopUpParams,
          response: { 200: TopUpResponse },
        },
      },
      async (req, reply) =>
        send(reply, await ledger.markTopUpPaid(req.ctx, req.params.id, req.params.topUpId), 200),
    );

    app.get(
      '/api/ledger/verify',
      {
        schema: {
          tags,
          summary: 'Operator: check the ledger invariants over the whole database',
          response: {
            200: Type.Object({
              ok: Type.Boolean(),
              transactions: Type.Integer(),
              accounts: Type.Integer(),
              violations: Type.Array(
                Type.Object({
                  kind: Type.String(),
                  organization_id: Type.String(),
                  subject: Type.String(),
                  expected: Type.String(),
                  actual: Type.String(),
                }),
              ),
            }),
          },
        },
      },
      async (req) => ledger.verify(req.ctx),
    );

    app.post(
      '/api/usage',
      {
        schema: {
          tags: ['usage'],
          summary: 'Record up to 1,000 usage events; each is applied or refused on its own, in order',
          body: UsageBody,
          response: {
            200: Type.Object({
              applied: Type.Integer(),
              rejected: Type.Integer(),
              results: Type.Array(UsageResult),
            }),
          },
        },
      },
      async (req) => ledger.recordUsage(req.ctx, req.body),
    );
  };
