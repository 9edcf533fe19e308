//! Configuration: defaults, refusals that name their variable, development
//! secrets that survive a restart, and the binary's behaviour on bad settings.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::connect_info::MockConnectInfo;
use axum::http::StatusCode;
use latchkey::clock::ManualClock;
use latchkey::config::{AccessAlgorithm, AppEnv, ConfigError, Database, SameSite};
use latchkey::store::SqliteStore;
use latchkey::{Auth, router};
use tempfile::TempDir;

use crate::helpers::*;

/// The test settings with `overrides` applied and `removed` taken out.
fn vars(dir: &TempDir, overrides: &[(&str, &str)], removed: &[&str]) -> HashMap<String, String> {
    let mut vars = test_vars(dir, overrides);
    for key in removed {
        vars.remove(*key);
    }
    vars
}

fn refusal(overrides: &[(&str, &str)], removed: &[&str]) -> ConfigError {
    let dir = tempfile::tempdir().unwrap();
    match config_from(&vars(&dir, overrides, removed)) {
        Ok(_) => panic!("accepted {overrides:?} without {removed:?}"),
        Err(e) => e,
    }
}

/// The refusal names `variable`, both in the field and in the printed line.
fn assert_refused(overrides: &[(&str, &str)], removed: &[&str], variable: &str) {
    let err = refusal(overrides, removed);
    assert_eq!(
        err.variable, variable,
        "{overrides:?} without {removed:?}: {err}"
    );
    let line = err.to_string();
    assert!(line.contains(variable), "{line}");
    assert!(!line.contains('\n'), "one line: {line:?}");
}

const PRODUCTION: (&str, &str) = ("APP_ENV", "production");
const SECRETS: [&str; 2] = ["JWT_SECRET", "JWT_REFRESH_SECRET"];

#[test]
fn production_refuses_to_start_without_an_access_secret() {
    assert_refused(&[PRODUCTION], &["JWT_SECRET"], "JWT_SECRET");
    assert_refused(&[PRODUCTION], &SECRETS, "JWT_SECRET");
    assert_refused(&[PRODUCTION, ("JWT_SECRET", "  ")], &[], "JWT_SECRET");
}

#[test]
fn production_refuses_to_start_without_a_refresh_secret() {
    assert_refused(&[PRODUCTION], &["JWT_REFRESH_SECRET"], "JWT_REFRESH_SECRET");
}

#[test]
fn production_never_generates_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let result = config_from(&vars(&dir, &[PRODUCTION], &SECRETS));
    assert!(result.is_err());
    assert!(
        !dir.path().join("latchkey.db.secrets").exists(),
        "no secrets file in production"
    );
}

#[test]
fn secrets_shorter_than_32_bytes_are_refused() {
    let short = "x".repeat(31);
    for env in ["production", "development"] {
        assert_refused(
            &[("APP_ENV", env), ("JWT_SECRET", &short)],
            &[],
            "JWT_SECRET",
        );
        assert_refused(
            &[("APP_ENV", env), ("JWT_REFRESH_SECRET", &short)],
            &[],
            "JWT_REFRESH_SECRET",
        );
    }
    // Exactly 32 bytes is enough.
    let dir = tempfile::tempdir().unwrap();
    let exact = "y".repeat(32);
    assert!(config_from(&vars(&dir, &[PRODUCTION, ("JWT_SECRET", &exact)], &[])).is_ok());
}

#[test]
fn equal_secrets_are_refused() {
    let same = "the-same-secret-for-both-0123456789abcdef";
    for env in ["production", "development"] {
        let err = refusal(
            &[
                ("APP_ENV", env),
                ("JWT_SECRET", same),
                ("JWT_REFRESH_SECRET", same),
            ],
            &[],
        );
        assert!(
            SECRETS.contains(&err.variable),
            "{env}: names a secret: {err}"
        );
        assert!(err.to_string().contains(err.variable));
    }
}

#[test]
fn production_refuses_cookies_without_secure() {
    assert_refused(
        &[PRODUCTION, ("COOKIE_SECURE", "false")],
        &[],
        "COOKIE_SECURE",
    );
}

