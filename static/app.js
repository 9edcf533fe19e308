// The /app demo, built on the browser client (latchkey.js) that SPAs can use:
// resume the session from the refresh cookie, call an API with the access
// token, keep it fresh, list and revoke sessions, log out, and delete the
// account, asking for the password again when it was last entered too long
// ago (step-up).

import { createClient } from './latchkey.js';

// Where latchkey is mounted ('' at the root, '/auth' when an app nests it
// there): this script is served from `<mount>/static/app.js`.
const base = new URL('..', import.meta.url).pathname.replace(/\/$/, '');
const auth = createClient({ baseUrl: base });
const $ = (id) => document.getElementById(id);

const REASONS = {
  logged_out: 'You have logged out.',
  logged_out_everywhere: 'You have logged out on every device.',
  refresh_token_reused: 'Your session was ended because an old refresh token was used again.',
  invalid_refresh_token: 'Your session has ended (it expired or was revoked).',
  missing_refresh_token: 'You are not signed in.',
  account_deleted: 'Your account has been deleted.',
};

auth.onSessionEnd((reason) => {
  $('status').textContent = `${REASONS[reason] ?? 'Your session has ended.'} Taking you to the sign-in page…`;
  $('status').classList.add('ended');
  $('who').hidden = true;
  const quick = reason === 'logged_out' || reason === 'logged_out_everywhere';
  setTimeout(() => window.location.assign(`${base}/login?next=${base}/app`), quick ? 0 : 1500);
});

auth.onToken((claims) => {
  if (!claims) return;
  $('username').textContent = claims.username;
  $('role').textContent = claims.role;
  $('who').hidden = false;
  $('status').textContent = 'Signed in. The refresh token stays in an HttpOnly cookie; the access token only in memory.';
  // Show that each new access token works, and keep the sessions list current.
  callProtected();
  loadSessions();
  if ($('email-section')) loadEmail();
});

async function loadEmail() {
  const response = await auth.fetch(`${base}/me`);
  if (!response.ok) return;
  const me = await response.json();
  $('email-current').textContent = me.email
    ? `${me.email} (${me.email_verified ? 'verified: it signs in and gets reset links' : 'not verified yet'})`
    : 'None: add one to be able to reset a forgotten password.';
}

// Changing the address wants a recent password, as deleting the account does:
// the password field shows when latchkey asks for it.
$('email-form')?.addEventListener('submit', async (event) => {
  event.preventDefault();
  $('email-error').hidden = true;
  $('email-sent').hidden = true;
  const email = $('email-new').value;
  try {
    const password = $('email-password').value;
    if (!$('email-step-up').hidden && password) {
      await auth.reauthenticate(password);
      $('email-password').value = '';
      $('email-step-up').hidden = true;
    }
    await auth.changeEmail(email);
    $('email-sent').textContent = `A link is on its way to ${email}: the address becomes yours once you open it.`;
    $('email-sent').hidden = false;
  } catch (error) {
    if (error.code === 'insufficient_user_authentication') {
      $('email-step-up').hidden = false;
      $('email-password').required = true;
      $('email-password').focus();
      $('email-error').textContent = 'For this, enter your password again.';
    } else {
      $('email-error').textContent = error.message;
    }
    $('email-error').hidden = false;
  }
});

async function callProtected() {
  const response = await auth.fetch(`${base}/protected`);
  const body = await response.json().catch(() => ({}));
  $('protected').textContent = JSON.stringify(body, null, 2);
  $('protected-at').textContent = `Status ${response.status} at ${new Date().toLocaleTimeString()}`;
}

