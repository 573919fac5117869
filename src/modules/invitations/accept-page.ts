import { escapeHtml } from '../../lib/html.js';
import { displayName } from './invitation-email.js';

/**
 * The page an invitation e-mail links to, until the dashboard ships: shows what the invitation
 * is for and accepts it, either with the browser's session cookie or by creating the account.
 * Plain HTML; every value is escaped.
 */
export function acceptPage(p: {
  token: string;
  invitation?: {
    organization: { name: string; branding: Record<string, unknown> };
    email: string;
    role: string;
  };
  problem?: string;
  /** The response's CSP nonces: the page's inline script and style run only with them. */
  nonce?: { script: string; style: string } | null;
}): string {
  const nonce = (kind: 'script' | 'style') => (p.nonce ? ` nonce="${escapeHtml(p.nonce[kind])}"` : '');
  const colour =
    typeof p.invitation?.organization.branding.primary_color === 'string' &&
    /^#[0-9a-fA-F]{3,8}$/.test(p.invitation.organization.branding.primary_color)
      ? p.invitation.organization.branding.primary_color
      : '#4f46e5';
  const body = p.invitation
    ? `<h1>Join ${escapeHtml(displayName(p.invitation.organization))}</h1>
<p>This invitation is for <strong>${escapeHtml(p.invitation.email)}</strong>, as <strong>${escapeHtml(p.invitation.role)}</strong>.</p>
<form id="f">
<p><label>Your name<br><input name="name" required maxlength="200" autocomplete="name"></label></p>
<p><label>Choose a password<br><input name="password" type="password" required minlength="8" maxlength="128" autocomplete="new-password"></label></p>
<p><button>Create my account and join</button></p>
</form>
<p><button id="signed-in" type="button">I already have an account and am signed in</button></p>
<p id="out" role="status"></p>
<script${nonce('script')}>
const token = ${JSON.stringify(p.token)};
async function accept(body) {
  const res = await fetch('/api/invitations/' + encodeURIComponent(token) + '/accept', {
    method: 'POST', credentials: 'same-origin', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  const data = await res.json();
  document.getElementById('out').textContent = res.ok ? 'Welcome aboard: you are now a member.' : (data.detail || 'Something went wrong');
}
document.getElementById('f').addEventListener('submit', (e) => { e.preventDefault(); const d = new FormData(e.target); accept({ name: d.get('name'), password: d.get('password') }); });
document.getElementById('signed-in').addEventListener('click', () => accept({}));
</script>`
    : `<h1>This invitation cannot be used</h1><p>${escapeHtml(p.problem ?? 'It has expired, was revoked or was already used.')}</p>`;
  return `<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>Invitation</title><style${nonce('style')}>body{font-family:system-ui,sans-serif;max-width:32rem;margin:3rem auto;padding:0 1rem;border-top:4px solid ${colour}}button{background:${colour};color:#fff;border:0;padding:.6rem 1rem;border-radius:6px}input{width:100%;padding:.4rem}</style>
</head><body>${body}</body></html>`;
}
