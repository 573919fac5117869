import type { Selectable } from 'kysely';
import type { Executor } from '../../db/client.js';
import type { MailboxMessagesTable } from '../../db/schema.js';

// The `mailbox_messages` table's SQL: the local mailbox.

export type MailboxRow = Selectable<MailboxMessagesTable>;

/** The newest `limit` messages, newest first. */
export async function findMessages(db: Executor, limit: number): Promise<MailboxRow[]> {
  return db.selectFrom('mailbox_messages').selectAll().orderBy('id', 'desc').limit(limit).execute();
}

export async function insertMessage(db: Executor, row: Omit<MailboxRow, 'created_at'>): Promise<void> {
  await db.insertInto('mailbox_messages').values(row).execute();
}
