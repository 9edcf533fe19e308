//! Bounded connections, over real sockets to the real binary (README,
//! Security model): a request head must arrive within `HEADER_READ_TIMEOUT`
//! however slowly it dribbles, a keep-alive connection with nothing in flight
//! lasts `IDLE_TIMEOUT`, a body and its answer get `REQUEST_TIMEOUT` (then a
//! JSON `408`), and at `MAX_CONNECTIONS` the oldest idle connections make room
//! for new ones. Each test shortens the limit it is about to one second and
//! stretches the others, so only that limit can close what it sees close.
//!
//! No test measures time: a test waits (boundedly) for the server to close a
//! socket, and orders events by what the server has visibly done (an answer,
//! a `100 Continue`, a close).

use std::collections::HashMap;
use std::time::Duration;

use serde_json::Value;
use tempfile::TempDir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::process::ChildServer;
use crate::helpers::test_vars;

/// Far longer than any test: a limit that must not be the one acting.
const NEVER: &str = "600";
/// How long a test waits for something a one-second limit should bring about.
const PATIENCE: Duration = Duration::from_secs(15);

/// The binary with every connection limit out of the way, then `overrides`.
fn start(overrides: &[(&str, &str)]) -> (ChildServer, TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = vec![
        ("BIND", "127.0.0.1:0"),
        ("RUST_LOG", "latchkey=info"),
        ("HEADER_READ_TIMEOUT", NEVER),
        ("IDLE_TIMEOUT", NEVER),
        ("REQUEST_TIMEOUT", NEVER),
    ];
    settings.extend_from_slice(overrides);
    let vars: HashMap<String, String> = test_vars(&dir, &settings);
    let server = ChildServer::start(&vars, dir.path());
    (server, dir)
}

async fn connect(server: &ChildServer) -> TcpStream {
    let addr = server.url("").trim_start_matches("http://").to_owned();
    TcpStream::connect(addr).await.unwrap()
}

const HEALTHZ: &[u8] = b"GET /healthz HTTP/1.1\r\nHost: latchkey\r\n\r\n";

/// The head of a login whose 60-byte body is still to come. It asks for
/// `100 Continue`, so the client knows when the handler is reading the body.
const LOGIN_HEAD: &[u8] = b"POST /login HTTP/1.1\r\nHost: latchkey\r\n\
    Content-Type: application/json\r\nContent-Length: 60\r\nExpect: 100-continue\r\n\r\n";
/// That body, exactly 60 bytes: an unknown user, so the answer is a `401`.
const LOGIN_BODY: &[u8] = br#"{"username":"nobody","password":"not the password at all!"} "#;
const _: () = assert!(LOGIN_BODY.len() == 60);

/// One HTTP/1.1 answer, read whole.
#[derive(Debug)]
struct Answer {
    status: u16,
    head: String,
    body: Vec<u8>,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "not JSON ({e}): {}\n{}",
                self.head,
                String::from_utf8_lossy(&self.body)
            )
        })
    }
}

