import { agentsModule } from './agents/agents.module.js';
import { apiKeysModule } from './api-keys/api-keys.module.js';
import { authModule } from './auth/auth.module.js';
import { billingModule } from './billing/billing.module.js';
import { domainsModule } from './domains/domains.module.js';
import { identityModule } from './identity/identity.module.js';
import { invitationsModule } from './invitations/invitations.module.js';
import type { AnyModule } from './kernel.js';
import { ledgerModule } from './ledger/ledger.module.js';
import { mailModule } from './mail/mail.module.js';
import { meModule } from './me/me.module.js';
import { membersModule } from './members/members.module.js';
import { operatorModule } from './operator/operator.module.js';
import { customizationModule } from './organizations/customization.module.js';
import { organizationsModule } from './organizations/organizations.module.js';
import { featuresModule } from './plans/features.module.js';
import { plansModule } from './plans/plans.module.js';
import { subOrganizationsModule } from './sub-organizations/sub-organizations.module.js';
import { teamsModule } from './teams/teams.module.js';

/**
 * Every module of the service, in order. A module is built after those it uses, and handles an
 * event, runs a guard or adds to a view in this order too: the ledger opens an organization's
 * account before its plan sets the account's limits, and agents refuse a deletion before members
 * do. Adding a module is one line here.
 */
export const MODULES: readonly AnyModule[] = [
  operatorModule,
  organizationsModule,
  featuresModule,
  ledgerModule,
  plansModule,
  agentsModule,
  membersModule,
  meModule,
  subOrganizationsModule,
  apiKeysModule,
  mailModule,
  authModule,
  identityModule,
  invitationsModule,
  teamsModule,
  domainsModule,
  customizationModule,
  billingModule,
];
