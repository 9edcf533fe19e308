//! `GET /dev/outbox`: in development without `SMTP_URL`, the mail latchkey
//! wrote to `MAIL_OUTBOX_DIR` instead of sending it, as a page with each
//! mail's link, so the whole recovery flow runs in a browser with nothing
//! set up (README, "Mail"). Routed only then (`routes/mod.rs`), and shown
//! only to a client on this machine: the links in it sign people in.

use std::path::Path;

use askama::Template;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::{ApiError, Auth, ClientInfo};
use crate::config::MailTransport;
use crate::routes::error::ErrorBody;
use crate::routes::extract::Base;
use crate::routes::pages::render;

/// The newest mails shown.
const SHOWN: usize = 50;

/// Mails larger than this are left out (latchkey writes none so large).
const LARGEST: u64 = 256 * 1024;

pub(crate) fn router() -> OpenApiRouter<Auth> {
    OpenApiRouter::new().routes(routes!(outbox))
}

struct Mail {
    time: String,
    to: String,
    subject: String,
    link: Option<String>,
    link_text: String,
}

#[derive(Template)]
#[template(path = "outbox.html")]
struct OutboxPage<'a> {
    base: &'a str,
    dir: String,
    mails: Vec<Mail>,
}

/// The development outbox: each mail's time, recipient, subject and link.
#[utoipa::path(
    get, path = "/dev/outbox", tag = "pages", operation_id = "outbox_page",
    responses(
        (status = 200, description = "The mails written so far, newest first", body = String,
            content_type = "text/html"),
        (status = 404, description = "`not_found`: asked from another machine (the page is \
            routed only in development without `SMTP_URL`)",
            body = ErrorBody),
    )
)]
async fn outbox(
    State(auth): State<Auth>,
    client: ClientInfo,
    base: Base,
) -> Result<Response, ApiError> {
    let MailTransport::Outbox(dir) = &auth.config().mail.transport else {
        return Err(ApiError::NotFound);
    };
    let here = client
        .ip
        .as_deref()
        .and_then(|ip| ip.parse::<std::net::IpAddr>().ok())
        .is_some_and(|ip| ip.is_loopback());
    if !here {
        return Err(ApiError::NotFound);
    }
    let dir = dir.clone();
    let mails = tokio::task::spawn_blocking({
        let dir = dir.clone();
        move || read_outbox(&dir)
    })
    .await
    .unwrap_or_default();
    let page = OutboxPage {
        base: &base.0,
        dir: dir.display().to_string(),
        mails,
    };
    Ok(render(StatusCode::OK, &page))
}

/// The newest [`SHOWN`] mails in `dir`; none when it does not exist yet.
fn read_outbox(dir: &Path) -> Vec<Mail> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<_> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "eml"))
        .collect();
    // Named by the time they were written, in milliseconds.
    files.sort();
    files.reverse();
    files.truncate(SHOWN);
    files.iter().filter_map(|path| read_mail(path)).collect()
}

fn read_mail(path: &Path) -> Option<Mail> {
    let millis: i64 = path
        .file_stem()?
        .to_str()?
        .split('-')
        .next()?
        .parse()
        .ok()?;
    let time = crate::clock::rfc3339(millis / 1000);
    if std::fs::metadata(path).ok()?.len() > LARGEST {
        return None;
    }
    let raw = std::fs::read_to_string(path).ok()?;
    let (head, body) = raw
        .split_once("\r\n\r\n")
        .or_else(|| raw.split_once("\n\n"))?;
    // Folded header lines go on with whitespace (RFC 5322 §2.2.3).
    let head = head.replace("\r\n ", " ").replace("\r\n\t", " ");
    let header = |name: &str| {
        head.lines()
            .find_map(|line| {
                let (key, value) = line.split_once(':')?;
                key.eq_ignore_ascii_case(name)
                    .then(|| value.trim().to_owned())
            })
            .unwrap_or_default()
    };
    let link = first_link(&quoted_printable(body));
    let link_text = link
        .as_deref()
        .and_then(|l| l.split_once("://").map(|(_, rest)| rest))
        .and_then(|rest| rest.find('/').map(|at| &rest[at..]))
        .map(|path| path.split('#').next().unwrap_or(path).to_owned())
        .unwrap_or_default();
    Some(Mail {
        time,
        to: header("To"),
        subject: header("Subject"),
        link,
        link_text,
    })
}

/// The first `http://` or `https://` link of a text.
fn first_link(text: &str) -> Option<String> {
    let at = text.find("https://").or_else(|| text.find("http://"))?;
    let link: String = text[at..]
        .chars()
        .take_while(|c| !c.is_whitespace() && !matches!(c, '"' | '<' | '>'))
        .collect();
    Some(link)
}

/// Undoes quoted-printable (RFC 2045 §6.7), which the mail's parts are
/// written in when their lines run long: soft line breaks and `=XX`.
fn quoted_printable(text: &str) -> String {
    let joined = text.replace("=\r\n", "").replace("=\n", "");
    let bytes = joined.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'=', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::{first_link, quoted_printable};

    #[test]
    fn a_link_is_found_in_quoted_printable_text() {
        let body = "open:\r\n\r\nhttp://127.0.0.1:3000/password/reset#token=3DabcDEF_-12=\r\n345\r\n\r\nthanks";
        assert_eq!(
            first_link(&quoted_printable(body)).as_deref(),
            Some("http://127.0.0.1:3000/password/reset#token=abcDEF_-12345")
        );
        assert_eq!(first_link("no link here"), None);
    }
}
