//! HTTPS on `BIND` (README, "TLS"), over real TLS sockets with certificates
//! made here by rcgen and trusted by the test's own rustls client: HTTP/1.1
//! and HTTP/2 by ALPN, TLS 1.2 and 1.3 only, `Strict-Transport-Security`,
//! the cookie flow, the certificate replaced while connections stay open (by
//! `Tls::reload` in-process, by `SIGHUP` in the real binary, and by the
//! files changing), the connection limits and graceful shutdown.
//!
//! No test measures time: each waits (boundedly) for what the server does,
//! and holds requests in flight with the password-hashing hold.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, Version, header};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use latchkey::config::TlsSettings;
use latchkey::{Tls, TlsError, router};
use rustls::client::Resumption;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ProtocolVersion, RootCertStore, SupportedProtocolVersion, version};
use serde_json::{Value, json};
use tempfile::TempDir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_rustls::TlsConnector;

use crate::helpers::process::ChildServer;
use crate::helpers::{PASSWORD, TestApp, TestServer, call, test_vars};

/// Far longer than any test: a limit that must not be the one acting.
const NEVER: &str = "600";
/// How long a test waits for something a one-second limit, a signal or a
/// reload should bring about.
const PATIENCE: Duration = Duration::from_secs(15);
/// The name the test certificates are for.
const HOST: &str = "localhost";

// ------------------------------------------------------------ certificates

/// A self-signed certificate for `localhost` and its key.
struct Pair {
    cert: CertificateDer<'static>,
    cert_pem: String,
    key_pem: String,
}

fn pair() -> Pair {
    let rcgen::CertifiedKey { cert, signing_key } =
        rcgen::generate_simple_self_signed(vec![HOST.to_owned()]).unwrap();
    Pair {
        cert: cert.der().clone(),
        cert_pem: cert.pem(),
        key_pem: signing_key.serialize_pem(),
    }
}

/// `TLS_CERT_FILE` and `TLS_KEY_FILE` in a directory of their own.
struct Files {
    _dir: TempDir,
    cert: PathBuf,
    key: PathBuf,
}

impl Files {
    fn holding(pair: &Pair) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let files = Self {
            cert: dir.path().join("cert.pem"),
            key: dir.path().join("key.pem"),
            _dir: dir,
        };
        files.put(&pair.cert_pem, &pair.key_pem);
        files
    }

    /// Replaces both files as a renewal tool does: a new file renamed over
    /// the old one, so no reader ever sees half a file.
    fn put(&self, cert_pem: &str, key_pem: &str) {
        replace(&self.cert, cert_pem);
        replace(&self.key, key_pem);
    }

    fn settings(&self) -> TlsSettings {
        TlsSettings {
            cert_file: self.cert.clone(),
            key_file: self.key.clone(),
            hsts_max_age: Duration::from_secs(63_072_000),
        }
    }

    fn vars(&self) -> [(&'static str, String); 2] {
        [
            ("TLS_CERT_FILE", self.cert.display().to_string()),
            ("TLS_KEY_FILE", self.key.display().to_string()),
        ]
    }
}

fn replace(path: &Path, contents: &str) {
    let new = path.with_extension("new");
    std::fs::write(&new, contents).unwrap();
    std::fs::rename(&new, path).unwrap();
}

// ------------------------------------------------------------------ client