#[test]
fn samesite_none_without_secure_is_refused_everywhere() {
    for env in ["production", "development"] {
        assert_refused(
            &[
                ("APP_ENV", env),
                ("COOKIE_SAMESITE", "none"),
                ("COOKIE_SECURE", "false"),
            ],
            &[],
            "COOKIE_SAMESITE",
        );
    }
}

#[test]
fn a_valid_production_configuration_is_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let config = config_from(&vars(&dir, &[PRODUCTION], &[])).unwrap();
    assert_eq!(config.env, AppEnv::Production);
    assert!(config.cookies.secure);
    assert!(!config.tokens.generated_secrets);
}

#[test]
fn an_invalid_bcrypt_cost_is_refused() {
    for cost in ["3", "32", "x", "-1", "12.5"] {
        assert_refused(&[("BCRYPT_COST", cost)], &[], "BCRYPT_COST");
    }
    let dir = tempfile::tempdir().unwrap();
    for (cost, expected) in [("4", 4), ("31", 31)] {
        let config = config_from(&vars(&dir, &[("BCRYPT_COST", cost)], &[])).unwrap();
        assert_eq!(config.accounts.bcrypt_cost, expected);
    }
}

#[test]
fn invalid_lifetimes_are_refused() {
    for name in [
        "JWT_EXPIRATION",
        "JWT_REFRESH_EXPIRATION",
        "SESSION_MAX_LIFETIME",
    ] {
        for value in ["0", "-5", "abc", "1.5", "99999999999999999999"] {
            assert_refused(&[(name, value)], &[], name);
        }
    }
    for value in ["-1", "abc"] {
        assert_refused(
            &[("REFRESH_REUSE_GRACE", value)],
            &[],
            "REFRESH_REUSE_GRACE",
        );
    }
}

#[test]
fn a_refresh_reuse_grace_longer_than_a_minute_is_refused() {
    // Even when the refresh lifetime would leave room for it: a long grace
    // lets a copied token through as if two tabs had refreshed at once.
    for value in ["61", "600", "3600"] {
        let err = refusal(&[("REFRESH_REUSE_GRACE", value)], &[]);
        assert_eq!(err.variable, "REFRESH_REUSE_GRACE", "{value}: {err}");
        let line = err.to_string();
        assert!(line.contains("at most 60"), "{line}");
        assert!(!line.contains('\n'), "one line: {line:?}");
    }
    let dir = tempfile::tempdir().unwrap();
    for (value, expected) in [("60", 60), ("0", 0)] {
        let config = config_from(&vars(&dir, &[("REFRESH_REUSE_GRACE", value)], &[])).unwrap();
        assert_eq!(secs(config.tokens.reuse_grace), expected);
    }
}

#[test]
fn an_unknown_app_env_is_refused() {
    for value in ["staging", "prod", "Production!"] {
        assert_refused(&[("APP_ENV", value)], &[], "APP_ENV");
    }
}

#[test]
fn a_database_url_of_another_kind_is_refused() {
    for value in ["mysql://x", "latchkey.db", "sqlite://", "file:latchkey.db"] {
        assert_refused(&[("DATABASE_URL", value)], &[], "DATABASE_URL");
    }
}

#[test]
fn cors_origins_must_be_exact_origins() {
    for value in [
        "*",
        "https://a.com/path",
        "a.com",
        "ftp://a.com",
        "https://",
        "https://good.example,*",
    ] {
        assert_refused(
            &[("CORS_ALLOWED_ORIGINS", value)],
            &[],
            "CORS_ALLOWED_ORIGINS",
        );
    }
}

#[test]
fn cors_origins_are_kept_as_browsers_send_them() {
    let dir = tempfile::tempdir().unwrap();
    let config = config_from(&vars(
        &dir,
        &[(
            "CORS_ALLOWED_ORIGINS",
            " https://SPA.example/ , http://localhost:5173",
        )],
        &[],
    ))
    .unwrap();
    assert_eq!(
        config.origins.cors_allowed,
        vec!["https://spa.example", "http://localhost:5173"]
    );
}

