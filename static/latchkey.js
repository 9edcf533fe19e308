// latchkey.js: a small, dependency-free browser client for latchkey.
//
//   import { createClient } from './latchkey.js';
//   const auth = createClient({
//     baseUrl: 'https://auth.example.com',
//     apiOrigins: ['https://api.example.com'],
//   });
//   auth.onSessionEnd((reason) => location.assign('/login'));
//   if (await auth.resume()) {
//     const response = await auth.fetch('https://api.example.com/orders');
//   }
//
// `auth.fetch` adds the Bearer token only to requests for latchkey's own
// origin (`baseUrl`, or this page's origin when it is empty) and for the
// origins listed in `apiOrigins`: the URL is resolved against the page and
// its origin compared exactly (scheme, host and port). Any other URL is
// fetched as plain `fetch` would, without the token and without the refresh
// and retry on a 401, so a link to a third party, an image host or an
// attacker-chosen URL never receives it.
//
// The access token lives only in this module's memory: never in
// localStorage, sessionStorage or a readable cookie. The refresh token lives in
// latchkey's HttpOnly cookie, which this code can neither read nor needs to.
//
// Step-up (RFC 9470): an action that needs a recent password answers 401 with
// `WWW-Authenticate: Bearer error="insufficient_user_authentication",
// max_age=N`. `auth.fetch` hands that answer back as it is (a refresh would
// not help), `stepUpChallenge(response)` reads it, and
// `auth.reauthenticate(password)` answers it; then retry the action.
//
// Refreshes are single-flight: within a tab through one shared promise, and
// across the tabs of an origin through the Web Locks API, with the new access
// token shared over a BroadcastChannel so the other tabs need not refresh at
// all. Where Web Locks are missing, tabs refresh independently; latchkey's
// grace window (REFRESH_REUSE_GRACE) makes that safe.
//
// A `POST /token` answered 429 (more than MAX_REFRESHES_PER_MINUTE for the
// session) or 503 (the database is unavailable) is retried once its
// `Retry-After` has passed, never sooner: until then `refresh()` rejects at
// once, without a request, with an Error whose `status`, `code` and
// `retryAfter` say why. The session is not ended: it is still good.

const CHANNEL = 'latchkey';
const LOCK = 'latchkey-refresh';

/** The origin of `url`, resolved against this page as `fetch` resolves it. */
function originOf(url) {
  return new URL(url, globalThis.location?.href).origin;
}

/**
 * The step-up challenge of a response (RFC 9470 §3), or null: `{ maxAge, acrValues }`, `maxAge`
 * in seconds when the action wants a password checked more recently, `acrValues` holding `mfa`
 * when it wants a second factor as well.
 */
export function stepUpChallenge(response) {
  if (response.status !== 401) return null;
  const challenge = response.headers.get('WWW-Authenticate') || '';
  if (!/error="insufficient_user_authentication"/.test(challenge)) return null;
  const maxAge = /max_age="?(\d+)"?/.exec(challenge);
  // `mfa`: the action wants a second factor too (reauthenticate with a code).
  const acrValues = /acr_values="([^"]*)"/.exec(challenge);
  return {
    maxAge: maxAge ? Number(maxAge[1]) : undefined,
    acrValues: acrValues ? acrValues[1].split(' ') : [],
  };
}

/**
 * The token of a reset or verification link, from this page's address (`#token=…`; links
 * carry it in the fragment so that it reaches no server's logs), which it then leaves.
 */