function describeDevice(userAgent) {
  if (!userAgent) return 'Unknown device';
  const browser = [
    [/Edg\//, 'Edge'], [/OPR\//, 'Opera'], [/Firefox\//, 'Firefox'],
    [/Chrom(e|ium)\//, 'Chrome'], [/Safari\//, 'Safari'], [/curl\//, 'curl'],
  ].find(([re]) => re.test(userAgent))?.[1] ?? 'A browser';
  const os = [
    [/Android/, 'Android'], [/iPhone|iPad/, 'iOS'], [/Mac OS X/, 'macOS'],
    [/Windows/, 'Windows'], [/Linux/, 'Linux'],
  ].find(([re]) => re.test(userAgent))?.[1];
  return os ? `${browser} on ${os}` : browser;
}

async function loadSessions() {
  const response = await auth.fetch(`${base}/sessions`);
  if (!response.ok) return;
  const sessions = await response.json();
  const list = $('sessions');
  list.replaceChildren(...sessions.map((s) => {
    const item = document.createElement('li');
    item.className = 'session';
    item.dataset.sessionId = s.id;
    const text = document.createElement('div');
    const title = document.createElement('strong');
    title.textContent = describeDevice(s.user_agent);
    text.append(title);
    if (s.current) {
      const badge = document.createElement('span');
      badge.className = 'badge';
      badge.textContent = 'this device';
      text.append(' ', badge);
    }
    const meta = document.createElement('div');
    meta.className = 'hint';
    const kept = s.remembered ? 'kept signed in' : 'until the browser closes';
    meta.textContent = `${s.ip ?? 'unknown address'} · last used ${new Date(s.last_used_at).toLocaleString()} · ${kept}`;
    text.append(meta);
    const revoke = document.createElement('button');
    revoke.type = 'button';
    revoke.className = 'secondary small';
    revoke.textContent = 'Revoke';
    revoke.setAttribute('aria-label', `Revoke ${title.textContent}${s.current ? ' (this device)' : ''}`);
    revoke.addEventListener('click', async () => {
      await auth.fetch(`${base}/sessions/${encodeURIComponent(s.id)}`, { method: 'DELETE' });
      if (s.current) await auth.logout();
      else await loadSessions();
    });
    item.append(text, revoke);
    return item;
  }));
  if (sessions.length === 0) list.textContent = 'No active sessions.';
}

function tick() {
  if (!auth.expiresAt) return;
  $('countdown').textContent = Math.max(0, Math.round((auth.expiresAt - Date.now()) / 1000));
}

$('call').addEventListener('click', () => callProtected());
$('refresh-now').addEventListener('click', () => auth.refresh());
$('logout-form').addEventListener('submit', (event) => {
  event.preventDefault();
  auth.logout();
});
$('logout-everywhere').addEventListener('click', () => auth.logoutEverywhere());

// Deleting the account: confirm, then delete; when latchkey asks for a recent
// password (step-up), ask for it, re-authenticate, and delete.
function showDeleteStep(step) {
  $('delete-start').hidden = step !== 'start';
  $('delete-confirm').hidden = step !== 'confirm';
  $('step-up').hidden = step !== 'step-up';
  if (step === 'step-up') $('step-up-password').focus();
}

function showDeleteError(message) {
  $('delete-error').textContent = message ?? '';
  $('delete-error').hidden = !message;
}

async function deleteAccount() {
  showDeleteError(null);
  try {
    await auth.deleteAccount();
  } catch (error) {
    if (error.code === 'insufficient_user_authentication') {
      const minutes = error.maxAge ? Math.round(error.maxAge / 60) : null;
      $('step-up-reason').textContent = minutes
        ? `You last entered your password more than ${minutes} minutes ago. Enter it again to delete your account.`
        : 'Enter your password again to delete your account.';
      showDeleteStep('step-up');
    } else {
      showDeleteError(error.message);
    }
  }
}

$('delete-account').addEventListener('click', () => showDeleteStep('confirm'));
$('delete-cancel').addEventListener('click', () => showDeleteStep('start'));
$('step-up-cancel').addEventListener('click', () => {
  $('step-up-password').value = '';
  showDeleteStep('start');
});
$('delete-for-good').addEventListener('click', () => deleteAccount());
$('step-up').addEventListener('submit', async (event) => {
  event.preventDefault();
  const password = $('step-up-password').value;
  $('step-up-password').value = '';
  try {
    await auth.reauthenticate(password);
  } catch (error) {
    showDeleteError(error.message);
    return;
  }
  await deleteAccount();
});

if (await auth.resume()) {
  setInterval(tick, 250);
  tick();
} else {
  // No live session behind the cookie (expired, revoked, or none at all).
  window.location.assign(`${base}/login?next=${base}/app`);
}

// The second factor: a secret for the authenticator app (its QR code drawn
// by the server), turned on by a code from the app; the recovery codes are
// shown once.
$('totp-enroll')?.addEventListener('click', async () => {
  $('totp-error').hidden = true;
  try {
    const enrolment = await auth.enrollTotp();
    $('totp-secret').textContent = enrolment.secret;
    $('totp-qr').src = `data:image/svg+xml;charset=utf-8,${encodeURIComponent(enrolment.qr_svg)}`;
    $('totp-confirm-form').hidden = false;
    $('totp-start').hidden = true;
    $('totp-code').focus();
  } catch (error) {
    $('totp-error').textContent = error.code === 'insufficient_user_authentication'
      ? 'For this, sign in again: your password was entered too long ago.'
      : error.message;
    $('totp-error').hidden = false;
  }
});

$('totp-confirm-form')?.addEventListener('submit', async (event) => {
  event.preventDefault();
  $('totp-error').hidden = true;
  try {
    const codes = await auth.confirmTotp($('totp-code').value.trim());
    $('totp-codes').replaceChildren(...codes.map((code) => {
      const item = document.createElement('li');
      item.textContent = code;
      return item;
    }));
    $('totp-confirm-form').hidden = true;
    $('totp-codes-box').hidden = false;
    $('totp-status').textContent = 'On: sign-ins ask for a code after the password.';
  } catch (error) {
    $('totp-error').textContent = error.message;
    $('totp-error').hidden = false;
  }
});
