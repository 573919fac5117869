import nodemailer from 'nodemailer';
import type { Db, Executor } from '../../db/client.js';
import { authorize, type RequestContext } from '../../lib/authz.js';
import { newId } from '../../lib/ids.js';

export interface Message {
  to: string;
  subject: string;
  text: string;
  html: string;
}

/**
 * Outgoing mail. With SMTP_URL it goes out over SMTP; without it the embedded default keeps each
 * message in a local mailbox (`GET /api/dev/mailbox`, `orgbase mailbox`), so a fresh install can
 * invite people without any setup.
 */
export function createMailService(deps: { db: Db; smtpUrl: string | undefined; from: string }) {
  const transport = deps.smtpUrl ? nodemailer.createTransport(deps.smtpUrl) : undefined;

  async function mailbox(limit: number) {
    const rows = await deps.db
      .selectFrom('mailbox_messages')
      .selectAll()
      .orderBy('id', 'desc')
      .limit(limit)
      .execute();
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
     * Sends (or keeps) a message. Pass the caller's transaction so that a message kept in the
     * mailbox commits with the change it announces.
     */
    async send(message: Message, ex: Executor = deps.db): Promise<void> {
      if (transport) {
        await transport.sendMail({ from: deps.from, ...message });
        return;
      }
      await ex
        .insertInto('mailbox_messages')
        .values({
          id: newId('msg'),
          to_address: message.to,
          from_address: deps.from,
          subject: message.subject,
          text_body: message.text,
          html_body: message.html,
        })
        .execute();
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
