//! TLS for the server, with rustls (ring provider; no OpenSSL): [`Tls`] loads the PEM certificate
//! chain and private key (and, for client-certificate authentication, a CA bundle), builds the
//! rustls `ServerConfig` with ALPN `h2` and `http/1.1`, performs handshakes bounded by a timeout,
//! and reloads the files when they change on disk ([`Tls::watch`], or [`Tls::reload`] on SIGHUP).
//! A reload that fails keeps the previous configuration. Handshake failures are logged at debug,
//! at most one line per second per peer address ([`FailureLog`]), so a scanner cannot flood the log.
//!
//! [`Stream`] is what hyper serves: a plain TCP stream or a TLS one. Nothing here binds, accepts or
//! speaks HTTP: `server.rs` hands each accepted `TcpStream` to [`Tls::accept`] and serves the
//! result; `startup.rs` loads the files, `main.rs` reloads them on SIGHUP.

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use rustls::RootCertStore;
use rustls::ServerConfig;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_rustls::server::TlsStream;

/// The ALPN name of HTTP/2.
pub const ALPN_H2: &[u8] = b"h2";
/// The ALPN name of HTTP/1.1.
pub const ALPN_HTTP1: &[u8] = b"http/1.1";

/// At most one handshake-failure line per peer address in this time.
const FAILURE_LOG_INTERVAL: Duration = Duration::from_secs(1);
/// Peer addresses remembered by the failure log; beyond that, failures of new peers go unlogged
/// until older entries expire.
const FAILURE_LOG_PEERS: usize = 4096;

/// The PEM files TLS is configured from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The certificate chain, leaf first.
    pub cert: PathBuf,
    /// The private key of the leaf certificate (PKCS#8, PKCS#1 or SEC1; not encrypted).
    pub key: PathBuf,
    /// CA certificates that sign client certificates; when set, a client must present one.
    pub client_ca: Option<PathBuf>,
}

/// Why a TLS configuration cannot be built from its files.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file cannot be read.
    #[error("cannot read the {what} {path}: {source}")]
    Read {
        /// Which file (`certificate file`, ...).
        what: &'static str,
        /// Its path.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// A file is not PEM, or holds nothing of the kind expected.
    #[error("the {what} {path} {problem}")]
    Pem {
        /// Which file.
        what: &'static str,
        /// Its path.
        path: PathBuf,
        /// What is wrong with it.
        problem: String,
    },
    /// rustls refused the certificate and key (not a certificate, or a key of another certificate).
    #[error("the certificate {cert} and the key {key} cannot be used together: {source}")]
    CertificateKey {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
        /// rustls's reason.
        source: rustls::Error,
    },
    /// The client CA bundle cannot verify client certificates.
    #[error("the client CA file {path} cannot be used: {problem}")]
    ClientCa {
        /// Its path.
        path: PathBuf,
        /// Why.
        problem: String,
    },
    /// rustls refused the protocol versions of the provider (a build problem, not a file problem).
    #[error("cannot set up TLS: {0}")]
    Setup(rustls::Error),
}

/// The server's TLS: the current rustls configuration and where it comes from. Cheap to clone.
#[derive(Clone)]
pub struct Tls(Arc<Inner>);

struct Inner {
    files: TlsFiles,
    config: RwLock<Arc<ServerConfig>>,
    /// The files' modification times and sizes when they were last read.
    stamp: Mutex<Stamp>,
    failures: FailureLog,
}

/// Modification time and size of each file (`None`: cannot be read).
type Stamp = Vec<Option<(SystemTime, u64)>>;

impl fmt::Debug for Tls {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.debug_struct("Tls").field("files", &self.0.files).finish_non_exhaustive()
    }
}

impl Tls {
    /// Reads the files and builds the configuration; the error says which file is wrong and why.
    pub fn load(files: TlsFiles) -> Result<Tls, TlsError> {
        let stamp = stamp(&files);
        let config = server_config(&files)?;
        Ok(Tls(Arc::new(Inner {
            files,
            config: RwLock::new(Arc::new(config)),
            stamp: Mutex::new(stamp),
            failures: FailureLog::default(),
        })))
    }

    /// The files this configuration comes from.
    pub fn files(&self) -> &TlsFiles {
        &self.0.files
    }

