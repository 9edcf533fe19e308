//! How latchkey sends mail (README, "Mail"): an SMTP relay that only TLS
//! reaches (or one on this machine), or in development a folder of `.eml`
//! files; and who the mail is from.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use lettre::message::Mailbox;

use super::{ConfigError, Lookup, Secret, invalid};

/// How latchkey sends mail, and who it is from (README, "Mail").
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct MailSettings {
    /// `SMTP_URL`, `SMTP_CA_FILE`, `MAIL_OUTBOX_DIR`.
    pub transport: MailTransport,
    /// `MAIL_FROM`: the `From` of every mail, as `Name <address>` or an
    /// address.
    pub from: String,
    /// Where the links in mail point (`PUBLIC_ORIGIN`; in development,
    /// `BIND`'s address): `None` when latchkey sends no mail.
    pub link_origin: Option<String>,
    /// How long a password reset link works (`RESET_TOKEN_TTL`).
    pub reset_ttl: Duration,
    /// How long an address verification link works (`EMAIL_VERIFICATION_TTL`).
    pub verification_ttl: Duration,
    /// Mails an hour to one account, and to one address (`MAIL_PER_HOUR`).
    pub per_hour: i64,
}

impl MailSettings {
    /// Whether latchkey sends mail, and so offers what needs it (README,
    /// "Account recovery").
    pub fn sends(&self) -> bool {
        !matches!(self.transport, MailTransport::Off)
    }
}

/// Where mail goes.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum MailTransport {
    /// An SMTP relay (`SMTP_URL`): `smtps://` (TLS from the first byte),
    /// `smtp://…?tls=required` (STARTTLS, or no mail), or plain `smtp://` to
    /// a loopback host only. The URL may carry the relay's credentials, so
    /// it is a secret.
    Smtp {
        /// The URL, credentials and all.
        url: Secret,
        /// The URL without its password, for the logs.
        shown: String,
        /// Certificates to trust beside the public roots (`SMTP_CA_FILE`),
        /// for a relay with a private CA.
        ca_file: Option<PathBuf>,
    },
    /// Development without `SMTP_URL`: each mail is written to this folder
    /// as an `.eml` file (`MAIL_OUTBOX_DIR`).
    Outbox(PathBuf),
    /// Production without `SMTP_URL`: latchkey sends no mail.
    Off,
}

/// The sender when `MAIL_FROM` is unset, in development only.
const DEVELOPMENT_FROM: &str = "latchkey <latchkey@localhost>";

pub(super) fn parse(
    get: &Lookup<impl Fn(&str) -> Option<String>>,
    production: bool,
    public_origin: Option<&str>,
    bind: SocketAddr,
) -> Result<MailSettings, ConfigError> {
    let transport = match get.get("SMTP_URL") {
        Some(url) => smtp(&url, get.get("SMTP_CA_FILE").map(PathBuf::from))?,
        None if production => MailTransport::Off,
        None => MailTransport::Outbox(PathBuf::from(
            get.get("MAIL_OUTBOX_DIR").unwrap_or_default(),
        )),
    };
    let from = match get.get("MAIL_FROM") {
        Some(from) => from,
        None if matches!(transport, MailTransport::Smtp { .. }) && production => {
            return Err(invalid(
                "MAIL_FROM",
                "must be set with SMTP_URL in production: the address mail is sent from",
            ));
        }
        None => DEVELOPMENT_FROM.to_owned(),
    };
    if from.parse::<Mailbox>().is_err() {
        return Err(invalid(
            "MAIL_FROM",
            "must be an address such as `latchkey <no-reply@example.com>`",
        ));
    }
    let link_origin = match (&transport, public_origin) {
        (MailTransport::Off, _) => None,
        (_, Some(origin)) => Some(origin.to_owned()),
        (MailTransport::Smtp { .. }, None) if production => {
            return Err(invalid(
                "PUBLIC_ORIGIN",
                "must be set with SMTP_URL in production: the links in mail point there, and \
                 a request's Host header must never choose where (it is the client's to write)",
            ));
        }
        (_, None) => Some(development_origin(bind)),
    };
    Ok(MailSettings {
        transport,
        from,
        link_origin,
        reset_ttl: get.seconds("RESET_TOKEN_TTL", 60)?,
        verification_ttl: get.seconds("EMAIL_VERIFICATION_TTL", 60)?,
        per_hour: get.number("MAIL_PER_HOUR", 1)?,
    })
}

/// The origin a development server on `bind` answers at.
fn development_origin(bind: SocketAddr) -> String {
    if bind.ip().is_unspecified() {
        format!("http://localhost:{}", bind.port())
    } else {
        format!("http://{bind}")
    }
}

