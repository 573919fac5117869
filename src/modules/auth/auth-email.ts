/** The account mails: a password reset and an email verification. Plain, every value escaped. */
import { escapeHtml } from '../../lib/html.js';

function page(title: string, paragraphs: string[]): string {
  return `<!doctype html><html><body style="font-family:system-ui,sans-serif;color:#111">
<div style="max-width:480px;margin:24px auto;border-top:4px solid #4f46e5;padding:24px">
<h1 style="font-size:20px">${escapeHtml(title)}</h1>
${paragraphs.map((p) => `<p>${p}</p>`).join('\n')}
</div></body></html>`;
}

/**
 * The reset mail carries the token and how to use it over the API; `link` is the page the client
 * asked Better Auth to send people to (`redirectTo`), if any.
 */
export function resetPasswordEmail(p: { email: string; token: string; apiUrl: string; link: string | null }) {
  const subject = 'Reset your Orgbase password';
  const call = `POST ${p.apiUrl} {"token": "${p.token}", "newPassword": "…"}`;
  const text = [
    `Someone asked to reset the password of the Orgbase account ${p.email}.`,
    '',
    ...(p.link ? [`Choose a new password: ${p.link}`, ''] : []),
    `Reset token: ${p.token}`,
    `(API: ${call})`,
    '',
    'The token works once, within an hour, and signs out every session of the account.',
    'If you did not ask for it, ignore this message: your password stays as it is.',
  ].join('\n');
  const html = page(subject, [
    `Someone asked to reset the password of the Orgbase account <strong>${escapeHtml(p.email)}</strong>.`,
    ...(p.link ? [`<a href="${escapeHtml(p.link)}">Choose a new password</a>`] : []),
    `Reset token: <code>${escapeHtml(p.token)}</code><br>API: <code>${escapeHtml(call)}</code>`,
    'The token works once, within an hour, and signs out every session of the account. If you did not ask for it, ignore this message.',
  ]);
  return { subject, text, html };
}

export function verificationEmail(p: { email: string; url: string }) {
  const subject = 'Confirm your email address for Orgbase';
  const text = [
    `Confirm that ${p.email} is your address: ${p.url}`,
    '',
    'If you did not create an Orgbase account, ignore this message.',
  ].join('\n');
  const html = page(subject, [
    `Confirm that <strong>${escapeHtml(p.email)}</strong> is your address:`,
    `<a href="${escapeHtml(p.url)}">Confirm my email address</a>`,
    'If you did not create an Orgbase account, ignore this message.',
  ]);
  return { subject, text, html };
}