#[test]
fn an_invalid_bind_address_or_samesite_is_refused() {
    assert_refused(&[("BIND", "not an address")], &[], "BIND");
    assert_refused(&[("COOKIE_SAMESITE", "sometimes")], &[], "COOKIE_SAMESITE");
    assert_refused(&[("COOKIE_SECURE", "maybe")], &[], "COOKIE_SECURE");
}

#[test]
fn the_metrics_address_is_an_address_other_than_the_public_one() {
    assert_refused(&[("METRICS_BIND", "localhost:9464")], &[], "METRICS_BIND");
    assert_refused(&[("METRICS_BIND", "9464")], &[], "METRICS_BIND");
    assert_refused(
        &[
            ("BIND", "127.0.0.1:3000"),
            ("METRICS_BIND", "127.0.0.1:3000"),
        ],
        &[],
        "METRICS_BIND",
    );
    let dir = tempfile::tempdir().unwrap();
    let config = config_from(&vars(&dir, &[("METRICS_BIND", "127.0.0.1:9464")], &[])).unwrap();
    assert_eq!(
        config.server.metrics_bind,
        Some(SocketAddr::from(([127, 0, 0, 1], 9464)))
    );
    // Port 0 on both: two free ports, which always differ.
    let config = config_from(&vars(
        &dir,
        &[("BIND", "127.0.0.1:0"), ("METRICS_BIND", "127.0.0.1:0")],
        &[],
    ))
    .unwrap();
    assert!(config.server.metrics_bind.is_some());
}

#[test]
fn the_defaults_are_those_of_the_contract() {
    let dir = tempfile::tempdir().unwrap();
    // Only the secrets: everything else from the defaults.
    let only_secrets = vars(
        &dir,
        &[],
        &["BCRYPT_COST", "DATABASE_URL", "MAIL_OUTBOX_DIR"],
    );
    assert_eq!(only_secrets.len(), 2, "{only_secrets:?}");

    let config = config_from(&only_secrets).unwrap();

    assert_eq!(config.env, AppEnv::Development);
    assert_eq!(secs(config.tokens.access_ttl), 900);
    assert_eq!(secs(config.tokens.refresh_ttl), 86_400);
    assert_eq!(secs(config.tokens.session_lifetime), 2_592_000);
    assert_eq!(secs(config.tokens.reuse_grace), 10);
    assert_eq!(config.database, Database::SqliteFile("latchkey.db".into()));
    assert_eq!(config.server.bind, SocketAddr::from(([127, 0, 0, 1], 3000)));
    assert_eq!(config.server.metrics_bind, None, "metrics off");
    assert!(config.cookies.secure);
    assert_eq!(config.cookies.same_site, SameSite::Strict);
    assert!(config.origins.cors_allowed.is_empty());
    assert_eq!(config.accounts.bcrypt_cost, 12);
    assert!(!config.tokens.generated_secrets);
    assert_eq!(config.tokens.algorithm, AccessAlgorithm::Hs256);
    assert_eq!(config.tokens.issuer, "latchkey");
    assert_eq!(secs(config.tokens.jwks_max_age), 300);
    assert_eq!(
        config.tokens.key_rotation_interval.map(secs),
        Some(30 * 86_400)
    );
    assert_eq!(config.tokens.previous_access_secret, None);
    assert_eq!(config.tokens.previous_refresh_secret, None);
    assert_eq!(config.server.tls, None, "plain HTTP");
    // Mail: development writes files; links point at BIND.
    assert!(matches!(
        &config.mail.transport,
        latchkey::config::MailTransport::Outbox(dir) if dir.ends_with("latchkey-outbox")
    ));
    assert_eq!(
        config.mail.link_origin.as_deref(),
        Some("http://127.0.0.1:3000")
    );
    assert_eq!(config.mail.per_hour, 3);
    assert_eq!(secs(config.mail.reset_ttl), 1800);
    assert_eq!(secs(config.mail.verification_ttl), 86_400);
}