/// `SMTP_URL`, held to TLS unless the relay is on this machine.
fn smtp(raw: &str, ca_file: Option<PathBuf>) -> Result<MailTransport, ConfigError> {
    let refuse = |why: &str| invalid("SMTP_URL", why.to_owned());
    let url = url::Url::parse(raw)
        .map_err(|_| refuse("must be a URL such as smtps://user:password@smtp.example.com:465"))?;
    let host = url
        .host_str()
        .filter(|h| !h.is_empty())
        .ok_or_else(|| refuse("names no host"))?;
    if host.starts_with('[') {
        // lettre hands `[::1]` to the resolver and the TLS name check as it
        // is, brackets and all, and neither takes it.
        return Err(refuse(
            "an IPv6 address cannot name the relay: use its host name",
        ));
    }
    let tls = url
        .query_pairs()
        .find(|(key, _)| key == "tls")
        .map(|(_, value)| value.into_owned());
    match (url.scheme(), tls.as_deref()) {
        ("smtps", None) | ("smtp", Some("required")) => {}
        ("smtp", None) if loopback(host) => {}
        ("smtp", None) => {
            return Err(refuse(
                "plain smtp:// reaches a loopback host only: use smtps:// or \
                 smtp://…?tls=required, so credentials and links never cross a network in clear",
            ));
        }
        ("smtp", Some(_)) => {
            return Err(refuse(
                "tls= must be `required` (opportunistic STARTTLS can be stripped)",
            ));
        }
        _ => return Err(refuse("must start with smtps:// or smtp://")),
    }
    if ca_file.is_some() && url.scheme() == "smtp" && tls.is_none() {
        return Err(invalid(
            "SMTP_CA_FILE",
            "names certificates for TLS, and SMTP_URL asks for none (smtps:// or ?tls=required)",
        ));
    }
    if url.port().is_none() {
        // lettre's default port for plain smtp:// is 25, not the 587 one
        // would guess: the port is asked for rather than guessed.
        return Err(refuse(
            "must name its port (465 for smtps://, 587 for STARTTLS)",
        ));
    }
    Ok(MailTransport::Smtp {
        url: Secret::new(raw),
        shown: super::redact_password(raw),
        ca_file,
    })
}

fn loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed expectation should panic with its message
mod tests {
    use std::collections::HashMap;

    use super::{MailTransport, parse};
    use crate::config::Lookup;

    fn mail(vars: &[(&str, &str)], production: bool) -> Result<MailTransport, String> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let get = Lookup(|k: &str| vars.get(k).cloned());
        let bind = "127.0.0.1:3000".parse().unwrap();
        parse(&get, production, Some("https://auth.example.com"), bind)
            .map(|m| m.transport)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn smtp_urls_are_held_to_tls_off_this_machine() {
        for url in [
            "smtps://user:pw@smtp.example.com:465",
            "smtp://smtp.example.com:587?tls=required",
            "smtp://127.0.0.1:2525",
            "smtp://localhost:25",
        ] {
            let from = ("MAIL_FROM", "a@example.com");
            assert!(
                matches!(
                    mail(&[("SMTP_URL", url), from], true),
                    Ok(MailTransport::Smtp { .. })
                ),
                "{url}"
            );
        }
        for (url, why) in [
            ("smtp://smtp.example.com:25", "loopback"),
            ("smtp://smtp.example.com:587?tls=opportunistic", "required"),
            ("smtps://smtp.example.com", "port"),
            ("smtp://[::1]:2525", "IPv6"),
            ("http://smtp.example.com:80", "smtps://"),
            ("not a url", "URL"),
        ] {
            let refused = mail(&[("SMTP_URL", url)], false).unwrap_err();
            assert!(refused.contains(why), "{url}: {refused}");
        }
    }

    #[test]
    fn without_smtp_development_writes_files_and_production_sends_nothing() {
        let dir = ("MAIL_OUTBOX_DIR", "./out");
        assert!(matches!(mail(&[dir], false), Ok(MailTransport::Outbox(p)) if p.ends_with("out")));
        assert!(matches!(mail(&[dir], true), Ok(MailTransport::Off)));
        let smtp = ("SMTP_URL", "smtps://smtp.example.com:465");
        assert!(mail(&[smtp], true).unwrap_err().contains("MAIL_FROM"));
        assert!(
            mail(&[smtp, ("MAIL_FROM", "not an address")], true)
                .unwrap_err()
                .contains("MAIL_FROM")
        );
    }

    #[test]
    fn the_password_in_smtp_url_stays_out_of_debug_and_of_what_is_shown() {
        let url = (
            "SMTP_URL",
            "smtps://mailer:hunter2-secret@smtp.example.com:465",
        );
        let transport = mail(&[url, ("MAIL_FROM", "a@example.com")], true).unwrap();
        assert!(!format!("{transport:?}").contains("hunter2-secret"));
        let MailTransport::Smtp { shown, .. } = transport else {
            panic!("smtp");
        };
        assert!(!shown.contains("hunter2-secret"), "{shown}");
    }
}
