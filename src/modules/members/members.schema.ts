import { Type } from 'typebox';
import { ROLES } from '../../lib/authz.js';
import { PageQuery } from '../../lib/pagination.js';

export const RoleSchema = Type.Union(
  ROLES.map((r) => Type.Literal(r)),
  { description: 'owner, admin, developer, manager or agent' },
);

export const MemberParams = Type.Object({
  id: Type.String({ minLength: 1, maxLength: 100 }),
  userId: Type.String({ minLength: 1, maxLength: 100, description: 'A user id, or `me`' }),
});

export const AddMemberBody = Type.Object(
  {
    user_id: Type.Optional(Type.String({ minLength: 1, maxLength: 100 })),
    email: Type.Optional(Type.String({ maxLength: 254, format: 'email' })),
    role: RoleSchema,
  },
  {
    additionalProperties: false,
    description: 'A member of another organization of the same tree, by user_id or email; invite anyone else',
  },
);

export const UpdateMemberBody = Type.Object({ role: RoleSchema }, { additionalProperties: false });

export const TransferOwnershipBody = Type.Object(
  { user_id: Type.String({ minLength: 1, maxLength: 100 }) },
  { additionalProperties: false },
);

export const MembersQuery = Type.Object({ ...PageQuery }, { additionalProperties: false });

export const MemberResponse = Type.Object({
  user_id: Type.String(),
  name: Type.String(),
  email: Type.String(),
  role: Type.String(),
  status: Type.Literal('active', {
    description: 'active: a member. People invited but not yet joined are pending invitations',
  }),
  created_at: Type.String({ format: 'date-time' }),
  updated_at: Type.String({ format: 'date-time' }),
});
