/**
 * The mail module owns `mailbox_messages`, the local mailbox. Outgoing mail goes over SMTP when
 * SMTP_URL is set; without it each message is kept in the mailbox (`GET /api/dev/mailbox`,
 * `orgbase mailbox`), so a fresh install can invite people without any setup. Rules: a kept
 * message is written on the caller's executor, so it commits (or not) with the change it
 * announces; only the operator reads the mailbox.
 */
import nodemailer from 'nodemailer';
import type { Db, Executor } from '../../db/client.js';
import { authorize, type RequestContext } from '../../lib/authz.js';
import { newId } from '../../lib/ids.js';
import * as repo from './mail.repo.js';

export interface Message {
  to: string;
  subject: string;
  text: string;
  html: string;
}

/** Outgoing mail: SMTP, or the local mailbox. */
export function createMailService(deps: { db: Db; smtpUrl: string | undefined; from: string }) {
  const transport = deps.smtpUrl ? nodemailer.createTransport(deps.smtpUrl) : undefined;

  async function mailbox(limit: number) {
    const rows = await repo.findMessages(deps.db, limit);
    return rows.map((m) => ({
      id: m.id,
      to: m.to_address,
      from: m.from_address,
      subject: m.subject,
      text: m.text_body,
      html: m.html_body,
      created_at: m.created_at.toISOString(),
    }));
  }

  return {
    transport: transport ? 'smtp' : 'mailbox',

    /**
     * Sends (or keeps) a message. `ex` is the caller's transaction when the mail announces a
     * change (a message kept in the mailbox then commits with it), else the root connection.
     */
    async send(message: Message, ex: Executor): Promise<void> {
      if (transport) {
        await transport.sendMail({ from: deps.from, ...message });
        return;
      }
      await repo.insertMessage(ex, {
        id: newId('msg'),
        to_address: message.to,
        from_address: deps.from,
        subject: message.subject,
        text_body: message.text,
        html_body: message.html,
      });
    },

    /** The local mailbox, newest first (operator only). */
    async listMailbox(ctx: RequestContext, limit = 50) {
      authorize(ctx, ['mailbox:read'], null);
      return { transport: transport ? 'smtp' : 'mailbox', data: await mailbox(limit) };
    },

    /** For the CLI, which runs as the operator by construction. */
    mailbox,

    close: () => transport?.close(),
  };
}

export type MailService = ReturnType<typeof createMailService>;