    /// The configuration new handshakes use.
    pub fn config(&self) -> Arc<ServerConfig> {
        Arc::clone(&self.0.config.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// Reads the files again and, if they make a valid configuration, uses it for new handshakes
    /// (open connections keep theirs). On error the previous configuration stays. Blocking I/O.
    pub fn reload(&self) -> Result<(), TlsError> {
        let stamp = stamp(&self.0.files);
        *self.0.stamp.lock().unwrap_or_else(PoisonError::into_inner) = stamp;
        let config = server_config(&self.0.files)?;
        *self.0.config.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(config);
        Ok(())
    }

    /// [`reload`](Tls::reload)s if a file's modification time or size changed since the last
    /// load; whether it did. Files that fail to load are not retried until they change again.
    pub fn reload_if_changed(&self) -> Result<bool, TlsError> {
        let changed = *self.0.stamp.lock().unwrap_or_else(PoisonError::into_inner) != stamp(&self.0.files);
        if changed {
            self.reload()?;
        }
        Ok(changed)
    }

    /// Reloads now, off the runtime's threads, and logs the outcome (SIGHUP).
    pub async fn reload_now(&self) {
        let tls = self.clone();
        match tokio::task::spawn_blocking(move || tls.reload()).await {
            Ok(Ok(())) => log::info!("TLS: reloaded {}", self.describe()),
            Ok(Err(error)) => log::warn!("TLS: reload failed, the previous certificate stays in use: {error}"),
            Err(error) => log::error!("TLS: reload task failed: {error}"),
        }
    }

    /// Every `interval`, reloads the files if they changed (and logs it). Runs until dropped.
    pub async fn watch(self, interval: Duration) {
        let mut ticks = tokio::time::interval(interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticks.tick().await;
        loop {
            ticks.tick().await;
            let tls = self.clone();
            match tokio::task::spawn_blocking(move || tls.reload_if_changed()).await {
                Ok(Ok(false)) => {}
                Ok(Ok(true)) => log::info!("TLS: files changed on disk; reloaded {}", self.describe()),
                Ok(Err(error)) => {
                    log::warn!(
                        "TLS: files changed on disk but cannot be used, the previous certificate stays: {error}"
                    );
                }
                Err(error) => log::error!("TLS: reload task failed: {error}"),
            }
        }
    }

    /// The files, for the log.
    pub fn describe(&self) -> String {
        let files = &self.0.files;
        let client_ca = files.client_ca.as_ref().map_or_else(|| "none".to_owned(), |path| path.display().to_string());
        format!("cert={} key={} client_ca={client_ca}", files.cert.display(), files.key.display())
    }

    /// The TLS handshake on an accepted connection, at most `timeout`. A failure (or timeout) is
    /// logged at debug, rate-limited per peer address, and gives `None`.
    pub async fn accept(&self, stream: TcpStream, peer: SocketAddr, timeout: Duration) -> Option<TlsStream<TcpStream>> {
        let acceptor = tokio_rustls::TlsAcceptor::from(self.config());
        let error = match tokio::time::timeout(timeout, acceptor.accept(stream)).await {
            Ok(Ok(stream)) => {
                if log::log_enabled!(log::Level::Debug) {
                    log::debug!("TLS handshake with {peer}: {}", describe_session(stream.get_ref().1));
                }
                return Some(stream);
            }
            Ok(Err(error)) if error.kind() == io::ErrorKind::UnexpectedEof => {
                "the client closed the connection during the handshake".to_owned()
            }
            Ok(Err(error)) => error.to_string(),
            Err(_) => format!("no handshake within {timeout:?}"),
        };
        if log::log_enabled!(log::Level::Debug)
            && let Some(suppressed) = self.0.failures.admit(peer.ip(), Instant::now())
        {
            let more = if suppressed > 0 {
                format!(" ({suppressed} more failures from {} were not logged)", peer.ip())
            } else {
                String::new()
            };
            log::debug!("TLS handshake with {peer} failed: {error}{more}");
        }
        None
    }
}

/// Whether ALPN chose HTTP/2 on this connection (otherwise it speaks HTTP/1.1).
pub fn negotiated_h2(stream: &TlsStream<TcpStream>) -> bool {
    stream.get_ref().1.alpn_protocol() == Some(ALPN_H2)
}

fn describe_session(connection: &rustls::ServerConnection) -> String {
    let version = connection.protocol_version().map_or_else(|| "?".to_owned(), |v| format!("{v:?}"));
    let suite = connection.negotiated_cipher_suite().map_or_else(|| "?".to_owned(), |s| format!("{:?}", s.suite()));
    let alpn = match connection.alpn_protocol() {
        Some(ALPN_H2) => "h2",
        Some(ALPN_HTTP1) => "http/1.1",
        Some(_) => "other",
        None => "none",
    };
    let client = if connection.peer_certificates().is_some_and(|certs| !certs.is_empty()) {
        "verified client certificate"
    } else {
        "no client certificate"
    };
    format!("{version} {suite}, ALPN {alpn}, {client}")
}

fn stamp(files: &TlsFiles) -> Stamp {
    [Some(&files.cert), Some(&files.key), files.client_ca.as_ref()]
        .into_iter()
        .flatten()
        .map(|path| std::fs::metadata(path).ok().and_then(|meta| Some((meta.modified().ok()?, meta.len()))))
        .collect()
}

/// The provider every configuration uses (explicit: no process-wide default is installed).
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Builds the rustls configuration from the files: TLS 1.2 and 1.3, ALPN h2 then http/1.1, a
/// client-certificate verifier when a client CA is set.
fn server_config(files: &TlsFiles) -> Result<ServerConfig, TlsError> {
    let certs = read_certificates(&files.cert, "certificate file")?;
    let key = read_key(&files.key)?;
    let provider = provider();
    let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(TlsError::Setup)?;
    let builder = match &files.client_ca {
        None => builder.with_no_client_auth(),
        Some(path) => {
            let mut roots = RootCertStore::empty();
            for cert in read_certificates(path, "client CA file")? {
                roots
                    .add(cert)
                    .map_err(|error| TlsError::ClientCa { path: path.clone(), problem: error.to_string() })?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|error| TlsError::ClientCa { path: path.clone(), problem: error.to_string() })?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder.with_single_cert(certs, key).map_err(|source| TlsError::CertificateKey {
        cert: files.cert.clone(),
        key: files.key.clone(),
        source,
    })?;
    config.alpn_protocols = vec![ALPN_H2.to_vec(), ALPN_HTTP1.to_vec()];
    Ok(config)
}

fn read(path: &Path, what: &'static str) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read { what, path: path.to_owned(), source })
}

/// Every `CERTIFICATE` block of a PEM file (at least one).
fn read_certificates(path: &Path, what: &'static str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read(path, what)?;
    let pem_error = |problem: String| TlsError::Pem { what, path: path.to_owned(), problem };
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| pem_error(format!("is not valid PEM: {error}")))?;
    if certs.is_empty() {
        return Err(pem_error("holds no PEM certificate (-----BEGIN CERTIFICATE-----)".to_owned()));
    }
    Ok(certs)
}

/// The first private key of a PEM file.
fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let what = "key file";
    let pem = read(path, what)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|error| TlsError::Pem {
        what,
        path: path.to_owned(),
        problem: match error {
            rustls::pki_types::pem::Error::NoItemsFound => {
                "holds no private key (PEM PKCS#8, PKCS#1 or SEC1; encrypted keys are not supported)".to_owned()
            }
            error => format!("is not valid PEM: {error}"),
        },
    })
}

/// Which handshake failures get a log line: at most one per `FAILURE_LOG_INTERVAL` (1 s) per peer
/// address; the others are counted and the count is told with the next line.
#[derive(Debug, Default)]
pub struct FailureLog {
    peers: Mutex<FailurePeers>,
}

#[derive(Debug, Default)]
struct FailurePeers {
    by_address: HashMap<IpAddr, PeerFailures>,
    last_prune: Option<Instant>,
}

#[derive(Debug)]
struct PeerFailures {
    last_logged: Instant,
    suppressed: u64,
}

impl FailureLog {
    /// A failure from `address` at `now`: `Some(n)` if it gets a line (`n` failures since the last
    /// line went unlogged), `None` if it is only counted.
    pub fn admit(&self, address: IpAddr, now: Instant) -> Option<u64> {
        let mut peers = self.peers.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(peer) = peers.by_address.get_mut(&address) {
            if now.saturating_duration_since(peer.last_logged) < FAILURE_LOG_INTERVAL {
                peer.suppressed += 1;
                return None;
            }
            peer.last_logged = now;
            return Some(std::mem::take(&mut peer.suppressed));
        }
        if peers.by_address.len() >= FAILURE_LOG_PEERS {
            // Forget peers not heard from for an interval, at most once per interval (a full map
            // of recent peers must not cost a scan per failure).
            if peers.last_prune.is_some_and(|pruned| now.saturating_duration_since(pruned) < FAILURE_LOG_INTERVAL) {
                return None;
            }
            peers.last_prune = Some(now);
            peers.by_address.retain(|_, peer| now.saturating_duration_since(peer.last_logged) < FAILURE_LOG_INTERVAL);
            if peers.by_address.len() >= FAILURE_LOG_PEERS {
                return None;
            }
        }
        peers.by_address.insert(address, PeerFailures { last_logged: now, suppressed: 0 });
        Some(0)
    }
}

/// A connection as hyper serves it: plain TCP, or TLS over TCP.
#[derive(Debug)]
pub enum Stream {
    /// Cleartext.
    Plain(TcpStream),
    /// After a completed TLS handshake.
    Tls(Box<TlsStream<TcpStream>>),
}

impl AsyncRead for Stream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(stream) => Pin::new(stream).poll_read(cx, buf),
            Stream::Tls(stream) => Pin::new(stream.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(stream) => Pin::new(stream).poll_write(cx, buf),
            Stream::Tls(stream) => Pin::new(stream.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(stream) => Pin::new(stream).poll_write_vectored(cx, bufs),
            Stream::Tls(stream) => Pin::new(stream.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Stream::Plain(stream) => stream.is_write_vectored(),
            Stream::Tls(stream) => stream.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(stream) => Pin::new(stream).poll_flush(cx),
            Stream::Tls(stream) => Pin::new(stream.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(stream) => Pin::new(stream).poll_shutdown(cx),
            Stream::Tls(stream) => Pin::new(stream.as_mut()).poll_shutdown(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_peer_gets_one_failure_line_per_second_and_the_count_of_the_others() {
        let log = FailureLog::default();
        let start = Instant::now();
        let scanner: IpAddr = [192, 0, 2, 1].into();
        let other: IpAddr = [192, 0, 2, 2].into();
        assert_eq!(log.admit(scanner, start), Some(0));
        for millis in [1, 10, 500, 999] {
            assert_eq!(log.admit(scanner, start + Duration::from_millis(millis)), None, "{millis} ms");
        }
        assert_eq!(log.admit(other, start + Duration::from_millis(2)), Some(0), "other peers are not held back");
        assert_eq!(log.admit(scanner, start + Duration::from_millis(1000)), Some(4));
        assert_eq!(log.admit(scanner, start + Duration::from_millis(1500)), None);
        assert_eq!(log.admit(scanner, start + Duration::from_millis(2000)), Some(1));
    }

    #[test]
    fn the_failure_log_remembers_a_bounded_number_of_peers() {
        let log = FailureLog::default();
        let start = Instant::now();
        let address = |n: usize| IpAddr::from(std::net::Ipv6Addr::from(u128::try_from(n).unwrap_or(0) + 1));
        for n in 0..FAILURE_LOG_PEERS {
            assert_eq!(log.admit(address(n), start), Some(0));
        }
        let newcomer = address(FAILURE_LOG_PEERS);
        assert_eq!(log.admit(newcomer, start + Duration::from_millis(10)), None, "full of recent peers");
        let later = start + FAILURE_LOG_INTERVAL + Duration::from_millis(10);
        assert_eq!(log.admit(newcomer, later), Some(0), "old peers are forgotten");
        assert!(log.peers.lock().unwrap().by_address.len() <= FAILURE_LOG_PEERS);
    }

    #[test]
    fn files_that_are_not_pem_give_an_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let junk = dir.path().join("junk.pem");
        std::fs::write(&junk, "not a certificate\n").unwrap();
        let missing = dir.path().join("missing.pem");
        let files = TlsFiles { cert: junk.clone(), key: junk.clone(), client_ca: None };
        let error = Tls::load(files).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(
            error.contains("certificate file") && error.contains("junk.pem") && error.contains("no PEM certificate")
        );
        let files = TlsFiles { cert: missing.clone(), key: junk, client_ca: None };
        let error = Tls::load(files).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(error.starts_with("cannot read the certificate file") && error.contains("missing.pem"), "{error}");
    }
}