/// A client trusting `trusted`, offering `alpn`, speaking `versions`.
fn connector(
    trusted: &[&CertificateDer<'static>],
    alpn: &[&[u8]],
    versions: &[&'static SupportedProtocolVersion],
) -> TlsConnector {
    let mut roots = RootCertStore::empty();
    for cert in trusted {
        roots.add((*cert).clone()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    // A resumed session proves nothing new: the server sends no certificate
    // (RFC 8446 §2.2). Each connection here makes a full handshake, so the
    // certificate it sees is the one served at that moment.
    config.resumption = Resumption::disabled();
    TlsConnector::from(Arc::new(config))
}

const H2_OR_H1: &[&[u8]] = &[b"h2", b"http/1.1"];
const H1_ONLY: &[&[u8]] = &[b"http/1.1"];
const BOTH_VERSIONS: &[&SupportedProtocolVersion] = &[&version::TLS13, &version::TLS12];

/// One client connection over TLS, speaking what ALPN settled on.
struct Client {
    sender: Sender,
    /// The certificate the server presented in the handshake.
    peer: CertificateDer<'static>,
    alpn: Option<Vec<u8>>,
    tls_version: Option<ProtocolVersion>,
    authority: String,
    /// Ends when the connection does.
    driver: JoinHandle<()>,
}

#[derive(Clone)]
enum Sender {
    H1(Arc<tokio::sync::Mutex<http1::SendRequest<Full<Bytes>>>>),
    H2(http2::SendRequest<Full<Bytes>>),
}

/// An answer, read whole.
#[derive(Debug)]
struct Answer {
    status: StatusCode,
    version: Version,
    headers: axum::http::HeaderMap,
    body: Vec<u8>,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().unwrap())
    }

    /// The refresh cookie's `name=value`.
    fn refresh_cookie(&self) -> String {
        let set = self
            .headers
            .get_all(header::SET_COOKIE)
            .iter()
            .map(|v| v.to_str().unwrap())
            .find(|c| c.starts_with("__Host-refresh_token="))
            .unwrap_or_else(|| panic!("no refresh cookie: {:?}", self.headers));
        assert!(set.contains("; Secure"), "{set}");
        set.split(';').next().unwrap().to_owned()
    }
}

impl Client {
    async fn connect(addr: SocketAddr, connector: &TlsConnector) -> Self {
        Self::try_connect(addr, connector)
            .await
            .unwrap_or_else(|e| panic!("TLS connection: {e}"))
    }

    async fn try_connect(addr: SocketAddr, connector: &TlsConnector) -> std::io::Result<Self> {
        let tcp = TcpStream::connect(addr).await?;
        let name = ServerName::try_from(HOST).unwrap();
        let tls = connector.connect(name, tcp).await?;
        let (_, session) = tls.get_ref();
        let peer = session.peer_certificates().unwrap()[0].clone();
        let alpn = session.alpn_protocol().map(<[u8]>::to_vec);
        let tls_version = session.protocol_version();
        let io = TokioIo::new(tls);
        let (sender, driver) = if alpn.as_deref() == Some(b"h2") {
            let (sender, conn) = http2::handshake(TokioExecutor::new(), io).await.unwrap();
            let driver = tokio::spawn(async move {
                let _ = conn.await;
            });
            (Sender::H2(sender), driver)
        } else {
            let (sender, conn) = http1::handshake(io).await.unwrap();
            let driver = tokio::spawn(async move {
                let _ = conn.await;
            });
            (
                Sender::H1(Arc::new(tokio::sync::Mutex::new(sender))),
                driver,
            )
        };
        Ok(Self {
            sender,
            peer,
            alpn,
            tls_version,
            authority: format!("{HOST}:{}", addr.port()),
            driver,
        })
    }

    /// A request as a browser sends it: HTTP/1.1 names the host in `Host`,
    /// HTTP/2 in `:authority` (and sends no `Host`).
    fn request(&self, method: Method, path: &str) -> axum::http::request::Builder {
        match self.sender {
            Sender::H1(_) => Request::builder()
                .method(method)
                .uri(path)
                .header(header::HOST, &self.authority),
            Sender::H2(_) => Request::builder()
                .method(method)
                .uri(format!("https://{}{path}", self.authority)),
        }
    }

    async fn send(&self, request: Request<Full<Bytes>>) -> Answer {
        let response = match self.sender.clone() {
            Sender::H1(sender) => {
                let mut sender = sender.lock().await;
                sender.ready().await.expect("the connection is open");
                sender.send_request(request).await
            }
            Sender::H2(mut sender) => {
                sender.ready().await.expect("the connection is open");
                sender.send_request(request).await
            }
        }
        .expect("an answer");
        let (parts, body) = response.into_parts();
        let body = body.collect().await.unwrap().to_bytes().to_vec();
        Answer {
            status: parts.status,
            version: parts.version,
            headers: parts.headers,
            body,
        }
    }

    async fn get(&self, path: &str) -> Answer {
        let request = self.request(Method::GET, path).body(Full::default());
        self.send(request.unwrap()).await
    }

    async fn post_json(&self, path: &str, body: &Value) -> Answer {
        let request = self
            .request(Method::POST, path)
            .header(header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body.to_string())));
        self.send(request.unwrap()).await
    }

    /// Waits for the server to close the connection.
    async fn closed_by_server(self) {
        let Self { driver, sender, .. } = self;
        let closed = tokio::time::timeout(PATIENCE, driver).await;
        // Held until now: a client with no sender left would close the
        // connection itself.
        drop(sender);
        closed
            .expect("the server closes the connection in time")
            .unwrap();
    }
}

