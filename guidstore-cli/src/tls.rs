//! TLS for `https://` servers (rustls, ring provider; no OpenSSL): [`client_config`] builds the
//! rustls client from [`TlsOptions`] — trusting the system's CA certificates, or only those of
//! `--cacert`, or (`--insecure`) any certificate at all — with an optional client certificate;
//! [`describe_failure`] turns a TLS error somewhere in an error chain into one clear sentence.
//! Nothing here sends a request (`remote.rs` does).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{AlertDescription, CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

use crate::error::CliError;

/// How to set up TLS for an `https://` server (unused for `http://`).
#[derive(Debug, Clone, Default)]
pub struct TlsOptions {
    /// Trust only the CA certificates of this PEM file (instead of the system's).
    pub cacert: Option<PathBuf>,
    /// Accept any server certificate.
    pub insecure: bool,
    /// Present this PEM certificate chain to servers that ask for one.
    pub client_cert: Option<PathBuf>,
    /// The PEM private key of `client_cert`.
    pub client_key: Option<PathBuf>,
}

/// The crypto provider of every configuration (explicit: no process-wide default is installed).
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The rustls client for `options`. With `insecure`, prints a warning on stderr saying what is
/// not checked for `base` (every time: it must never go unnoticed).
pub fn client_config(options: &TlsOptions, base: &str) -> Result<ClientConfig, CliError> {
    let provider = provider();
    let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|error| CliError::Unavailable(format!("cannot set up TLS: {error}")))?;
    let builder = if options.insecure {
        let _ = writeln!(
            std::io::stderr(),
            "WARNING: --insecure: the TLS certificate of {base} is NOT verified (any certificate is accepted, whoever \
             issued it, for whatever name, expired or not). The connection is encrypted, but anyone between here and \
             the server can pose as it and read or change everything sent, the token included."
        );
        builder.dangerous().with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate(provider)))
    } else {
        builder.with_root_certificates(trusted_roots(options.cacert.as_deref())?)
    };
    match (&options.client_cert, &options.client_key) {
        (Some(cert), Some(key)) => {
            let chain = read_certificates(cert, "--client-cert")?;
            let key_der = read_key(key)?;
            builder.with_client_auth_cert(chain, key_der).map_err(|error| {
                CliError::Usage(format!(
                    "--client-cert {} with --client-key {} cannot be used: {error}",
                    cert.display(),
                    key.display()
                ))
            })
        }
        (None, None) => Ok(builder.with_no_client_auth()),
        _ => Err(CliError::Usage("--client-cert and --client-key go together".to_owned())),
    }
}

/// The CA certificates of `cacert`, or the system's.
fn trusted_roots(cacert: Option<&Path>) -> Result<RootCertStore, CliError> {
    let mut roots = RootCertStore::empty();
    if let Some(path) = cacert {
        for cert in read_certificates(path, "--cacert")? {
            roots.add(cert).map_err(|error| {
                CliError::Usage(format!("--cacert {}: not a usable CA certificate: {error}", path.display()))
            })?;
        }
        return Ok(roots);
    }
    let found = rustls_native_certs::load_native_certs();
    let (added, _) = roots.add_parsable_certificates(found.certs);
    if added == 0 {
        let errors: Vec<String> = found.errors.iter().map(ToString::to_string).collect();
        return Err(CliError::Unavailable(format!(
            "no trusted CA certificates found on this system{}; pass the server's CA with --cacert FILE",
            if errors.is_empty() { String::new() } else { format!(" ({})", errors.join("; ")) }
        )));
    }
    Ok(roots)
}

fn read_file(path: &Path, flag: &str) -> Result<Vec<u8>, CliError> {
    std::fs::read(path).map_err(|error| CliError::io(format!("reading {flag} {}", path.display()), error))
}