export function tokenFromLink() {
  const match = /(?:^#|&)token=([A-Za-z0-9_-]+)/.exec(window.location.hash);
  if (!match) return null;
  history.replaceState(null, '', window.location.pathname + window.location.search);
  return match[1];
}

/** An Error for a refusal: `code` is latchkey's error code, `retryAfter` its `Retry-After`. */
async function refusal(response, what) {
  const body = await response.json().catch(() => ({}));
  const error = new Error(body.message || `${what} failed (${response.status})`);
  error.code = body.error;
  error.status = response.status;
  error.retryAfter = Number(response.headers.get('Retry-After')) || undefined;
  return error;
}

/** An `apiOrigins` entry as an origin; a path, query or opaque origin is a mistake worth an error. */
function exactOrigin(origin) {
  const url = new URL(origin);
  if (url.origin === 'null' || url.href !== `${url.origin}/`) {
    throw new TypeError(`latchkey: apiOrigins wants origins such as https://api.example.com, not ${origin}`);
  }
  return url.origin;
}

/**
 * @param {object} [options]
 * @param {string} [options.baseUrl]  latchkey's origin; '' for the same origin.
 * @param {string[]} [options.apiOrigins]  other origins `auth.fetch` sends the access token to
 *   (exact origins such as 'https://api.example.com'); latchkey's own is always included.
 * @param {number} [options.refreshLeeway]  seconds before expiry to refresh (default: a quarter
 *   of the token's lifetime, at most 60).
 */
export function createClient({ baseUrl = '', apiOrigins = [], refreshLeeway } = {}) {
  const base = baseUrl.replace(/\/+$/, '');
  // Credentials only go where they are needed: latchkey's own origin.
  const credentials = base ? 'include' : 'same-origin';
  const tokenOrigins = new Set([originOf(base || '/'), ...apiOrigins.map(exactOrigin)]);
  const channel = typeof BroadcastChannel === 'function' ? new BroadcastChannel(CHANNEL) : null;
  const endListeners = new Set();
  const tokenListeners = new Set();

  let accessToken = null;
  let expiresAt = 0; // ms since the epoch
  let lifetime = 0; // seconds
  let inflight = null;
  let timer = null;
  let backOff = null; // { until: ms since the epoch, error }

  function adopt(token, expiresInSeconds, expiresAtMs, { announce }) {
    accessToken = token;
    lifetime = expiresInSeconds;
    expiresAt = expiresAtMs;
    schedule();
    if (announce && channel) {
      channel.postMessage({ type: 'token', accessToken: token, expiresIn: expiresInSeconds, expiresAt: expiresAtMs });
    }
    for (const listener of tokenListeners) listener(claims());
  }

  function schedule() {
    clearTimeout(timer);
    if (!accessToken) return;
    const leeway = refreshLeeway ?? Math.min(60, lifetime / 4);
    const delay = Math.max(0, expiresAt - leeway * 1000 - Date.now());
    timer = setTimeout(() => {
      refresh().catch(() => {});
    }, delay);
  }

  // Only a session this tab knew of can end: finding no session at `resume()`
  // is an answer (false), not an event.
  function end(reason, { announce }) {
    const wasLive = accessToken !== null;
    accessToken = null;
    expiresAt = 0;
    clearTimeout(timer);
    if (announce && channel && wasLive) channel.postMessage({ type: 'ended', reason });
    if (wasLive) for (const listener of endListeners) listener(reason);
  }

  async function requestToken() {
    if (backOff && Date.now() < backOff.until) throw backOff.error;
    backOff = null;
    let response;
    try {
      response = await fetch(`${base}/token`, { method: 'POST', credentials });
    } catch (error) {
      // Offline or unreachable: the session may well be fine; try again soon.
      clearTimeout(timer);
      timer = setTimeout(() => refresh().catch(() => {}), 5000);
      throw error;
    }
    if (response.ok) {
      const body = await response.json();
      adopt(body.access_token, body.expires_in, Date.now() + body.expires_in * 1000, { announce: true });
      return accessToken;
    }
    if (response.status === 401) {
      const body = await response.json().catch(() => ({}));
      end(body.error || 'session_ended', { announce: true });
      return null;
    }
    if (response.status === 429 || response.status === 503) {
      // Told to come back later: not before then, and then by itself.
      const error = await refusal(response, 'POST /token');
      const seconds = error.retryAfter ?? 1;
      backOff = { until: Date.now() + seconds * 1000, error };
      clearTimeout(timer);
      timer = setTimeout(() => refresh().catch(() => {}), seconds * 1000);
      throw error;
    }
    throw new Error(`latchkey: POST /token answered ${response.status}`);
  }

  /** Gets a fresh access token; concurrent callers share one request. */
  function refresh() {
    if (inflight) return inflight;
    const before = expiresAt;
    const work = async () => {
      // Another tab may have refreshed while this one waited for the lock.
      if (accessToken && expiresAt > before && expiresAt - Date.now() > 5000) return accessToken;
      return requestToken();
    };
    const locks = typeof navigator !== 'undefined' ? navigator.locks : undefined;
    inflight = (locks ? locks.request(LOCK, work) : work()).finally(() => {
      inflight = null;
    });
    return inflight;
  }

  if (channel) {
    channel.onmessage = ({ data }) => {
      if (data?.type === 'token' && data.expiresAt > expiresAt) {
        adopt(data.accessToken, data.expiresIn, data.expiresAt, { announce: false });
      } else if (data?.type === 'ended') {
        end(data.reason, { announce: false });
      }
    };
  }

  function claims() {
    if (!accessToken) return null;
    try {
      const payload = accessToken.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
      return JSON.parse(atob(payload));
    } catch {
      return null;
    }
  }

  async function validToken() {
    if (accessToken && expiresAt - Date.now() > 5000) return accessToken;
    return refresh();
  }

  /**
   * `fetch` with the Bearer token; on a 401 it refreshes once and retries, except on a step-up
   * challenge. Only for latchkey's origin and `apiOrigins`: any other URL is fetched as it is,
   * without the token.
   */
  async function authFetch(input, init = {}) {
    if (!tokenOrigins.has(originOf(input instanceof Request ? input.url : String(input)))) {
      return fetch(input, init);
    }
    const send = async (token) => {
      const headers = new Headers(init.headers || (input instanceof Request ? input.headers : undefined));
      if (token) headers.set('Authorization', `Bearer ${token}`);
      const request = input instanceof Request ? input.clone() : input;
      return fetch(request, { ...init, headers });
    };
    const token = await validToken();
    const response = await send(token);
    // A step-up challenge wants the password, which a refresh cannot give.
    if (response.status !== 401 || !token || stepUpChallenge(response)) return response;
    const fresh = await refresh();
    return fresh ? send(fresh) : response;
  }

  /** A call of the account's own endpoints; the JSON answer, or an Error with `maxAge` for a step-up. */
  async function accountCall(method, path, json, what) {
    const init = { method, credentials };
    if (json !== undefined) {
      init.headers = { 'Content-Type': 'application/json' };
      init.body = JSON.stringify(json);
    }
    const response = await authFetch(`${base}${path}`, init);
    if (response.ok) return response.status === 204 ? {} : response.json();
    const challenge = stepUpChallenge(response);
    const error = await refusal(response, what);
    if (challenge) Object.assign(error, challenge);
    throw error;
  }

  return {
    /**
     * Signs in; resolves to true, or to `{ secondFactorRequired: true, factors }` when the
     * account has a second factor (then `verifySecondFactor`), or to
     * `{ enrollmentRequired: true, totp: { secret, otpauthUri, qrSvg } }` when the account's role
     * requires one it has not set up (show the QR code, then `verifySecondFactor({ code })` with a
     * code of it), or throws an Error whose `code` is latchkey's error code.
     * `remember: false` ("Keep me signed in" unticked) makes the refresh cookie last only as long
     * as the browser, and the session end sooner when unused.
     */
    async login(username, password, { remember = true } = {}) {
      const response = await fetch(`${base}/login`, {
        method: 'POST',
        credentials,
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({ username, password, remember }),
      });
      if (response.status === 401) {
        const body = await response.clone().json().catch(() => ({}));
        // The password was right; the account has a second factor: call
        // `verifySecondFactor` within five minutes.
        if (body.error === 'second_factor_required') {
          return { secondFactorRequired: true, factors: body.factors ?? [] };
        }
        if (body.error === 'second_factor_enrollment_required' && body.totp) {
          const { secret, otpauth_uri: otpauthUri, qr_svg: qrSvg } = body.totp;
          return { enrollmentRequired: true, totp: { secret, otpauthUri, qrSvg } };
        }
      }
      if (!response.ok) throw await refusal(response, 'login');
      const body = await response.json();
      adopt(body.access_token, body.expires_in, Date.now() + body.expires_in * 1000, { announce: true });
      return true;
    },

    /**
     * The second step of a login that answered `{ secondFactorRequired: true }`:
     * `{ code }` from the authenticator app, or `{ recoveryCode }`. Resolves to true once signed
     * in, or, when it set the factor up (`enrollmentRequired`), to `{ recoveryCodes }` to show
     * once; throws an Error whose `code` is `invalid_code` (wrong, used, or the login expired:
     * call `login` again) or `too_many_attempts`.
     */
    async verifySecondFactor({ code, recoveryCode } = {}) {
      const response = await fetch(`${base}/login/second-factor`, {
        method: 'POST',
        credentials,
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify(code ? { code } : { recovery_code: recoveryCode }),
      });
      if (!response.ok) throw await refusal(response, 'second factor');
      const body = await response.json();
      adopt(body.access_token, body.expires_in, Date.now() + body.expires_in * 1000, { announce: true });
      return body.recovery_codes ? { recoveryCodes: body.recovery_codes } : true;
    },

    /**
     * Checks the password again (step-up): the new access token's `auth_time` is now, so actions
     * that want a recent password go through. An account with a second factor gives
     * `{ code }` (or `{ recoveryCode }`) too, or it throws `second_factor_required`. Throws like
     * `login` (`invalid_credentials`, `invalid_code`, `too_many_attempts`…).
     */
    async reauthenticate(password, { code, recoveryCode } = {}) {
      const token = await validToken();
      if (!token) throw Object.assign(new Error('not signed in'), { code: 'unauthenticated' });
      const response = await fetch(`${base}/reauthenticate`, {
        method: 'POST',
        credentials,
        headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${token}` },
        body: JSON.stringify({ password, code, recovery_code: recoveryCode }),
      });
      if (!response.ok) {
        const error = await refusal(response, 'reauthentication');
        // The session itself has ended: a refresh finds out and tells the app
        // (never a second try of the password).
        if (error.code === 'invalid_token') await refresh().catch(() => {});
        throw error;
      }
      const body = await response.json();
      adopt(body.access_token, body.expires_in, Date.now() + body.expires_in * 1000, { announce: true });
      return true;
    },

    /**
     * Deletes the account, for good, and ends the session in every tab. Needs a recent password:
     * otherwise it throws an Error whose `code` is `insufficient_user_authentication` (and
     * `maxAge` says how recent); `reauthenticate(password)`, then call it again.
     */
    async deleteAccount() {
      const response = await authFetch(`${base}/me`, { method: 'DELETE', credentials });
      if (response.status === 204) {
        end('account_deleted', { announce: true });
        return true;
      }
      const challenge = stepUpChallenge(response);
      const error = await refusal(response, 'account deletion');
      if (challenge) Object.assign(error, challenge);
      throw error;
    },

    /**
     * Asks for a password reset link for `login` (a username or a verified email address).
     * latchkey answers the same whoever it names, so this resolves alike for every name: the
     * link, if any, arrives by mail.
     */
    async forgotPassword(login) {
      const response = await fetch(`${base}/password/forgot`, {
        method: 'POST',
        credentials,
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({ login }),
      });
      if (response.status !== 202) throw await refusal(response, 'password reset request');
      return true;
    },

    /**
     * Sets a new password with the token of a reset link (`tokenFromLink()` reads it). Every
     * session of the account ends, this tab's included: sign in again with the new password.
     * Throws an Error whose `code` is `invalid_token` (unknown, used or expired link) or
     * `weak_password` (the link still works).
     */
    async resetPassword(token, password) {
      const response = await fetch(`${base}/password/reset`, {
        method: 'POST',
        credentials,
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({ token, password }),
      });
      if (response.status !== 204) throw await refusal(response, 'password reset');
      end('password_reset', { announce: true });
      return true;
    },

    /** Verifies an address with the token of its link (`tokenFromLink()` reads it too). */
    async verifyEmail(token) {
      const response = await fetch(`${base}/email/verify`, {
        method: 'POST',
        credentials,
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({ token }),
      });
      if (response.status !== 204) throw await refusal(response, 'email verification');
      return true;
    },

    /**
     * Asks to change the account's address: a link goes to `email`, which becomes the account's
     * once the link is used. Needs a recent password, as `deleteAccount` does
     * (`insufficient_user_authentication`, then `reauthenticate(password)`).
     */
    async changeEmail(email) {
      const response = await authFetch(`${base}/me/email`, {
        method: 'PUT',
        credentials,
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({ email }),
      });
      if (response.status === 202) return true;
      const challenge = stepUpChallenge(response);
      const error = await refusal(response, 'email change');
      if (challenge) Object.assign(error, challenge);
      throw error;
    },

    /**
     * Starts a TOTP enrolment: resolves to `{ secret, otpauth_uri, qr_svg }` for the user's
     * authenticator app. Needs a recent password (`insufficient_user_authentication`, then
     * `reauthenticate(password)`).
     */
    async enrollTotp() {
      return accountCall('POST', '/me/totp', undefined, 'enrolment');
    },

    /** Turns TOTP on with a current `code`; resolves to the ten recovery codes, shown once. */
    async confirmTotp(code) {
      const body = await accountCall('POST', '/me/totp/confirm', { code }, 'confirmation');
      return body.recovery_codes;
    },

    /**
     * Removes the second factor. Needs a recent step-up that used it:
     * `reauthenticate(password, { code })`, then call again.
     */
    async disableTotp() {
      await accountCall('DELETE', '/me/totp', undefined, 'removal');
      return true;
    },

    /** Ten new recovery codes in place of the old; needs a recent step-up with a code. */
    async regenerateRecoveryCodes() {
      const body = await accountCall('POST', '/me/recovery-codes', undefined, 'recovery codes');
      return body.recovery_codes;
    },

    /** Picks up the session of the refresh cookie, if any; resolves to true when signed in. */
    async resume() {
      return (await refresh()) !== null;
    },

    fetch: authFetch,

    /** Ends this session (the cookie is cleared) and tells the other tabs. */
    async logout() {
      await fetch(`${base}/logout`, { method: 'POST', credentials }).catch(() => {});
      end('logged_out', { announce: true });
    },

    /** Revokes every session of this user, on every device. */
    async logoutEverywhere() {
      const token = await validToken();
      if (token) {
        await fetch(`${base}/sessions`, {
          method: 'DELETE',
          credentials,
          headers: { Authorization: `Bearer ${token}` },
        });
      }
      await fetch(`${base}/logout`, { method: 'POST', credentials }).catch(() => {});
      end('logged_out_everywhere', { announce: true });
    },

    /**
     * Calls `listener(reason)` when the session ends: expired, revoked, reused, logged out,
     * account deleted.
     */
    onSessionEnd(listener) {
      endListeners.add(listener);
      return () => endListeners.delete(listener);
    },

    /** Calls `listener(claims)` whenever a new access token arrives. */
    onToken(listener) {
      tokenListeners.add(listener);
      return () => tokenListeners.delete(listener);
    },

    /** The current access token's claims (`sub`, `username`, `role`, `sid`, `exp`, `auth_time`…), or null. */
    get user() {
      return claims();
    },

    /** When the current access token expires (ms since the epoch), or 0. */
    get expiresAt() {
      return expiresAt;
    },

    refresh,
  };
}