#[test]
fn mail_links_never_take_their_origin_from_a_request() {
    // Production with a relay: PUBLIC_ORIGIN, or no start.
    let relay = [
        ("APP_ENV", "production"),
        ("SMTP_URL", "smtps://smtp.example.com:465"),
        ("MAIL_FROM", "no-reply@example.com"),
    ];
    assert_refused(&relay, &[], "PUBLIC_ORIGIN");
    let dir = tempfile::tempdir().unwrap();
    let mut with_origin = relay.to_vec();
    with_origin.push(("PUBLIC_ORIGIN", "https://auth.example.com"));
    let config = config_from(&vars(&dir, &with_origin, &[])).unwrap();
    assert_eq!(
        config.mail.link_origin.as_deref(),
        Some("https://auth.example.com")
    );
    // Production without a relay sends nothing, and needs no origin.
    let config = config_from(&vars(&dir, &[("APP_ENV", "production")], &[])).unwrap();
    assert!(!config.mail.sends());
    assert_eq!(config.mail.link_origin, None);
    for bad in ["0", "-1", "soon"] {
        assert_refused(&[("RESET_TOKEN_TTL", bad)], &[], "RESET_TOKEN_TTL");
        assert_refused(&[("MAIL_PER_HOUR", bad)], &[], "MAIL_PER_HOUR");
    }
}

#[test]
fn tls_takes_both_files_or_neither_and_a_two_year_hsts_by_default() {
    assert_refused(&[("TLS_CERT_FILE", "cert.pem")], &[], "TLS_KEY_FILE");
    assert_refused(&[("TLS_KEY_FILE", "key.pem")], &[], "TLS_CERT_FILE");
    for bad in ["-1", "two years", "1.5"] {
        assert_refused(&[("HSTS_MAX_AGE", bad)], &[], "HSTS_MAX_AGE");
    }

    let dir = tempfile::tempdir().unwrap();
    let both = [("TLS_CERT_FILE", "cert.pem"), ("TLS_KEY_FILE", "key.pem")];
    let tls = config_from(&vars(&dir, &both, &[]))
        .unwrap()
        .server
        .tls
        .expect("TLS on");
    assert_eq!(tls.cert_file, std::path::Path::new("cert.pem"));
    assert_eq!(tls.key_file, std::path::Path::new("key.pem"));
    assert_eq!(secs(tls.hsts_max_age), 63_072_000);
    // Parsing reads no file: there is none of that name here.
    assert!(!std::path::Path::new("cert.pem").exists());

    let withdrawn = [both[0], both[1], ("HSTS_MAX_AGE", "0")];
    let tls = config_from(&vars(&dir, &withdrawn, &[]))
        .unwrap()
        .server
        .tls
        .expect("TLS on");
    assert_eq!(secs(tls.hsts_max_age), 0);
}

#[test]
fn the_access_token_algorithm_is_one_of_three_names() {
    for (name, algorithm) in [
        ("HS256", AccessAlgorithm::Hs256),
        ("EdDSA", AccessAlgorithm::EdDsa),
        ("ES256", AccessAlgorithm::Es256),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let config = config_from(&vars(&dir, &[("ACCESS_TOKEN_ALGORITHM", name)], &[])).unwrap();
        assert_eq!(config.tokens.algorithm, algorithm);
        assert_eq!(algorithm.name(), name);
    }
    // Never `none`, never RSA, never a family left to the token to choose.
    for bad in ["none", "RS256", "HS512", "eddsa", "ES384"] {
        assert_refused(
            &[("ACCESS_TOKEN_ALGORITHM", bad)],
            &[],
            "ACCESS_TOKEN_ALGORITHM",
        );
    }
}

#[test]
fn the_issuer_defaults_to_the_public_origin() {
    let dir = tempfile::tempdir().unwrap();
    let origin = ("PUBLIC_ORIGIN", "https://auth.example.com");
    let config = config_from(&vars(&dir, &[origin], &[])).unwrap();
    assert_eq!(config.tokens.issuer, "https://auth.example.com");
    let named = config_from(&vars(&dir, &[origin, ("JWT_ISSUER", "someone")], &[])).unwrap();
    assert_eq!(named.tokens.issuer, "someone", "JWT_ISSUER wins");
}

