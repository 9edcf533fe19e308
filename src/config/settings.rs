//! Every setting latchkey reads: its name and, where it has one, its default,
//! written as an operator would write the value. Parsing reads the defaults
//! from here and reads no variable that is not here (`Lookup`); a test holds
//! `.env.example` and the README's Configuration table to it, so a setting
//! cannot be added, renamed or dropped in one place and forgotten in another.

use std::time::Duration;

use super::{ConfigError, invalid};

/// One environment variable.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Setting {
    pub(crate) name: &'static str,
    /// Its value when unset, as written in `.env`; `None` when it has none,
    /// or when it follows from other settings (the README says which).
    pub(crate) default: Option<&'static str>,
}

const fn set(name: &'static str, default: &'static str) -> Setting {
    Setting {
        name,
        default: Some(default),
    }
}

const fn unset(name: &'static str) -> Setting {
    Setting {
        name,
        default: None,
    }
}

/// The settings, in the order of the README's Configuration table.
pub(crate) const SETTINGS: &[Setting] = &[
    set("APP_ENV", "development"),
    set("ACCESS_TOKEN_ALGORITHM", "HS256"),
    unset("JWT_SECRET"),
    unset("JWT_REFRESH_SECRET"),
    unset("JWT_SECRET_PREVIOUS"),
    unset("JWT_REFRESH_SECRET_PREVIOUS"),
    set("JWKS_MAX_AGE", "300"),
    set("KEY_ROTATION_INTERVAL", "2592000"),
    set("JWT_EXPIRATION", "900"),
    set("JWT_REFRESH_EXPIRATION", "86400"),
    set("SESSION_IDLE_TIMEOUT_NO_REMEMBER", "43200"),
    set("SESSION_MAX_LIFETIME", "2592000"),
    set("REAUTH_MAX_AGE", "600"),
    set("MAX_REFRESHES_PER_MINUTE", "60"),
    set("REFRESH_REUSE_GRACE", "10"),
    set("DATABASE_URL", "sqlite://latchkey.db"),
    set("BIND", "127.0.0.1:3000"),
    unset("METRICS_BIND"),
    unset("TLS_CERT_FILE"),
    unset("TLS_KEY_FILE"),
    // Two years: what hstspreload.org recommends (its list takes no site
    // with less than one).
    set("HSTS_MAX_AGE", "63072000"),
    set("COOKIE_SECURE", "true"),
    set("COOKIE_SAMESITE", "strict"),
    unset("CORS_ALLOWED_ORIGINS"),
    unset("PUBLIC_ORIGIN"),
    unset("TRUSTED_PROXIES"),
    set("TRUSTED_PROXY_HEADER", "x-forwarded-for"),
    set("THROTTLE_LOGIN_PAIR", "5"),
    set("THROTTLE_LOGIN_ADDRESS", "30"),
    set("THROTTLE_LOGIN_ACCOUNT", "50"),
    set("THROTTLE_REGISTER_ADDRESS", "10"),
    set("THROTTLE_MAX_DELAY", "900"),
    set("MAX_SESSIONS_PER_USER", "50"),
    set("BCRYPT_COST", "12"),
    // `true` in development, `false` in production.
    unset("REGISTRATION_OPEN"),
    unset("SECOND_FACTOR_REQUIRED_ROLES"),
    // `PUBLIC_ORIGIN` when set, else `latchkey`.
    unset("JWT_ISSUER"),
    set("JWT_AUDIENCE", "latchkey"),
    set("SHUTDOWN_TIMEOUT", "10"),
    set("SHUTDOWN_DELAY", "0"),
    set("HEADER_READ_TIMEOUT", "10"),
    set("IDLE_TIMEOUT", "60"),
    // A login waiting its turn for a bcrypt thread under load still makes
    // it; a stalled body does not linger.
    set("REQUEST_TIMEOUT", "30"),
    set("MAX_CONNECTIONS", "2048"),
    set("HOUSEKEEPING_INTERVAL", "300"),
    set("AUDIT_RETENTION", "7776000"),
    // Read by the log subscriber (`cli.rs`), not by `Config`.
    set("RUST_LOG", "latchkey=info,tower_http=info"),
    set("LOG_FORMAT", "text"),
    unset("SMTP_URL"),
    unset("SMTP_CA_FILE"),
    // `latchkey <latchkey@localhost>` in development; required with
    // `SMTP_URL` in production.
    unset("MAIL_FROM"),
    set("MAIL_OUTBOX_DIR", "./latchkey-outbox"),
    set("MAIL_PER_HOUR", "3"),
    set("RESET_TOKEN_TTL", "1800"),
    set("EMAIL_VERIFICATION_TTL", "86400"),
];

/// The setting named `name`. Asking for a name that is not in [`SETTINGS`]
/// is a bug in latchkey, caught by every test that parses a configuration.
pub(crate) fn setting(name: &str) -> Setting {
    match SETTINGS.iter().find(|s| s.name == name) {
        Some(setting) => *setting,
        None => panic!("{name} is not in config/settings.rs"),
    }
}

/// `RUST_LOG`'s default, for the log subscriber.
pub(crate) fn default_log_filter() -> &'static str {
    setting("RUST_LOG").default.unwrap_or("latchkey=info")
}

/// The environment as parsing sees it: trimmed values, an empty value as
/// unset, and each setting's default in place of an unset value.
pub(crate) struct Lookup<F>(pub(crate) F);

impl<F: Fn(&str) -> Option<String>> Lookup<F> {
    /// What the environment says, if anything: no default.
    pub(crate) fn given(&self, name: &str) -> Option<String> {
        let _known = setting(name);
        (self.0)(name)
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    }