// ------------------------------------------------------------------ server

/// latchkey as `run_on` serves it (what the binary does), in this process,
/// over TLS with `pair`.
struct Server {
    app: TestApp,
    addr: SocketAddr,
    /// Kept: the directory goes with it.
    _files: Files,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<std::io::Result<()>>,
}

impl Server {
    async fn start(pair: &Pair, overrides: &[(&str, &str)]) -> Self {
        let files = Files::holding(pair);
        let tls_vars = files.vars();
        let mut vars: Vec<(&str, &str)> = vec![
            ("HEADER_READ_TIMEOUT", NEVER),
            ("IDLE_TIMEOUT", NEVER),
            ("REQUEST_TIMEOUT", NEVER),
        ];
        vars.extend(tls_vars.iter().map(|(k, v)| (*k, v.as_str())));
        vars.extend_from_slice(overrides);
        let app = TestApp::with(&vars).await;
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(latchkey::run_on(listener, app.auth.clone(), async {
            let _ = stopped.await;
        }));
        Self {
            app,
            addr,
            _files: files,
            stop: Some(stop),
            task,
        }
    }

    /// Begins a graceful shutdown, as SIGTERM does.
    fn shut_down(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }

    /// Waits for serving to end.
    async fn stopped(self) {
        tokio::time::timeout(PATIENCE, self.task)
            .await
            .expect("stops in time")
            .unwrap()
            .unwrap();
    }
}

/// Signs up and signs in `ann` on `client`; returns the login's answer.
async fn signed_in(client: &Client) -> Answer {
    let account = json!({ "username": "ann", "password": PASSWORD });
    let registered = client.post_json("/register", &account).await;
    assert_eq!(registered.status, StatusCode::CREATED, "{registered:?}");
    let login = client.post_json("/login", &account).await;
    assert_eq!(login.status, StatusCode::OK, "{login:?}");
    login
}

/// Holds password checks: a login sent now stays in flight until the guard
/// is dropped.
async fn hold_hashing(app: &TestApp) -> latchkey::testing::HoldGuard {
    // The dummy hash of unknown users is made once; made now, it cannot
    // pass for a held check below.
    app.auth.hasher().warm_up().await.unwrap();
    app.auth.hasher().hold()
}