#[test]
fn asymmetric_tokens_in_production_need_an_https_issuer_and_no_jwt_secret() {
    let eddsa = ("ACCESS_TOKEN_ALGORITHM", "EdDSA");
    assert_refused(&[PRODUCTION, eddsa], &[], "JWT_ISSUER");
    assert_refused(
        &[PRODUCTION, eddsa, ("JWT_ISSUER", "http://auth.example.com")],
        &[],
        "JWT_ISSUER",
    );
    let dir = tempfile::tempdir().unwrap();
    let config = config_from(&vars(
        &dir,
        &[
            PRODUCTION,
            eddsa,
            ("PUBLIC_ORIGIN", "https://auth.example.com"),
        ],
        &["JWT_SECRET"],
    ))
    .unwrap();
    assert_eq!(config.tokens.access_secret, None, "not needed to sign");
    // The refresh secret still is: refresh tokens, and the signing keys'
    // root.
    assert_refused(
        &[
            PRODUCTION,
            eddsa,
            ("PUBLIC_ORIGIN", "https://auth.example.com"),
        ],
        &SECRETS,
        "JWT_REFRESH_SECRET",
    );
}

#[test]
fn a_rotation_interval_must_leave_time_to_publish() {
    for interval in ["300", "360"] {
        assert_refused(
            &[("KEY_ROTATION_INTERVAL", interval), ("JWKS_MAX_AGE", "300")],
            &[],
            "KEY_ROTATION_INTERVAL",
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let manual = config_from(&vars(&dir, &[("KEY_ROTATION_INTERVAL", "0")], &[])).unwrap();
    assert_eq!(manual.tokens.key_rotation_interval, None, "0: by hand only");
}

#[test]
fn previous_secrets_are_held_to_the_same_length() {
    for name in ["JWT_SECRET_PREVIOUS", "JWT_REFRESH_SECRET_PREVIOUS"] {
        assert_refused(&[(name, "short")], &[], name);
    }
}

#[test]
fn empty_values_count_as_unset() {
    let dir = tempfile::tempdir().unwrap();
    let config = config_from(&vars(
        &dir,
        &[
            ("JWT_EXPIRATION", ""),
            ("BCRYPT_COST", " "),
            ("COOKIE_SECURE", ""),
        ],
        &[],
    ))
    .unwrap();
    assert_eq!(secs(config.tokens.access_ttl), 900);
    assert_eq!(config.accounts.bcrypt_cost, 12);
    assert!(config.cookies.secure);
}

#[test]
fn the_secrets_never_show_in_debug_output() {
    let dir = tempfile::tempdir().unwrap();
    let vars = vars(
        &dir,
        &[
            (
                "JWT_SECRET_PREVIOUS",
                "previous-access-secret-0123456789abcdef",
            ),
            (
                "JWT_REFRESH_SECRET_PREVIOUS",
                "previous-refresh-secret-0123456789abcde",
            ),
        ],
        &[],
    );
    let config = config_from(&vars).unwrap();

    let debug = format!("{config:?}");

    for key in SECRETS
        .iter()
        .chain(&["JWT_SECRET_PREVIOUS", "JWT_REFRESH_SECRET_PREVIOUS"])
    {
        assert!(!debug.contains(vars[*key].as_str()), "{key} in {debug}");
    }
}

// ---------------------------------------------------------------- development secrets

#[tokio::test]
async fn parsing_a_development_configuration_creates_no_file() {
    let dir = tempfile::tempdir().unwrap();
    let dev = vars(&dir, &[], &SECRETS);

    let parsed = latchkey::Config::from_lookup(|k| dev.get(k).cloned()).unwrap();

    assert_eq!(parsed.tokens.access_secret, None);
    assert!(!parsed.tokens.generated_secrets);
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "parsing wrote a file"
    );
    // Without the development step there is nothing to sign with.
    let store = Arc::new(SqliteStore::open(&dir.path().join("x.db")).await.unwrap());
    let refused = Auth::new(parsed, store)
        .err()
        .expect("no secrets, no service");
    assert_eq!(refused.variable, "JWT_SECRET");
}

#[test]
fn development_secrets_are_generated_once_and_kept_beside_the_database() {
    let dir = tempfile::tempdir().unwrap();
    let dev = vars(&dir, &[], &SECRETS);

    let first = config_from(&dev).unwrap();
    let second = config_from(&dev).unwrap();

    assert!(first.tokens.generated_secrets);
    assert_eq!(
        first.tokens.access_secret.clone().unwrap(),
        second.tokens.access_secret.clone().unwrap(),
        "a restart keeps sessions"
    );
    assert_eq!(
        first.tokens.refresh_secret.clone().unwrap(),
        second.tokens.refresh_secret.clone().unwrap()
    );
    assert_ne!(
        first.tokens.access_secret.clone().unwrap(),
        first.tokens.refresh_secret.clone().unwrap()
    );
    assert!(first.tokens.access_secret.clone().unwrap().expose().len() >= 32);
    assert!(first.tokens.refresh_secret.clone().unwrap().expose().len() >= 32);

    let file = dir.path().join("latchkey.db.secrets");
    assert!(file.exists(), "{} is missing", file.display());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "mode {mode:o}");
    }
    // Nothing else is left behind (no temporary files).
    let mut names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, vec!["latchkey.db.secrets"]);
}