/// Reads one answer (head, then a `Content-Length` body); `None` when the
/// server closes the connection first.
async fn read_answer(stream: &mut TcpStream) -> Option<Answer> {
    let mut buffer = Vec::new();
    let head_end = loop {
        if let Some(i) = find(&buffer, b"\r\n\r\n") {
            break i + 4;
        }
        let mut chunk = [0_u8; 4096];
        match tokio::time::timeout(PATIENCE, stream.read(&mut chunk))
            .await
            .expect("an answer or a close in time")
        {
            Ok(0) | Err(_) => return None,
            Ok(n) => buffer.extend_from_slice(&chunk[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buffer[..head_end]).into_owned();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {head:?}"));
    let length: usize = head
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().ok())?
        })
        .unwrap_or(0);
    let mut body = buffer[head_end..].to_vec();
    while body.len() < length {
        let mut chunk = [0_u8; 4096];
        let n = tokio::time::timeout(PATIENCE, stream.read(&mut chunk))
            .await
            .expect("the rest of the body in time")
            .expect("the rest of the body");
        assert!(n > 0, "closed mid-body: {head}");
        body.extend_from_slice(&chunk[..n]);
    }
    Some(Answer { status, head, body })
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Sends `request` and reads its answer; `None` if the server had closed.
async fn exchange(stream: &mut TcpStream, request: &[u8]) -> Option<Answer> {
    if stream.write_all(request).await.is_err() {
        return None;
    }
    read_answer(stream).await
}

/// Waits for the server to close `stream` (EOF or reset), at most
/// `PATIENCE`; returns whatever it sent before closing.
async fn closed_by_server(stream: &mut TcpStream) -> Vec<u8> {
    let mut received = Vec::new();
    let mut chunk = [0_u8; 4096];
    loop {
        match tokio::time::timeout(PATIENCE, stream.read(&mut chunk)).await {
            Err(_) => panic!(
                "still open after {PATIENCE:?}; received {:?}",
                String::from_utf8_lossy(&received)
            ),
            Ok(Ok(0) | Err(_)) => return received,
            Ok(Ok(n)) => received.extend_from_slice(&chunk[..n]),
        }
    }
}

/// Sends the login head and waits for `100 Continue`: from then on the
/// request is in flight (its handler is reading the body).
async fn login_in_flight(stream: &mut TcpStream) {
    stream.write_all(LOGIN_HEAD).await.unwrap();
    let answer = read_answer(stream).await.expect("100 Continue");
    assert_eq!(answer.status, 100, "{}", answer.head);
}

#[tokio::test]
async fn a_half_sent_request_line_is_closed_after_the_header_timeout() {
    let (server, _dir) = start(&[("HEADER_READ_TIMEOUT", "1")]);
    let mut stream = connect(&server).await;
    stream.write_all(b"GET /heal").await.unwrap();

    let received = closed_by_server(&mut stream).await;
    assert!(
        received.is_empty(),
        "{:?}",
        String::from_utf8_lossy(&received)
    );

    // The server itself is fine.
    let mut fresh = connect(&server).await;
    assert_eq!(exchange(&mut fresh, HEALTHZ).await.unwrap().status, 200);
}

#[tokio::test]
async fn a_connection_that_dribbles_header_lines_is_closed_at_the_header_timeout() {
    let (server, _dir) = start(&[("HEADER_READ_TIMEOUT", "1")]);
    let mut stream = connect(&server).await;
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: latchkey\r\n")
        .await
        .unwrap();

    // A new header line every 200 ms: the head keeps growing, never ends.
    let mut closed = false;
    for line in 0..75 {
        let header = format!("X-Dribble-{line}: still here\r\n");
        if stream.write_all(header.as_bytes()).await.is_err() {
            closed = true;
            break;
        }
        let mut byte = [0_u8; 1];
        match tokio::time::timeout(Duration::from_millis(200), stream.read(&mut byte)).await {
            Err(_) => continue,
            Ok(Ok(0) | Err(_)) => {
                closed = true;
                break;
            }
            Ok(Ok(_)) => panic!("an answer to a head that never ended"),
        }
    }
    assert!(closed, "still open after 15 s of dribbling");
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_after_the_idle_timeout() {
    let (server, _dir) = start(&[("IDLE_TIMEOUT", "1")]);
    let mut stream = connect(&server).await;
    let answer = exchange(&mut stream, HEALTHZ).await.unwrap();
    assert_eq!(answer.status, 200);
    assert!(
        !answer
            .head
            .to_ascii_lowercase()
            .contains("connection: close"),
        "kept alive: {}",
        answer.head
    );

    let received = closed_by_server(&mut stream).await;
    assert!(
        received.is_empty(),
        "{:?}",
        String::from_utf8_lossy(&received)
    );
}

#[tokio::test]
async fn a_request_in_flight_is_not_cut_by_the_idle_timeout() {
    let (server, _dir) = start(&[("IDLE_TIMEOUT", "1")]);
    let mut busy = connect(&server).await;
    login_in_flight(&mut busy).await;

    // A connection that goes idle after `busy`'s request started: once the
    // idle timeout has closed it, `busy` has been quiet for longer still.
    let mut idle = connect(&server).await;
    assert_eq!(exchange(&mut idle, HEALTHZ).await.unwrap().status, 200);
    closed_by_server(&mut idle).await;

    let answer = exchange(&mut busy, LOGIN_BODY)
        .await
        .expect("the request in flight is still answered");
    assert_eq!(answer.status, 401, "{}", answer.head);
    assert_eq!(answer.json()["error"], "invalid_credentials");
}

#[tokio::test]
async fn a_slowly_sent_body_gets_408_in_the_json_shape() {
    let (server, _dir) = start(&[("REQUEST_TIMEOUT", "1")]);
    let mut stream = connect(&server).await;
    login_in_flight(&mut stream).await;

    // One byte of the body every 200 ms, until the server answers.
    let mut answer = None;
    for byte in LOGIN_BODY.iter().take(59) {
        if stream.write_all(&[*byte]).await.is_err() {
            break;
        }
        let mut peek = [0_u8; 1];
        if let Ok(Ok(n)) =
            tokio::time::timeout(Duration::from_millis(200), stream.peek(&mut peek)).await
        {
            if n > 0 {
                answer = read_answer(&mut stream).await;
            }
            break;
        }
    }
    let answer = answer.expect("an answer before the body was complete");
    assert_eq!(answer.status, 408, "{}", answer.head);
    let body = answer.json();
    assert_eq!(body["error"], "request_timeout", "{body}");
    assert!(body["message"].is_string(), "{body}");
    assert!(
        answer
            .head
            .to_ascii_lowercase()
            .contains("connection: close"),
        "{}",
        answer.head
    );
    closed_by_server(&mut stream).await;
}

#[tokio::test]
async fn at_the_cap_the_oldest_idle_connection_is_shed_and_a_new_request_answered() {
    let (server, _dir) = start(&[("MAX_CONNECTIONS", "4")]);
    // Four slots, filled oldest first with each kind of idle connection.
    let mut silent = connect(&server).await;
    let mut dribbling = connect(&server).await;
    dribbling.write_all(b"GET /heal").await.unwrap();
    let mut kept_alive = connect(&server).await;
    assert_eq!(
        exchange(&mut kept_alive, HEALTHZ).await.unwrap().status,
        200
    );
    let _newest = connect(&server).await;

    let mut fresh = connect(&server).await;
    assert_eq!(exchange(&mut fresh, HEALTHZ).await.unwrap().status, 200);

    // The oldest went; a younger idle one is still served.
    closed_by_server(&mut silent).await;
    assert_eq!(
        exchange(&mut kept_alive, HEALTHZ).await.unwrap().status,
        200
    );
    // The next newcomer takes the next oldest slot.
    let mut another = connect(&server).await;
    assert_eq!(exchange(&mut another, HEALTHZ).await.unwrap().status, 200);
    closed_by_server(&mut dribbling).await;
    assert!(
        server.stderr().contains("connection limit reached"),
        "{}",
        server.stderr()
    );
}

#[tokio::test]
async fn a_burst_of_connections_never_holds_more_than_the_cap_open() {
    let (server, _dir) = start(&[("MAX_CONNECTIONS", "4")]);
    let mut burst = Vec::new();
    for _ in 0..12 {
        burst.push(connect(&server).await);
    }
    // Answered only once the server has accepted (and made room for) the burst.
    let mut last = connect(&server).await;
    assert_eq!(exchange(&mut last, HEALTHZ).await.unwrap().status, 200);

    // `last` holds one slot; of the burst, only the newest three can be open.
    let mut answered = Vec::new();
    for (i, stream) in burst.iter_mut().enumerate() {
        if let Some(answer) = exchange(stream, HEALTHZ).await {
            assert_eq!(answer.status, 200);
            answered.push(i);
        }
    }
    assert_eq!(answered, [9, 10, 11]);
}

#[tokio::test]
async fn a_new_connection_is_closed_when_every_slot_has_a_request_in_flight() {
    let (server, _dir) = start(&[("MAX_CONNECTIONS", "2")]);
    let mut first = connect(&server).await;
    login_in_flight(&mut first).await;
    let mut second = connect(&server).await;
    login_in_flight(&mut second).await;

    // Nothing to shed: refused, not queued.
    let mut refused = connect(&server).await;
    let _ = refused.write_all(HEALTHZ).await;
    let received = closed_by_server(&mut refused).await;
    assert!(
        received.is_empty(),
        "{:?}",
        String::from_utf8_lossy(&received)
    );

    // The requests in flight are untouched; once one is answered its
    // connection is idle, and gives way to the next newcomer.
    assert_eq!(exchange(&mut first, LOGIN_BODY).await.unwrap().status, 401);
    let mut later = connect(&server).await;
    assert_eq!(exchange(&mut later, HEALTHZ).await.unwrap().status, 200);
    assert_eq!(exchange(&mut second, LOGIN_BODY).await.unwrap().status, 401);
}

#[tokio::test]
async fn silent_connections_beyond_the_open_file_limit_do_not_lock_out_new_requests() {
    let dir = tempfile::tempdir().unwrap();
    let vars = test_vars(
        &dir,
        &[
            ("BIND", "127.0.0.1:0"),
            ("RUST_LOG", "latchkey=info"),
            ("HEADER_READ_TIMEOUT", NEVER),
        ],
    );
    // A hard limit of 256 descriptors: the cap must shrink to fit under it.
    let server = ChildServer::start_with_open_file_limit(&vars, dir.path(), 256);
    let mut silent = Vec::new();
    for _ in 0..300 {
        silent.push(connect(&server).await);
    }
    let mut fresh = connect(&server).await;
    assert_eq!(exchange(&mut fresh, HEALTHZ).await.unwrap().status, 200);
    assert!(
        server.stderr().contains("MAX_CONNECTIONS lowered"),
        "{}",
        server.stderr()
    );
}
