import { escapeHtml } from '../../lib/html.js';

/** The invitation e-mail, branded with the inviting organization's name, logo and colour. */
const HEX = /^#[0-9a-fA-F]{3,8}$/;

/** The name an organization's mail and pages show: its customized display name, else its name (white-label). */
export function displayName(org: { name: string; branding: Record<string, unknown> }): string {
  const custom = org.branding.display_name;
  return typeof custom === 'string' && custom ? custom : org.name;
}

export function invitationEmail(p: {
  organization: { name: string; branding: Record<string, unknown> };
  role: string;
  inviter: string | null;
  acceptUrl: string;
  apiUrl: string;
}): { subject: string; text: string; html: string } {
  const { branding } = p.organization;
  const name = displayName(p.organization);
  const colour =
    typeof branding.primary_color === 'string' && HEX.test(branding.primary_color)
      ? branding.primary_color
      : '#4f46e5';
  const logo =
    typeof branding.logo_url === 'string' && /^https:\/\//.test(branding.logo_url) ? branding.logo_url : null;
  const who = p.inviter ? `${p.inviter} invited you` : 'You are invited';
  const subject = `${who} to join ${name}`;
  const text = [
    `${who} to join ${name} as ${p.role}.`,
    '',
    `Accept: ${p.acceptUrl}`,
    `(API: POST ${p.apiUrl})`,
    '',
    'The invitation expires in 7 days. If you did not expect it, ignore this message.',
  ].join('\n');
  const html = `<!doctype html><html><body style="font-family:system-ui,sans-serif;color:#111">
<div style="max-width:480px;margin:24px auto;border-top:4px solid ${colour};padding:24px">
${logo ? `<img src="${escapeHtml(logo)}" alt="${escapeHtml(name)}" style="max-height:48px;margin-bottom:16px">` : ''}
<h1 style="font-size:20px">${escapeHtml(who)} to join ${escapeHtml(name)}</h1>
<p>You will join as <strong>${escapeHtml(p.role)}</strong>.</p>
<p><a href="${escapeHtml(p.acceptUrl)}" style="display:inline-block;background:${colour};color:#fff;padding:10px 18px;border-radius:6px;text-decoration:none">Accept the invitation</a></p>
<p style="color:#666;font-size:13px">The invitation expires in 7 days. If you did not expect it, ignore this message.</p>
</div></body></html>`;
  return { subject, text, html };
}
