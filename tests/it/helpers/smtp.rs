//! A real SMTP server for the mail tests: Debian's `python3-aiosmtpd`
//! running `tests/smtp/server.py` on loopback, plain and STARTTLS (with a
//! certificate made here), and what it delivered.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use tempfile::TempDir;

/// The Python that has Debian's packages (a `python3` earlier on `PATH` may
/// be another one).
const PYTHON: &str = "/usr/bin/python3";

/// `tests/smtp/server.py`, running until dropped.
pub struct SmtpServer {
    child: Child,
    pub plain: u16,
    pub starttls: u16,
    /// Where it saves what it accepts.
    pub inbox: PathBuf,
    /// The certificate it presents, which the tests trust (`SMTP_CA_FILE`).
    pub ca_file: PathBuf,
    pub dir: TempDir,
}

impl SmtpServer {
    /// `None` (with a notice) where aiosmtpd is not installed, unless CI
    /// says every service must be there.
    pub fn start() -> Option<Self> {
        Self::start_on(free_port(), free_port())
    }

    /// As [`SmtpServer::start`], listening on these ports.
    pub fn start_on(plain: u16, starttls: u16) -> Option<Self> {
        let present = Command::new(PYTHON)
            .args(["-c", "import aiosmtpd"])
            .output()
            .is_ok_and(|o| o.status.success());
        if !present {
            assert!(
                std::env::var("CI").is_err(),
                "CI: the mail tests need python3-aiosmtpd (.ci/run installs it)"
            );
            eprintln!("skipping: python3-aiosmtpd is not installed");
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let rcgen::CertifiedKey { cert, signing_key } = rcgen::generate_simple_self_signed(vec![
            "127.0.0.1".to_owned(),
            "localhost".to_owned(),
        ])
        .unwrap();
        let ca_file = dir.path().join("cert.pem");
        let key_file = dir.path().join("key.pem");
        std::fs::write(&ca_file, cert.pem()).unwrap();
        std::fs::write(&key_file, signing_key.serialize_pem()).unwrap();
        let inbox = dir.path().join("inbox");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/smtp/server.py");
        let mut child = Command::new(PYTHON)
            .arg(script)
            .arg("--dir")
            .arg(&inbox)
            .arg("--cert")
            .arg(&ca_file)
            .arg("--key")
            .arg(&key_file)
            .args(["--plain", &plain.to_string()])
            .args(["--starttls", &starttls.to_string()])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the SMTP server");
        let mut ready = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut ready)
            .unwrap();
        assert_eq!(ready.trim(), "READY", "the SMTP server did not start");
        Some(Self {
            child,
            plain,
            starttls,
            inbox,
            ca_file,
            dir,
        })
    }

    /// The messages accepted so far, oldest first.
    pub fn delivered(&self) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir(&self.inbox) else {
            return Vec::new();
        };
        let mut files: Vec<PathBuf> = entries
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "eml"))
            .collect();
        files.sort();
        files
            .iter()
            .map(|p| std::fs::read_to_string(p).unwrap())
            .collect()
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl SmtpServer {
    /// `SMTP_URL` and `SMTP_CA_FILE` for STARTTLS to this server.
    pub fn starttls_vars(&self) -> [(String, String); 2] {
        [
            (
                "SMTP_URL".to_owned(),
                format!("smtp://127.0.0.1:{}?tls=required", self.starttls),
            ),
            (
                "SMTP_CA_FILE".to_owned(),
                self.ca_file.to_str().unwrap().to_owned(),
            ),
        ]
    }
}

/// The token of the link in a delivered mail (its text part may be
/// quoted-printable: soft line breaks, `=3D` for `=`).
pub fn link_token(mail: &str) -> String {
    let plain = mail
        .replace("=\r\n", "")
        .replace("=\n", "")
        .replace("=3D", "=");
    let at = plain.find("#token=").expect("a link with a token") + "#token=".len();
    plain[at..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .collect()
}

/// The header `name` of a delivered mail.
pub fn header<'a>(mail: &'a str, name: &str) -> Option<&'a str> {
    mail.lines().find_map(|line| {
        let (key, value) = line.split_once(": ")?;
        key.eq_ignore_ascii_case(name).then_some(value.trim())
    })
}