/// Every certificate of a PEM file (at least one).
fn read_certificates(path: &Path, flag: &str) -> Result<Vec<CertificateDer<'static>>, CliError> {
    let pem = read_file(path, flag)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| CliError::Usage(format!("{flag} {}: not valid PEM: {error}", path.display())))?;
    if certs.is_empty() {
        return Err(CliError::Usage(format!(
            "{flag} {} holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
            path.display()
        )));
    }
    Ok(certs)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, CliError> {
    let pem = read_file(path, "--client-key")?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|error| {
        CliError::Usage(format!("--client-key {} holds no usable PEM private key: {error}", path.display()))
    })
}

/// Accepts any server certificate (`--insecure`), but still checks that the server holds the key
/// of the certificate it sent (the handshake signature), so the connection is encrypted to it.
#[derive(Debug)]
struct AcceptAnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        signature: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, signature, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        signature: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, signature, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// The rustls error in `error`'s chain, if any. rustls errors travel inside `io::Error`s (two of
/// them, through hyper-rustls), whose `source()` skips the wrapped error, hence `get_ref`.
fn find_tls_error<'a>(error: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustls::Error> {
    if let Some(tls) = error.downcast_ref::<rustls::Error>() {
        return Some(tls);
    }
    let wrapped = error.downcast_ref::<std::io::Error>().and_then(std::io::Error::get_ref);
    if let Some(tls) = wrapped.and_then(|inner| find_tls_error(inner)) {
        return Some(tls);
    }
    error.source().and_then(find_tls_error)
}

/// One sentence for a TLS failure talking to `base`, if `error` is one.
pub fn describe_failure(base: &str, error: &(dyn std::error::Error + 'static)) -> Option<String> {
    let tls = find_tls_error(error)?;
    let sentence = match tls {
        rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer) => format!(
            "the TLS certificate of {base} is not signed by a trusted CA (pass the CA's certificate with --cacert FILE)"
        ),
        rustls::Error::InvalidCertificate(
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
        ) => format!("the TLS certificate of {base} is not valid for that host name: {tls}"),
        rustls::Error::InvalidCertificate(CertificateError::Expired | CertificateError::ExpiredContext { .. }) => {
            format!("the TLS certificate of {base} has expired: {tls}")
        }
        rustls::Error::InvalidCertificate(_) => format!("the TLS certificate of {base} is refused: {tls}"),
        rustls::Error::AlertReceived(AlertDescription::CertificateRequired) => {
            format!("{base} requires a client certificate (pass --client-cert FILE --client-key FILE); {tls}")
        }
        rustls::Error::AlertReceived(
            AlertDescription::UnknownCA | AlertDescription::BadCertificate | AlertDescription::CertificateUnknown,
        ) => format!("{base} refused the TLS handshake, probably this client's certificate ({tls})"),
        rustls::Error::InvalidMessage(_) => {
            format!("the TLS handshake with {base} failed ({tls}); does the server speak HTTPS at that address?")
        }
        _ => format!("the TLS handshake with {base} failed: {tls}"),
    };
    Some(sentence)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_errors_are_found_inside_io_errors_and_described() {
        let unknown = std::io::Error::other(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer),
        ));
        let text = describe_failure("https://h:1", &unknown).unwrap_or_default();
        assert!(text.contains("not signed by a trusted CA") && text.contains("--cacert"), "{text}");
        let required = rustls::Error::AlertReceived(AlertDescription::CertificateRequired);
        let text = describe_failure("https://h:1", &required).unwrap_or_default();
        assert!(text.contains("requires a client certificate"), "{text}");
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert_eq!(describe_failure("https://h:1", &refused), None);
    }

    #[test]
    fn cacert_files_without_a_certificate_are_usage_errors() {
        let dir = tempfile::tempdir().unwrap();
        let junk = dir.path().join("junk.pem");
        std::fs::write(&junk, "not PEM\n").unwrap();
        let options = TlsOptions { cacert: Some(junk), ..TlsOptions::default() };
        let error = client_config(&options, "https://h:1").err();
        assert_eq!(error.as_ref().map(CliError::code), Some("usage"), "{error:?}");
        let options = TlsOptions { cacert: Some(dir.path().join("absent.pem")), ..TlsOptions::default() };
        let error = client_config(&options, "https://h:1").err();
        assert_eq!(error.as_ref().map(CliError::code), Some("io"), "{error:?}");
    }
}