    /// What the environment says, or the setting's default.
    pub(crate) fn get(&self, name: &str) -> Option<String> {
        self.given(name)
            .or_else(|| setting(name).default.map(str::to_owned))
    }

    /// A whole number from `min` up to ten years' worth of seconds (seconds
    /// or counts).
    pub(crate) fn number(&self, name: &'static str, min: i64) -> Result<i64, ConfigError> {
        // Ten years: anything longer is a typo, and keeps `now + value` far
        // from overflow.
        const MAX: i64 = 10 * 365 * 86_400;
        self.get(name)
            .and_then(|v| v.parse::<i64>().ok())
            .filter(|n| (min..=MAX).contains(n))
            .ok_or_else(|| invalid(name, format!("must be a whole number from {min} to {MAX}")))
    }

    /// A whole number of seconds, at least `min`, as a duration.
    pub(crate) fn seconds(&self, name: &'static str, min: i64) -> Result<Duration, ConfigError> {
        Ok(Duration::from_secs(self.number(name, min)?.unsigned_abs()))
    }

    /// `true` or `false` (`1`/`0`, `yes`/`no` too); `None` when unset and
    /// the setting has no default of its own.
    fn boolean(&self, name: &'static str) -> Result<Option<bool>, ConfigError> {
        match self.get(name).map(|v| v.to_ascii_lowercase()).as_deref() {
            None => Ok(None),
            Some("true" | "1" | "yes") => Ok(Some(true)),
            Some("false" | "0" | "no") => Ok(Some(false)),
            Some(_) => Err(invalid(name, "must be `true` or `false`")),
        }
    }

    /// A boolean setting, given or by its default.
    pub(crate) fn flag(&self, name: &'static str) -> Result<bool, ConfigError> {
        self.boolean(name)?
            .ok_or_else(|| invalid(name, "has no default in config/settings.rs"))
    }
}

#[cfg(test)]
#[allow(clippy::expect_used)] // a failed expectation should panic with its message
mod tests {
    use std::collections::BTreeSet;

    use super::SETTINGS;

    const ENV_EXAMPLE: &str = include_str!("../../.env.example");
    const README: &str = include_str!("../../README.md");

    fn table() -> BTreeSet<&'static str> {
        SETTINGS.iter().map(|s| s.name).collect()
    }

    /// Every `NAME=value` line of `.env.example` (comments are prose).
    fn env_example() -> Vec<(&'static str, &'static str)> {
        ENV_EXAMPLE
            .lines()
            .filter(|line| !line.starts_with('#'))
            .filter_map(|line| line.split_once('='))
            .filter(|(name, _)| {
                !name.is_empty() && name.bytes().all(|b| b.is_ascii_uppercase() || b == b'_')
            })
            .collect()
    }

    /// The rows of the README's Configuration table: the names of each row's
    /// first cell, and its last cell (the default).
    fn readme_rows() -> Vec<(Vec<&'static str>, &'static str)> {
        let section = README
            .split("\n## Configuration\n")
            .nth(1)
            .and_then(|rest| rest.split("\n## ").next())
            .expect("a Configuration section");
        section
            .lines()
            .filter(|line| line.starts_with("| `"))
            .map(|line| {
                let cells: Vec<&str> = line.trim_matches('|').split(" | ").collect();
                let names = cells[0]
                    .split(", ")
                    .map(|n| n.trim().trim_matches('`'))
                    .collect();
                (names, *cells.last().unwrap_or(&""))
            })
            .collect()
    }

    #[test]
    fn env_example_lists_every_setting_once_with_its_default_and_nothing_else() {
        let table = table();
        let lines = env_example();
        let example: BTreeSet<&str> = lines.iter().map(|(name, _)| *name).collect();
        let missing: Vec<_> = table.difference(&example).collect();
        let unknown: Vec<_> = example.difference(&table).collect();
        assert!(
            missing.is_empty() && unknown.is_empty(),
            ".env.example lacks {missing:?} and lists {unknown:?}, which config/settings.rs does not"
        );
        assert_eq!(
            lines.len(),
            example.len(),
            "a setting listed twice in .env.example"
        );
        for (name, value) in lines {
            let default = super::setting(name).default.unwrap_or_default();
            assert_eq!(
                value, default,
                ".env.example's {name}, config/settings.rs's default"
            );
        }
    }

    #[test]
    fn the_readme_lists_every_setting_with_its_default_and_nothing_else() {
        let table = table();
        let rows = readme_rows();
        let listed: BTreeSet<&str> = rows.iter().flat_map(|(names, _)| names.clone()).collect();
        let missing: Vec<_> = table.difference(&listed).collect();
        let unknown: Vec<_> = listed.difference(&table).collect();
        assert!(
            missing.is_empty() && unknown.is_empty(),
            "the README's Configuration table lacks {missing:?} and lists {unknown:?}, which \
             config/settings.rs does not"
        );
        for setting in SETTINGS {
            let Some(default) = setting.default else {
                continue;
            };
            let (names, shown) = rows
                .iter()
                .find(|(names, _)| names.contains(&setting.name))
                .expect("listed");
            // A row of several settings gives their defaults in their order.
            let values: Vec<&str> = shown.split('`').skip(1).step_by(2).collect();
            let matches = if values.len() == names.len() && names.len() > 1 {
                let at = names
                    .iter()
                    .position(|n| *n == setting.name)
                    .expect("listed");
                values[at] == default
            } else {
                shown.contains(&format!("`{default}`"))
            };
            assert!(
                matches,
                "the README gives {} the default {shown:?}, config/settings.rs `{default}`",
                setting.name
            );
        }
    }
}