/// Waits until `jobs` password checks are queued or running: the requests
/// that asked for them are in flight, held by the hashing hold.
async fn hashing(app: &TestApp, jobs: usize) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while app.auth.hasher().pending() < jobs {
        assert!(
            tokio::time::Instant::now() < deadline,
            "never {jobs} password checks in flight"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

// ------------------------------------------------------------------- tests

#[tokio::test]
async fn http2_and_http1_are_chosen_by_alpn_and_every_answer_carries_hsts() {
    let first = pair();
    let server = Server::start(&first, &[]).await;

    for (offer, expected_alpn, expected_version) in [
        (H2_OR_H1, Some(&b"h2"[..]), Version::HTTP_2),
        (H1_ONLY, Some(&b"http/1.1"[..]), Version::HTTP_11),
        // A client that offers nothing gets HTTP/1.1.
        (&[][..], None, Version::HTTP_11),
    ] {
        let client = Client::connect(
            server.addr,
            &connector(&[&first.cert], offer, BOTH_VERSIONS),
        )
        .await;
        assert_eq!(client.alpn.as_deref(), expected_alpn);
        for path in ["/healthz", "/no-such-route", "/static/latchkey.js"] {
            let answer = client.get(path).await;
            assert_eq!(answer.version, expected_version, "{path}");
            assert_eq!(
                answer.header("strict-transport-security"),
                Some("max-age=63072000; includeSubDomains"),
                "{path} over {expected_version:?}: {answer:?}"
            );
        }
        assert_eq!(client.get("/healthz").await.status, StatusCode::OK);
        // Named by `Host` over HTTP/1.1 and by `:authority` over HTTP/2.
        let discovery = client.get("/.well-known/openid-configuration").await;
        assert_eq!(
            discovery.json()["jwks_uri"],
            format!("https://{}/.well-known/jwks.json", client.authority),
            "{expected_version:?}"
        );
    }
}

#[tokio::test]
async fn the_cookie_flow_works_end_to_end_over_http2_and_http1() {
    for offer in [H2_OR_H1, H1_ONLY] {
        let first = pair();
        let server = Server::start(&first, &[]).await;
        let client = Client::connect(
            server.addr,
            &connector(&[&first.cert], offer, BOTH_VERSIONS),
        )
        .await;
        let origin = format!("https://{}", client.authority);

        let login = signed_in(&client).await;
        let cookie = login.refresh_cookie();
        let access = login.json()["access_token"].as_str().unwrap().to_owned();

        let bearer = |path: &str, access: &str| {
            client
                .request(Method::GET, path)
                .header(header::AUTHORIZATION, format!("Bearer {access}"))
                .body(Full::default())
                .unwrap()
        };
        let protected = client.send(bearer("/protected", &access)).await;
        assert_eq!(protected.status, StatusCode::OK, "{protected:?}");

        // The browser's refresh: the cookie, and its own origin, which the
        // Origin check compares with the host the request was sent to.
        let refresh = client
            .request(Method::POST, "/token")
            .header(header::COOKIE, &cookie)
            .header(header::ORIGIN, &origin)
            .body(Full::default())
            .unwrap();
        let rotated = client.send(refresh).await;
        assert_eq!(rotated.status, StatusCode::OK, "{rotated:?}");
        assert_ne!(rotated.refresh_cookie(), cookie, "the cookie rotates");
        let access = rotated.json()["access_token"].as_str().unwrap().to_owned();
        let protected = client.send(bearer("/protected", &access)).await;
        assert_eq!(protected.status, StatusCode::OK, "{protected:?}");
        assert!(
            protected.header("strict-transport-security").is_some(),
            "{protected:?}"
        );

        // Another site's page cannot use the cookie.
        let forged = client
            .request(Method::POST, "/token")
            .header(header::COOKIE, rotated.refresh_cookie())
            .header(header::ORIGIN, "https://evil.example")
            .body(Full::default())
            .unwrap();
        let refused = client.send(forged).await;
        assert_eq!(refused.status, StatusCode::FORBIDDEN, "{refused:?}");
        assert_eq!(refused.json()["error"], "forbidden_origin");
    }
}

#[tokio::test]
async fn headers_over_the_limits_get_the_json_431_over_http2_as_over_http1() {
    let first = pair();
    let server = Server::start(&first, &[]).await;
    for offer in [H2_OR_H1, H1_ONLY] {
        let client = Client::connect(
            server.addr,
            &connector(&[&first.cert], offer, BOTH_VERSIONS),
        )
        .await;
        // One header over 16 KiB; five of 14 KiB, over 64 KiB in all.
        let one = vec![("x-big-0", "a".repeat(17 * 1024))];
        let five: Vec<_> = ["x-big-1", "x-big-2", "x-big-3", "x-big-4", "x-big-5"]
            .into_iter()
            .map(|name| (name, "b".repeat(14 * 1024)))
            .collect();
        for headers in [one, five] {
            let mut request = client.request(Method::GET, "/healthz");
            for (name, value) in &headers {
                request = request.header(*name, value);
            }
            let answer = client.send(request.body(Full::default()).unwrap()).await;
            assert_eq!(
                answer.status,
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                "{:?}",
                answer.version
            );
            assert_eq!(answer.json()["error"], "headers_too_large");
        }
        assert_eq!(client.get("/healthz").await.status, StatusCode::OK);
    }
}

#[tokio::test]
async fn tls_1_3_and_1_2_are_served_and_older_versions_refused() {
    let first = pair();
    let server = Server::start(&first, &[]).await;
    for (offered, agreed) in [
        (&version::TLS13, ProtocolVersion::TLSv1_3),
        (&version::TLS12, ProtocolVersion::TLSv1_2),
    ] {
        let client = Client::connect(
            server.addr,
            &connector(&[&first.cert], H2_OR_H1, &[offered]),
        )
        .await;
        assert_eq!(client.tls_version, Some(agreed));
        assert_eq!(client.get("/healthz").await.status, StatusCode::OK);
    }

    // rustls' client cannot speak TLS 1.1 or 1.0: their ClientHellos, by
    // hand, beside the same hello as TLS 1.2 to show it would be taken.
    for (legacy, name, taken) in [
        ([3, 3], "TLS 1.2", true),
        ([3, 2], "TLS 1.1", false),
        ([3, 1], "TLS 1.0", false),
    ] {
        let mut stream = TcpStream::connect(server.addr).await.unwrap();
        stream.write_all(&client_hello(legacy)).await.unwrap();
        let mut answer = [0_u8; 7];
        tokio::time::timeout(PATIENCE, stream.read_exact(&mut answer))
            .await
            .expect("an answer in time")
            .unwrap();
        if taken {
            // A handshake record (22) beginning with a ServerHello (2).
            assert_eq!((answer[0], answer[5]), (22, 2), "{name}: {answer:?}");
        } else {
            // A fatal alert (21; level 2) saying protocol_version (70, RFC
            // 8446 §6.2), and no ServerHello.
            assert_eq!(
                (answer[0], answer[5], answer[6]),
                (21, 2, 70),
                "{name}: {answer:?}"
            );
        }
    }
}

/// A ClientHello of TLS 1.0 to 1.2 (RFC 5246 §7.4.1.2), with no
/// `supported_versions` (so nothing newer is offered): the suites, groups
/// and signature schemes a TLS 1.2 server with an ECDSA certificate takes.
fn client_hello(version: [u8; 2]) -> Vec<u8> {
    fn with_length(length_bytes: usize, body: &[u8]) -> Vec<u8> {
        let length = u32::try_from(body.len()).unwrap().to_be_bytes();
        let mut out = length[4 - length_bytes..].to_vec();
        out.extend_from_slice(body);
        out
    }
    fn extension(kind: u16, body: &[u8]) -> Vec<u8> {
        let mut out = kind.to_be_bytes().to_vec();
        out.extend(with_length(2, body));
        out
    }
    let mut hello = version.to_vec();
    hello.extend([0x5a; 32]); // random
    hello.push(0); // no session id
    // ECDHE-ECDSA- and ECDHE-RSA-AES128-GCM-SHA256, and two CBC suites of
    // TLS 1.0's time.
    hello.extend(with_length(
        2,
        &[0xc0, 0x2b, 0xc0, 0x2f, 0xc0, 0x13, 0x00, 0x2f],
    ));
    hello.extend([1, 0]); // null compression
    let mut extensions = Vec::new();
    // supported_groups: x25519, secp256r1.
    extensions.extend(extension(10, &with_length(2, &[0x00, 0x1d, 0x00, 0x17])));
    // ec_point_formats: uncompressed.
    extensions.extend(extension(11, &[1, 0]));
    // signature_algorithms: ecdsa_secp256r1_sha256, rsa_pss_rsae_sha256,
    // rsa_pkcs1_sha256.
    extensions.extend(extension(13, &with_length(2, &[4, 3, 8, 4, 4, 1])));
    hello.extend(with_length(2, &extensions));
    let mut handshake = vec![1]; // client_hello
    handshake.extend(with_length(3, &hello));
    let mut record = vec![22, 3, 1]; // a handshake record, framed as TLS 1.0
    record.extend(with_length(2, &handshake));
    record
}

#[tokio::test]
async fn a_reloaded_certificate_reaches_new_connections_while_open_ones_keep_working() {
    let (first, second) = (pair(), pair());
    let files = Files::holding(&first);
    let tls = Tls::load(&files.settings()).unwrap();
    let app = TestApp::new().await;
    let server = TestServer::serving(router(app.auth.clone()), Some(tls.clone())).await;
    let addr = server.addr;
    let trusting_both = connector(&[&first.cert, &second.cert], H2_OR_H1, BOTH_VERSIONS);
    let trusting_both_h1 = connector(&[&first.cert, &second.cert], H1_ONLY, BOTH_VERSIONS);
    let open_h2 = Client::connect(addr, &trusting_both).await;
    let open_h1 = Client::connect(addr, &trusting_both_h1).await;
    assert_eq!(open_h2.peer, first.cert);
    assert_eq!(open_h2.get("/healthz").await.status, StatusCode::OK);
    assert_eq!(open_h1.get("/healthz").await.status, StatusCode::OK);

    files.put(&second.cert_pem, &second.key_pem);
    tls.reload().unwrap();

    let fresh = Client::connect(addr, &trusting_both).await;
    assert_eq!(fresh.peer, second.cert, "new connections get the new pair");
    assert_eq!(fresh.get("/healthz").await.status, StatusCode::OK);
    for open in [&open_h2, &open_h1] {
        assert_eq!(open.get("/healthz").await.status, StatusCode::OK);
    }

    // Broken replacements are refused, and the second pair goes on serving.
    let third = pair();
    let half = &third.cert_pem[..third.cert_pem.len() / 2];
    for (cert_pem, key_pem, refusal) in [
        // Another certificate's key.
        (third.cert_pem.as_str(), second.key_pem.as_str(), "mismatch"),
        // Not PEM at all.
        ("not a certificate", &third.key_pem, "TLS_CERT_FILE"),
        // A certificate cut short.
        (half, &third.key_pem, "TLS_CERT_FILE"),
        // No key in the key file.
        (&third.cert_pem, &third.cert_pem, "TLS_KEY_FILE"),
    ] {
        files.put(cert_pem, key_pem);
        let refused = tls.reload().unwrap_err();
        match (&refused, refusal) {
            (TlsError::KeyMismatch, "mismatch") => {}
            (TlsError::Pem { variable, .. }, _) if *variable == refusal => {}
            _ => panic!("{refusal}: {refused:?}"),
        }
        let after = Client::connect(addr, &trusting_both).await;
        assert_eq!(
            after.peer, second.cert,
            "still the second pair after: {refused}"
        );
        assert_eq!(after.get("/healthz").await.status, StatusCode::OK);
    }
    // A good pair, but the key gone before the reload reads it.
    files.put(&third.cert_pem, &third.key_pem);
    std::fs::remove_file(&files.key).unwrap();
    let missing = tls.reload().unwrap_err();
    assert!(
        matches!(
            &missing,
            TlsError::Read {
                variable: "TLS_KEY_FILE",
                ..
            }
        ),
        "{missing:?}"
    );
    assert!(
        missing.to_string().starts_with("TLS_KEY_FILE: "),
        "{missing}"
    );
    let after = Client::connect(addr, &trusting_both).await;
    assert_eq!(after.peer, second.cert);
    for open in [&open_h2, &open_h1, &fresh] {
        assert_eq!(open.get("/healthz").await.status, StatusCode::OK);
    }

    server.stop().await;
}

#[tokio::test]
async fn a_changed_pair_of_files_is_picked_up_without_a_signal() {
    let (first, second) = (pair(), pair());
    let files = Files::holding(&first);
    let tls = Tls::load(&files.settings()).unwrap();
    let app = TestApp::new().await;
    let server = TestServer::serving(router(app.auth.clone()), Some(tls.clone())).await;
    let addr = server.addr;
    let watching = tokio::spawn(tls.clone().watch(Duration::from_millis(20)));
    let trusting_both = connector(&[&first.cert, &second.cert], H2_OR_H1, BOTH_VERSIONS);
    let open = Client::connect(addr, &trusting_both).await;
    assert_eq!(open.peer, first.cert);

    files.put(&second.cert_pem, &second.key_pem);
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let fresh = Client::connect(addr, &trusting_both).await;
        if fresh.peer == second.cert {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the new files were not picked up"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(open.get("/healthz").await.status, StatusCode::OK);
    watching.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_swaps_the_certificate_of_the_running_binary_and_a_broken_one_is_refused() {
    let (first, second, third) = (pair(), pair(), pair());
    let files = Files::holding(&first);
    let dir = tempfile::tempdir().unwrap();
    let tls_vars = files.vars();
    let mut settings: Vec<(&str, &str)> =
        vec![("BIND", "127.0.0.1:0"), ("RUST_LOG", "latchkey=info")];
    settings.extend(tls_vars.iter().map(|(k, v)| (*k, v.as_str())));
    let vars: HashMap<String, String> = test_vars(&dir, &settings);
    let mut server = ChildServer::start(&vars, dir.path());
    assert!(
        server.stderr().contains("scheme=\"https\"") || server.stderr().contains("scheme=https"),
        "{}",
        server.stderr()
    );
    let addr: SocketAddr = server.address().parse().unwrap();
    let trusting_all = connector(
        &[&first.cert, &second.cert, &third.cert],
        H2_OR_H1,
        BOTH_VERSIONS,
    );
    let open = Client::connect(addr, &trusting_all).await;
    assert_eq!(open.peer, first.cert);
    assert_eq!(open.get("/healthz").await.status, StatusCode::OK);

    files.put(&second.cert_pem, &second.key_pem);
    server.hang_up();
    logged(&server, "TLS certificate reloaded", 1).await;
    let fresh = Client::connect(addr, &trusting_all).await;
    assert_eq!(fresh.peer, second.cert);
    assert_eq!(open.get("/healthz").await.status, StatusCode::OK);

    // The third certificate with the second's key: refused, and logged.
    files.put(&third.cert_pem, &second.key_pem);
    server.hang_up();
    let log = logged(&server, "TLS certificate not reloaded", 1).await;
    assert!(log.contains("ERROR"), "{log}");
    let after = Client::connect(addr, &trusting_all).await;
    assert_eq!(after.peer, second.cert, "the second pair still serves");
    for client in [&open, &fresh, &after] {
        assert_eq!(client.get("/healthz").await.status, StatusCode::OK);
    }
    assert!(server.wait_exit(Duration::ZERO).is_none(), "still running");

    server.terminate();
    let status = server.wait_exit(PATIENCE).expect("exits on SIGTERM");
    assert!(status.success(), "{status}");
}

/// Waits for the child's stderr to say `text` at least `times` times.
async fn logged(server: &ChildServer, text: &str, times: usize) -> String {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let log = server.stderr();
        if log.matches(text).count() >= times {
            return log;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no {text:?} logged:\n{log}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[test]
fn the_binary_refuses_to_start_with_a_certificate_it_cannot_load() {
    let first = pair();
    let files = Files::holding(&first);
    std::fs::remove_file(&files.cert).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let tls_vars = files.vars();
    let mut settings: Vec<(&str, &str)> = vec![("BIND", "127.0.0.1:0")];
    settings.extend(tls_vars.iter().map(|(k, v)| (*k, v.as_str())));
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_latchkey"))
        .env_clear()
        .envs(test_vars(&dir, &settings))
        .current_dir(dir.path())
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();

    // As for any invalid setting (README, Configuration).
    assert_eq!(output.status.code(), Some(2), "{:?}", output.status);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(lines[0].contains("TLS_CERT_FILE"), "{stderr}");
    assert!(
        !dir.path().join("latchkey.db").exists(),
        "nothing was started"
    );
}

#[tokio::test]
async fn graceful_shutdown_lets_in_flight_tls_requests_finish_on_http2_and_http1() {
    for offer in [H2_OR_H1, H1_ONLY] {
        let first = pair();
        let mut server = Server::start(&first, &[]).await;
        let client = Arc::new(
            Client::connect(
                server.addr,
                &connector(&[&first.cert], offer, BOTH_VERSIONS),
            )
            .await,
        );
        signed_in(&client).await;
        let hold = hold_hashing(&server.app).await;
        let in_flight = tokio::spawn({
            let client = client.clone();
            async move {
                let account = json!({ "username": "ann", "password": PASSWORD });
                client.post_json("/login", &account).await
            }
        });
        hashing(&server.app, 1).await;

        server.shut_down();
        // New connections are refused while the login still waits.
        let deadline = tokio::time::Instant::now() + PATIENCE;
        while TcpStream::connect(server.addr).await.is_ok() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "still accepting after shutdown began"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(!in_flight.is_finished(), "the login was held");

        drop(hold);
        let answer = in_flight.await.unwrap();
        assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
        answer.refresh_cookie();
        server.stopped().await;
    }
}

#[tokio::test]
async fn a_connection_that_never_finishes_its_handshake_is_closed_at_the_header_timeout() {
    let first = pair();
    let server = Server::start(&first, &[("HEADER_READ_TIMEOUT", "1")]).await;
    let hello = client_hello([3, 3]);
    // Silent; and a ClientHello that stops half-way.
    for sent in [&[][..], &hello[..hello.len() / 2]] {
        let mut stream = TcpStream::connect(server.addr).await.unwrap();
        stream.write_all(sent).await.unwrap();
        assert_eq!(closed(&mut stream).await, b"");
    }
    // A client that does finish it is served.
    let client = Client::connect(
        server.addr,
        &connector(&[&first.cert], H2_OR_H1, BOTH_VERSIONS),
    )
    .await;
    assert_eq!(client.get("/healthz").await.status, StatusCode::OK);
}

#[tokio::test]
async fn at_the_cap_a_connection_stalled_in_its_handshake_makes_room_for_a_new_one() {
    let first = pair();
    let server = Server::start(&first, &[("MAX_CONNECTIONS", "1")]).await;
    let mut stalled = TcpStream::connect(server.addr).await.unwrap();
    stalled.write_all(&[22, 3, 1]).await.unwrap();

    let client = Client::connect(
        server.addr,
        &connector(&[&first.cert], H2_OR_H1, BOTH_VERSIONS),
    )
    .await;
    assert_eq!(client.get("/healthz").await.status, StatusCode::OK);
    assert_eq!(closed(&mut stalled).await, b"");
}

/// Waits for the server to close `stream` (end of stream or reset); returns
/// what it sent before.
async fn closed(stream: &mut TcpStream) -> Vec<u8> {
    let mut received = Vec::new();
    let _ = tokio::time::timeout(PATIENCE, stream.read_to_end(&mut received))
        .await
        .expect("closed by the server in time");
    received
}

#[tokio::test]
async fn an_http2_connection_is_idle_only_when_none_of_its_streams_is_in_flight() {
    let first = pair();
    let server = Server::start(&first, &[("IDLE_TIMEOUT", "1")]).await;
    let h2 = connector(&[&first.cert], H2_OR_H1, BOTH_VERSIONS);
    let busy = Arc::new(Client::connect(server.addr, &h2).await);
    signed_in(&busy).await;
    let hold = hold_hashing(&server.app).await;
    let login = tokio::spawn({
        let busy = busy.clone();
        async move {
            let account = json!({ "username": "ann", "password": PASSWORD });
            busy.post_json("/login", &account).await
        }
    });
    hashing(&server.app, 1).await;
    // Another stream on the same connection comes and goes.
    assert_eq!(busy.get("/healthz").await.status, StatusCode::OK);

    // A connection that goes idle after `busy`'s last stream ended: once the
    // idle timeout has closed it, `busy` has had no stream end for longer.
    let idle = Client::connect(server.addr, &h2).await;
    assert_eq!(idle.get("/healthz").await.status, StatusCode::OK);
    idle.closed_by_server().await;

    drop(hold);
    let answer = login.await.unwrap();
    assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
    // With nothing in flight any more, it is idle, and closed in its turn.
    Arc::into_inner(busy).unwrap().closed_by_server().await;
}

#[tokio::test]
async fn an_http2_stream_reset_by_the_client_leaves_nothing_in_flight() {
    let first = pair();
    let server = Server::start(&first, &[("IDLE_TIMEOUT", "1")]).await;
    let client = Client::connect(
        server.addr,
        &connector(&[&first.cert], H2_OR_H1, BOTH_VERSIONS),
    )
    .await;
    signed_in(&client).await;
    let hold = hold_hashing(&server.app).await;
    let Sender::H2(mut sender) = client.sender.clone() else {
        panic!("HTTP/2 was offered")
    };
    let request = client
        .request(Method::POST, "/login")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(
            json!({ "username": "ann", "password": PASSWORD }).to_string(),
        )))
        .unwrap();
    let login = tokio::spawn(async move { sender.send_request(request).await });
    hashing(&server.app, 1).await;
    // Dropping the answer resets the stream (RST_STREAM, CANCEL).
    login.abort();

    // Nothing in flight: the idle timeout closes the connection, although
    // the reset login's password check has not even run.
    client.closed_by_server().await;
    drop(hold);
}

// ------------------------------------------------------------ the contract

#[tokio::test]
async fn with_tls_every_described_response_names_hsts_and_without_it_none_does() {
    let first = pair();
    let files = Files::holding(&first);
    let tls_vars = files.vars();
    let with_tls: Vec<(&str, &str)> = tls_vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
    for (overrides, expected) in [
        (&with_tls[..], Some("max-age=63072000; includeSubDomains")),
        (
            &[("HSTS_MAX_AGE", "0"), with_tls[0], with_tls[1]][..],
            Some("max-age=0; includeSubDomains"),
        ),
        (&[][..], None),
    ] {
        let app = TestApp::with(overrides).await;
        let doc = app.send(get("/openapi.json")).await.json();
        let mut described = 0;
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, operation) in item.as_object().unwrap() {
                for (status, response) in operation["responses"].as_object().unwrap() {
                    let hsts = &response["headers"]["strict-transport-security"];
                    match expected {
                        Some(value) => {
                            assert_eq!(hsts["schema"]["const"], value, "{method} {path} {status}");
                            assert_eq!(hsts["required"], true, "{method} {path} {status}");
                            described += 1;
                        }
                        None => assert!(hsts.is_null(), "{method} {path} {status}"),
                    }
                }
            }
        }
        assert!(expected.is_none() || described > 20, "{described}");

        // The router sends what the description says, refusals included.
        let too_large = Request::get("/healthz")
            .header("x-big", "a".repeat(20 * 1024))
            .body(Body::empty())
            .unwrap();
        for request in [get("/healthz"), get("/nowhere"), too_large] {
            let response = call(&app.router, request).await;
            assert_eq!(
                response.header("strict-transport-security"),
                expected,
                "{}",
                response.status
            );
        }
    }
}

fn get(path: &str) -> Request<Body> {
    Request::get(path).body(Body::empty()).unwrap()
}
