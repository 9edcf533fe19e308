//! Mail out (README, "Mail"): the one place a message is built and handed
//! to the transport the configuration names: an SMTP relay over TLS (or on
//! this machine), or in development a folder of `.eml` files.

use std::path::{Path, PathBuf};
use std::time::Duration;

use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use crate::config::{ConfigError, MailSettings, MailTransport, invalid};

/// The longest a relay may take over one mail, connection to answer: lettre
/// bounds only the connect, so a relay that stalls mid-conversation is cut
/// off here.
const SEND_TIMEOUT: Duration = Duration::from_secs(30);

/// A mail to send: both bodies say the same, for clients that show either.
#[derive(Debug, Clone)]
pub(crate) struct Letter {
    pub(crate) to: String,
    pub(crate) subject: String,
    pub(crate) text: String,
    pub(crate) html: String,
}

/// What became of a mail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Sent {
    /// Accepted: what the relay said (`250 2.0.0 queued as …`), or where
    /// the file was written.
    Accepted(String),
    /// Refused for good (a `5xx` about the mail or its recipient): trying
    /// again would be refused again.
    Refused(String),
    /// Not sent this time (the relay unreachable or busy, a `4xx`, a
    /// timeout, or its credentials refused): worth trying again later.
    Failed(String),
}

/// The transport, built once from the settings.
pub(crate) struct Mailer {
    from: Mailbox,
    transport: Transport,
}

enum Transport {
    Smtp {
        relay: AsyncSmtpTransport<Tokio1Executor>,
        shown: String,
    },
    Outbox(PathBuf),
    Off,
}

impl Mailer {
    /// The transport `settings` name; an unreadable `SMTP_CA_FILE` or a URL
    /// lettre refuses is an error of the configuration.
    pub(crate) fn new(settings: &MailSettings) -> Result<Self, ConfigError> {
        let from = settings
            .from
            .parse::<Mailbox>()
            .map_err(|_| invalid("MAIL_FROM", "must be an address"))?;
        let transport = match &settings.transport {
            MailTransport::Smtp {
                url,
                shown,
                ca_file,
            } => Transport::Smtp {
                relay: relay(
                    std::str::from_utf8(url.expose()).unwrap_or_default(),
                    ca_file.as_deref(),
                )?,
                shown: shown.clone(),
            },
            MailTransport::Outbox(dir) => Transport::Outbox(dir.clone()),
            // A transport added later sends nothing until it is built here.
            _ => Transport::Off,
        };
        Ok(Self { from, transport })
    }

    /// The transport, for the start-up log and the CLI: never a password.
    pub(crate) fn describe(&self) -> String {
        match &self.transport {
            Transport::Smtp { shown, .. } => format!("SMTP relay {shown}"),
            Transport::Outbox(dir) => format!("files in {}", dir.display()),
            Transport::Off => "none (set SMTP_URL to send mail)".to_owned(),
        }
    }

    /// Sends `letter`, within [`SEND_TIMEOUT`].
    pub(crate) async fn send(&self, letter: &Letter) -> Sent {
        let message = match self.message(letter) {
            Ok(message) => message,
            Err(why) => return Sent::Refused(why),
        };
        match &self.transport {
            Transport::Smtp { relay, .. } => {
                match tokio::time::timeout(SEND_TIMEOUT, relay.send(message)).await {
                    Err(_) => Sent::Failed(format!(
                        "the relay did not answer within {} s",
                        SEND_TIMEOUT.as_secs()
                    )),
                    Ok(Ok(answer)) => {
                        let said: Vec<&str> = answer.message().collect();
                        Sent::Accepted(format!("{} {}", answer.code(), said.join(" ")))
                    }
                    Ok(Err(e)) => classify(&e),
                }
            }
            Transport::Outbox(dir) => match write_eml(dir, &message.formatted()).await {
                Ok(path) => Sent::Accepted(format!("written to {}", path.display())),
                Err(e) => Sent::Failed(format!("cannot write to {}: {e}", dir.display())),
            },
            Transport::Off => Sent::Failed("no mail transport is configured".to_owned()),
        }
    }

