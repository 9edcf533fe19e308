//! One HTTP/1.1 keep-alive connection on loopback, through hyper's own client
//! connection: no pool, no redirects, no cookie jar, so the load generator
//! spends as little as it can per request and the server is what is measured.
//! Over TLS for the addresses [`serve_tls_at`] names.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, LazyLock, Mutex, PoisonError};

use anyhow::{Context, Result};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::client::conn::http1::{self, SendRequest};
use hyper::header::{HOST, HeaderMap, HeaderValue};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{ClientConfig, RootCertStore};

/// The addresses served over TLS, and how to reach each: every connection
/// the load generator opens, wherever in it, goes the same way to one server.
static TLS: LazyLock<Mutex<HashMap<SocketAddr, TlsConnector>>> = LazyLock::new(Default::default);

/// From now on, connections to `addr` speak TLS (HTTP/1.1 by ALPN) to a
/// server whose certificate is `certificate`, for the name `localhost`.
pub fn serve_tls_at(addr: SocketAddr, certificate: CertificateDer<'static>) -> Result<()> {
    let mut roots = RootCertStore::empty();
    roots.add(certificate)?;
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    TLS.lock()
        .unwrap_or_else(PoisonError::into_inner)
        .insert(addr, TlsConnector::from(Arc::new(config)));
    Ok(())
}

/// hyper's HTTP/1.1 client over `io`, its connection driven by a task.
async fn handshake<I>(io: I) -> Result<SendRequest<Full<Bytes>>>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (sender, connection) = http1::handshake(TokioIo::new(io)).await?;
    tokio::spawn(async move {
        // Ends when the sender is dropped or the server closes.
        let _ = connection.await;
    });
    Ok(sender)
}

pub struct Conn {
    addr: SocketAddr,
    host: HeaderValue,
    sender: SendRequest<Full<Bytes>>,
}

pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Conn {
    pub async fn open(addr: SocketAddr) -> Result<Self> {
        let stream = TcpStream::connect(addr)
            .await
            .with_context(|| format!("connecting to {addr}"))?;
        stream.set_nodelay(true)?;
        let tls = TLS
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&addr)
            .cloned();
        let sender = match tls {
            Some(connector) => {
                let name = ServerName::try_from("localhost")?;
                handshake(connector.connect(name, stream).await?).await?
            }
            None => handshake(stream).await?,
        };
        Ok(Self {
            addr,
            host: HeaderValue::from_str(&addr.to_string())?,
            sender,
        })
    }

    /// Sends one request and reads the whole answer.
    pub async fn send(
        &mut self,
        method: Method,
        path: &str,
        headers: &[(&'static str, &HeaderValue)],
        body: Bytes,
    ) -> Result<Reply> {
        let mut request = Request::builder().method(method).uri(path);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request
            .header(HOST, &self.host)
            .body(Full::new(body))
            .context("building the request")?;
        self.sender.ready().await?;
        let response = self.sender.send_request(request).await?;
        let (parts, body) = response.into_parts();
        let body = body.collect().await?.to_bytes();
        Ok(Reply {
            status: parts.status,
            headers: parts.headers,
            body,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn is_closed(&self) -> bool {
        self.sender.is_closed()
    }
}
