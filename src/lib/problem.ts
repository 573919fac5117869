/**
 * The one closed list of error codes Orgbase answers with, mapped to HTTP status in one place.
 * Every error leaves the service as RFC 9457 problem+json: clients match on `code`.
 */
export const ErrorCodes = {
  validation_failed: { status: 400, title: 'The request is not valid' },
  invalid_json: { status: 400, title: 'The body is not valid JSON' },
  invalid_cursor: { status: 400, title: 'The cursor is not valid' },
  unauthenticated: { status: 401, title: 'Authentication required' },
  forbidden: { status: 403, title: 'Not allowed' },
  slug_immutable: { status: 403, title: 'The slug can only be changed by the platform operator' },
  not_found: { status: 404, title: 'Not found' },
  route_not_found: { status: 404, title: 'No such route' },
  method_not_allowed: { status: 405, title: 'Method not allowed' },
  slug_taken: { status: 409, title: 'The slug is already taken' },
  email_taken: { status: 409, title: 'An account with this email exists' },
  already_member: { status: 409, title: 'The user is already a member' },
  last_owner: { status: 409, title: 'An organization must keep at least one owner' },
  invitation_pending: { status: 409, title: 'An invitation to this email is already pending' },
  email_mismatch: { status: 403, title: 'The invitation was sent to another email address' },
  invitation_required: {
    status: 403,
    title: 'Only people already in the organization’s tree can be added directly; invite them',
  },
  last_organization: { status: 409, title: 'The user would be left without an organization' },
  email_not_verified: { status: 403, title: 'The email address is not verified yet' },
  sign_up_disabled: { status: 403, title: 'Accounts cannot be created this way' },
  origin_not_allowed: { status: 403, title: 'The request comes from another site' },
  invitation_gone: { status: 410, title: 'The invitation has expired, was revoked or was already used' },
  default_organization_protected: { status: 409, title: 'The default organization is protected' },
  organization_has_sub_organizations: {
    status: 409,
    title: 'The organization still has sub-organizations',
  },
  organization_has_agents: { status: 409, title: 'The organization still has agents assigned' },
  agent_not_in_organization: { status: 409, title: 'The agent works for another organization' },
  insufficient_credits: { status: 402, title: 'Not enough credits' },
  spending_limit_exceeded: { status: 402, title: 'Monthly spending limit reached' },
  balance_limit_exceeded: { status: 409, title: 'The balance would pass the largest the ledger holds' },
  team_budget_exceeded: { status: 402, title: 'The team’s monthly budget is spent' },
  team_not_in_organization: { status: 409, title: 'The team does not belong to this organization' },
  organization_inactive: { status: 403, title: 'The organization is inactive' },
  hold_not_active: { status: 409, title: 'The hold is no longer active' },
  top_up_not_pending: { status: 409, title: 'The top-up is not pending' },
  idempotency_key_reused: { status: 422, title: 'The idempotency key was used for a different request' },
  payload_too_large: { status: 413, title: 'The body is too large' },
  headers_too_large: { status: 431, title: 'The request headers are too large' },
  unsupported_media_type: { status: 415, title: 'Unsupported content type' },
  rate_limited: { status: 429, title: 'Too many requests' },
  plan_limit_exceeded: { status: 402, title: 'The plan’s limit is reached' },
  feature_not_enabled: { status: 403, title: 'The organization does not have this feature' },
  feature_not_grantable: { status: 403, title: 'The parent organization does not have this feature' },
  plan_change_requires_operator: {
    status: 403,
    title: 'Plan changes are made by the platform operator',
  },
  outside_organization_tree: {
    status: 403,
    title: 'The organizations belong to different trees',
  },
  plan_downgrade_blocked: { status: 409, title: 'Usage exceeds the lower plan’s limits' },
  subscription_not_cancelable: { status: 409, title: 'The subscription cannot be canceled' },
  subscription_not_canceled: { status: 409, title: 'The subscription is not set to cancel' },
  not_a_sub_organization: { status: 409, title: 'The organization is not a sub-organization' },
  nesting_too_deep: { status: 409, title: 'Sub-organizations nest at most five levels deep' },
  not_joined: { status: 409, title: 'The session has not joined an organization as a role' },
  domain_taken: { status: 409, title: 'The domain is verified by another organization' },
  domain_not_verified: { status: 409, title: 'The DNS TXT record was not found' },
  dns_unavailable: { status: 503, title: 'DNS could not be reached' },
  admin_token_from_environment: {
    status: 409,
    title: 'The operator token comes from ADMIN_TOKEN; change it there',
  },
  internal_error: { status: 500, title: 'Internal error' },
  service_unavailable: { status: 503, title: 'Service unavailable' },
} as const satisfies Record<string, { status: number; title: string }>;

export type ErrorCode = keyof typeof ErrorCodes;

export interface FieldError {
  field: string;
  message: string;
}

/**
 * An error with a problem answer. A client's error (4xx) carries no stack trace: its code and
 * detail say what happened, and capturing a trace through the server's deep async stacks cost
 * ~20 µs, a tenth of a request, on every refusal (an agent out of credits is refused at the same
 * rate it tries). A server's error (5xx) keeps its trace for the log.
 */
export class AppError extends Error {
  readonly code: ErrorCode;
  readonly status: number;
  readonly errors: FieldError[] | undefined;
  readonly extra: Record<string, unknown> | undefined;

  constructor(
    code: ErrorCode,
    detail?: string,
    options: { errors?: FieldError[]; extra?: Record<string, unknown> } = {},
  ) {
    const { status, title } = ErrorCodes[code];
    const limit = Error.stackTraceLimit;
    if (status < 500) Error.stackTraceLimit = 0;
    try {
      super(detail ?? title);
    } finally {
      Error.stackTraceLimit = limit;
    }
    this.name = 'AppError';
    this.code = code;
    this.status = status;
    this.errors = options.errors;
    this.extra = options.extra;
  }
}

/** A 400 naming one field and what is wrong with it. */
export function invalidField(field: string, message: string): AppError {
  return new AppError('validation_failed', `${field}: ${message}`, { errors: [{ field, message }] });
}

export interface Problem {
  type: string;
  title: string;
  status: number;
  detail: string;
  code: ErrorCode;
  request_id: string;
  errors?: FieldError[];
  [extra: string]: unknown;
}

export const PROBLEM_TYPE_BASE = 'https://orgbase.dev/problems/';

export function toProblem(err: AppError, requestId: string): Problem {
  return {
    ...err.extra,
    type: PROBLEM_TYPE_BASE + err.code.replaceAll('_', '-'),
    title: ErrorCodes[err.code].title,
    status: err.status,
    detail: err.message,
    code: err.code,
    request_id: requestId,
    ...(err.errors ? { errors: err.errors } : {}),
  };
}
