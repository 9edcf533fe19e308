//! Logging out: the refresh cookie's session ends (README, "Endpoints":
//! `POST /logout`). Logging out must never be harder than staying in.

use crate::auth::{ApiError, Auth, BrowserCookies, ClientInfo, SetCookies};
use crate::store::RevokeReason;

impl Auth {
    /// Ends the session of every genuine refresh cookie the browser sent
    /// (one planted beside the real one cannot shield it), and answers with
    /// the cookie that makes the browser forget its refresh token. Without
    /// a cookie there is nothing to end, and it still succeeds.
    pub async fn log_out(
        &self,
        cookies: &BrowserCookies,
        client: &ClientInfo,
    ) -> Result<SetCookies, ApiError> {
        for token in cookies.refresh.clone().all() {
            self.end_session(&token, RevokeReason::Logout, client)
                .await?;
        }
        Ok(self.clearing_cookies())
    }

    /// Ends the session a refresh token belongs to, if the token is genuine.
    /// Expired or superseded tokens still end their session.
    pub(crate) async fn end_session(
        &self,
        token: &str,
        reason: RevokeReason,
        client: &ClientInfo,
    ) -> Result<(), ApiError> {
        let Ok(claims) = self.token_keys().verify_refresh(token) else {
            return Ok(());
        };
        if self
            .store()
            .revoke_session(&claims.sid, None, reason, self.now())
            .await?
        {
            self.sessions_ended(reason, 1, client, |event| {
                let event = event.session(&claims.sid);
                match claims.sub.parse() {
                    Ok(id) => event.user_id(id),
                    Err(_) => event,
                }
            })
            .await;
        }
        Ok(())
    }
}