    fn message(&self, letter: &Letter) -> Result<Message, String> {
        let to = letter
            .to
            .parse::<Mailbox>()
            .map_err(|e| format!("not an address: {e}"))?;
        // A Message-ID of our own: lettre adds none, and some relays refuse
        // mail without one.
        let domain = self.from.email.domain().to_owned();
        Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(letter.subject.clone())
            .message_id(Some(format!("<{}@{domain}>", crate::random::token(16))))
            .multipart(MultiPart::alternative_plain_html(
                letter.text.clone(),
                letter.html.clone(),
            ))
            .map_err(|e| format!("cannot build the mail: {e}"))
    }
}

/// The relay `url` names, trusting `ca_file`'s certificates beside the
/// public roots.
fn relay(
    url: &str,
    ca_file: Option<&Path>,
) -> Result<AsyncSmtpTransport<Tokio1Executor>, ConfigError> {
    let refused = |e: lettre::transport::smtp::Error| invalid("SMTP_URL", e.to_string());
    let mut builder = AsyncSmtpTransport::<Tokio1Executor>::from_url(url).map_err(refused)?;
    if let Some(ca_file) = ca_file {
        let pem = std::fs::read(ca_file)
            .map_err(|e| invalid("SMTP_CA_FILE", format!("{}: {e}", ca_file.display())))?;
        let certificate = Certificate::from_pem(&pem)
            .map_err(|e| invalid("SMTP_CA_FILE", format!("not PEM certificates: {e}")))?;
        let parsed = url::Url::parse(url).map_err(|e| invalid("SMTP_URL", e.to_string()))?;
        let host = parsed.host_str().unwrap_or_default().to_owned();
        let parameters = TlsParameters::builder(host)
            .add_root_certificate(certificate)
            .build()
            .map_err(|e| invalid("SMTP_CA_FILE", e.to_string()))?;
        // The same mode the URL asked for, with the wider trust.
        builder = builder.tls(match parsed.scheme() {
            "smtps" => Tls::Wrapper(parameters),
            _ => Tls::Required(parameters),
        });
    }
    Ok(builder.timeout(Some(Duration::from_secs(10))).build())
}

/// A refusal is for good only when it is about this mail: a relay that
/// refuses latchkey's credentials (`530` to `538`) will take the mail once
/// an operator mends them.
fn classify(e: &lettre::transport::smtp::Error) -> Sent {
    let code = e.status().map(u16::from);
    let credentials = code.is_some_and(|c| (530..=538).contains(&c));
    if e.is_permanent() && !credentials {
        Sent::Refused(e.to_string())
    } else {
        Sent::Failed(e.to_string())
    }
}

/// Writes one mail into `dir`, named so the files sort by time; whole or not
/// at all (a temporary name, then a rename). The folder and the files are
/// the owner's alone: mail carries links that sign people in.
async fn write_eml(dir: &Path, mail: &[u8]) -> std::io::Result<PathBuf> {
    let mut folder = tokio::fs::DirBuilder::new();
    folder.recursive(true);
    #[cfg(unix)]
    folder.mode(0o700);
    folder.create(dir).await?;
    let millis = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    let name = format!("{millis:013}-{}", crate::random::token(6));
    let partial = dir.join(format!(".{name}.tmp"));
    let path = dir.join(format!("{name}.eml"));
    let mut file = tokio::fs::OpenOptions::new();
    file.write(true).create_new(true);
    #[cfg(unix)]
    file.mode(0o600);
    let mut file = file.open(&partial).await?;
    tokio::io::AsyncWriteExt::write_all(&mut file, mail).await?;
    file.sync_all().await?;
    drop(file);
    tokio::fs::rename(&partial, &path).await?;
    Ok(path)
}
