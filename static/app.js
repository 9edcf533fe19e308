// The /app demo: trade the refresh cookie for an access token, call an API
// with it, and refresh before it expires. The access token lives only in this
// module's memory.

let accessToken = null;
let expiresAt = 0;
let refreshTimer = null;

const $ = (id) => document.getElementById(id);

async function refresh() {
  const response = await fetch('/token', { method: 'POST', credentials: 'same-origin' });
  if (!response.ok) {
    sessionOver();
    return false;
  }
  const body = await response.json();
  accessToken = body.access_token;
  expiresAt = Date.now() + body.expires_in * 1000;
  clearTimeout(refreshTimer);
  // Refresh a little before expiry (at 80% of the lifetime).
  refreshTimer = setTimeout(refresh, Math.max(1000, body.expires_in * 800));
  return true;
}

async function callProtected() {
  const response = await fetch('/protected', {
    headers: { Authorization: `Bearer ${accessToken}` },
  });
  const body = await response.json();
  $('protected').textContent = JSON.stringify(body, null, 2);
  if (response.ok) {
    $('username').textContent = body.user.username;
    $('who').hidden = false;
    $('status').textContent = 'Signed in. The refresh token stays in an HttpOnly cookie.';
  }
}

function sessionOver() {
  accessToken = null;
  clearTimeout(refreshTimer);
  $('status').textContent = 'Your session has ended. Taking you to the sign-in page…';
  setTimeout(() => window.location.assign('/login?next=/app'), 1200);
}

function tick() {
  if (accessToken) {
    $('countdown').textContent = Math.max(0, Math.round((expiresAt - Date.now()) / 1000));
  }
}

async function start() {
  if (await refresh()) {
    await callProtected();
    setInterval(tick, 1000);
    tick();
  }
}

start();