// ---------------------------------------------------------------- the database file

/// The permission bits of `path`.
#[cfg(unix)]
fn mode(path: &std::path::Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    let metadata = std::fs::metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    metadata.permissions().mode() & 0o777
}

/// It holds password hashes. (Under the usual umask of 022, SQLite alone
/// would create all three files 0644.)
#[cfg(unix)]
#[tokio::test]
async fn a_new_database_file_and_its_wal_are_readable_by_their_owner_only() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("latchkey.db");

    let store = Arc::new(SqliteStore::open(&path).await.unwrap());
    let vars = vars(&dir, &[], &SECRETS);
    Auth::new(config_from(&vars).unwrap(), store.clone())
        .unwrap()
        .create_user("ann", PASSWORD, "user")
        .await
        .unwrap();

    for file in ["latchkey.db", "latchkey.db-wal", "latchkey.db-shm"] {
        let mode = mode(&dir.path().join(file));
        assert_eq!(mode & 0o077, 0, "{file} has mode {mode:o}");
    }
    store.close().await;
}

#[cfg(unix)]
#[tokio::test]
async fn an_existing_database_file_keeps_the_mode_its_operator_gave_it() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("latchkey.db");
    std::fs::write(&path, b"").unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();

    let store = SqliteStore::open(&path).await.unwrap();

    assert_eq!(mode(&path), 0o640);
    store.close().await;
}

#[test]
fn each_database_gets_its_own_development_secrets() {
    let one = tempfile::tempdir().unwrap();
    let two = tempfile::tempdir().unwrap();

    let a = config_from(&vars(&one, &[], &SECRETS)).unwrap();
    let b = config_from(&vars(&two, &[], &SECRETS)).unwrap();

    assert_ne!(
        a.tokens.access_secret.clone().unwrap(),
        b.tokens.access_secret.clone().unwrap()
    );
    assert_ne!(
        a.tokens.refresh_secret.clone().unwrap(),
        b.tokens.refresh_secret.clone().unwrap()
    );
}

#[test]
fn a_configured_secret_wins_over_a_generated_one() {
    let dir = tempfile::tempdir().unwrap();
    let configured = "configured-access-secret-0123456789abcdef";

    let config = config_from(&vars(
        &dir,
        &[("JWT_SECRET", configured)],
        &["JWT_REFRESH_SECRET"],
    ))
    .unwrap();

    assert_eq!(
        config.tokens.access_secret.clone().unwrap().expose(),
        configured.as_bytes()
    );
    assert_ne!(
        config.tokens.refresh_secret.clone().unwrap().expose(),
        configured.as_bytes()
    );
}

#[test]
fn a_damaged_secrets_file_is_refused_not_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("latchkey.db.secrets");
    std::fs::write(&file, "this is not a secrets file\n").unwrap();

    let err = config_from(&vars(&dir, &[], &SECRETS)).unwrap_err();

    assert_eq!(err.variable, "JWT_SECRET");
    assert_eq!(
        std::fs::read_to_string(&file).unwrap(),
        "this is not a secrets file\n"
    );
}

/// A whole service over `config`, as `main` builds it, with a test clock.
async fn service(config: latchkey::Config) -> (Router, Auth, Arc<SqliteStore>) {
    let path = config.database.sqlite_path().unwrap().to_owned();
    let store = Arc::new(SqliteStore::open(&path).await.unwrap());
    let state = Auth::with_clock(
        config,
        store.clone(),
        Arc::new(ManualClock::starting_at(START)),
    )
    .unwrap();
    let router = router(state.clone()).layer(MockConnectInfo(SocketAddr::from(CLIENT_ADDR)));
    (router, state, store)
}

fn token_request(refresh: &str) -> axum::http::Request<axum::body::Body> {
    axum::http::Request::post("/token")
        .header("cookie", format!("__Host-refresh_token={refresh}"))
        .body(axum::body::Body::empty())
        .unwrap()
}

#[tokio::test]
async fn a_restart_in_development_keeps_sessions_alive() {
    let dir = tempfile::tempdir().unwrap();
    let dev = vars(&dir, &[], &SECRETS);

    let (router, state, store) = service(config_from(&dev).unwrap()).await;
    state.create_user("ann", PASSWORD, "user").await.unwrap();
    let login = call(
        &router,
        json_post(
            "/login",
            &serde_json::json!({ "username": "ann", "password": PASSWORD }),
        ),
    )
    .await;
    assert_eq!(login.status, StatusCode::OK, "{}", login.text());
    let refresh = login.refresh_token();
    drop((router, state));
    store.close().await;

    // The restart: configuration read again, store opened again.
    let (router, _state, _store) = service(config_from(&dev).unwrap()).await;
    let rotated = call(&router, token_request(&refresh)).await;

    assert_eq!(rotated.status, StatusCode::OK, "{}", rotated.text());
    assert_ne!(rotated.refresh_token(), refresh);
}

#[tokio::test]
async fn a_restart_with_other_secrets_ends_sessions() {
    // The counterpart of the test above: the cookie really depends on the
    // secrets file, so losing it logs everyone out.
    let dir = tempfile::tempdir().unwrap();
    let dev = vars(&dir, &[], &SECRETS);
    let (router, state, store) = service(config_from(&dev).unwrap()).await;
    state.create_user("ann", PASSWORD, "user").await.unwrap();
    let refresh = call(
        &router,
        json_post(
            "/login",
            &serde_json::json!({ "username": "ann", "password": PASSWORD }),
        ),
    )
    .await
    .refresh_token();
    drop((router, state));
    store.close().await;

    std::fs::remove_file(dir.path().join("latchkey.db.secrets")).unwrap();
    let (router, _state, _store) = service(config_from(&dev).unwrap()).await;
    let response = call(&router, token_request(&refresh)).await;

    assert_eq!(response.status, StatusCode::UNAUTHORIZED);
}

// ---------------------------------------------------------------- the binary

fn run_binary(dir: &TempDir, vars: &HashMap<String, String>) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_latchkey"))
        .arg("serve")
        .env_clear()
        .envs(vars)
        .current_dir(dir.path())
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run latchkey")
}

#[test]
fn the_binary_in_production_without_secrets_exits_with_one_line_naming_jwt_secret() {
    let dir = tempfile::tempdir().unwrap();
    let vars = vars(&dir, &[PRODUCTION, ("BIND", "127.0.0.1:0")], &SECRETS);

    let output = run_binary(&dir, &vars);

    assert!(!output.status.success(), "{:?}", output.status);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(lines[0].contains("JWT_SECRET"), "{stderr}");
    assert!(!dir.path().join("latchkey.db.secrets").exists());
    assert!(
        !dir.path().join("latchkey.db").exists(),
        "nothing was started"
    );
}

#[test]
fn the_binary_with_an_invalid_setting_exits_with_one_line_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let vars = vars(&dir, &[("BCRYPT_COST", "99"), ("BIND", "127.0.0.1:0")], &[]);

    let output = run_binary(&dir, &vars);

    assert!(!output.status.success(), "{:?}", output.status);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(lines[0].contains("BCRYPT_COST"), "{stderr}");
}
