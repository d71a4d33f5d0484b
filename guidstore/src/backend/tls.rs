//! TLS to a network database (features `postgres`, `mysql`): the URL parameters that ask for it,
//! and the rustls client configuration (ring provider) that the PostgreSQL connector uses.
//!
//! Both backends read the same parameters, in libpq's or in MySQL's spelling:
//!
//! | parameter | values |
//! | --- | --- |
//! | `sslmode` / `ssl-mode` | `disable`, `prefer` (the default), `require`, `verify-ca`, `verify-full`; MySQL's `DISABLED`, `PREFERRED`, `REQUIRED`, `VERIFY_CA`, `VERIFY_IDENTITY` are the same five |
//! | `sslrootcert` / `ssl-ca` | a PEM file of the CA certificate(s) to trust, or `system` for the system's roots |
//!
//! What each mode checks, as libpq does:
//! - `disable`: no TLS.
//! - `prefer`: TLS when the server offers it, plain otherwise; the certificate is not checked
//!   (this only protects from a passive listener).
//! - `require`: TLS or no connection; the certificate is not checked, unless `sslrootcert` is
//!   given, in which case its chain is, as with `verify-ca`.
//! - `verify-ca`: TLS, and the server's chain must lead to `sslrootcert` (or, without it, to a
//!   system root); the host name is not compared.
//! - `verify-full`: as `verify-ca`, and the certificate must name the host of the URL (a DNS
//!   name or an IP address).

use std::path::PathBuf;

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
#[cfg(feature = "postgres")]
pub(crate) use verifier::client_config;

/// How a connection uses TLS (`sslmode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TlsMode {
    /// No TLS.
    Disable,
    /// TLS if the server offers it; the certificate is not checked.
    Prefer,
    /// TLS or nothing; the certificate is not checked (unless roots are given: then as `VerifyCa`).
    Require,
    /// TLS, with the chain checked against the roots.
    VerifyCa,
    /// TLS, with the chain and the host name checked.
    VerifyFull,
}

impl TlsMode {
    /// `text` in libpq's spelling or MySQL's, case-insensitive.
    fn parse(text: &str) -> Option<TlsMode> {
        match text.to_ascii_lowercase().replace('_', "-").as_str() {
            "disable" | "disabled" => Some(TlsMode::Disable),
            "prefer" | "preferred" => Some(TlsMode::Prefer),
            "require" | "required" => Some(TlsMode::Require),
            "verify-ca" => Some(TlsMode::VerifyCa),
            "verify-full" | "verify-identity" => Some(TlsMode::VerifyFull),
            _ => None,
        }
    }
}

/// Where the certificates to trust come from (`sslrootcert`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Roots {
    /// A PEM file.
    File(PathBuf),
    /// The system's trust store (rustls-native-certs).
    System,
}

/// The TLS parameters of a database URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TlsParams {
    pub(crate) mode: TlsMode,
    pub(crate) roots: Option<Roots>,
}

impl TlsParams {
    /// What the server's certificate is checked against, if anything: `None` for `prefer`, and
    /// for `require` without `sslrootcert`.
    pub(crate) fn verification(&self) -> Option<(Roots, bool)> {
        match (self.mode, &self.roots) {
            (TlsMode::Disable | TlsMode::Prefer, _) | (TlsMode::Require, None) => None,
            (TlsMode::Require | TlsMode::VerifyCa, roots) => Some((roots.clone().unwrap_or(Roots::System), false)),
            (TlsMode::VerifyFull, roots) => Some((roots.clone().unwrap_or(Roots::System), true)),
        }
    }
}

const MODE_NAMES: &[&str] = &["sslmode", "ssl-mode", "ssl_mode"];
const ROOT_NAMES: &[&str] = &["sslrootcert", "ssl-ca", "ssl_ca"];

/// Takes the TLS parameters out of `url`'s query: returns the URL without them (for the driver,
/// whose own parser knows fewer modes) and what they asked for. An unknown mode, a parameter
/// given twice or a root file without TLS is an error, as one line.
pub(crate) fn split_url(url: &str) -> Result<(String, TlsParams), String> {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, query),
        None => (url, ""),
    };
    let (query, fragment) = match query.split_once('#') {
        Some((query, fragment)) => (query, Some(fragment)),
        None => (query, None),
    };
    let mut mode = None;
    let mut roots = None;
    let mut kept = Vec::new();
    for parameter in query.split('&').filter(|p| !p.is_empty()) {
        let (name, value) = parameter.split_once('=').unwrap_or((parameter, ""));
        let value = percent_decode(value);
        let lower = name.to_ascii_lowercase();
        if MODE_NAMES.contains(&lower.as_str()) {
            let parsed = TlsMode::parse(&value).ok_or_else(|| {
                if value.eq_ignore_ascii_case("allow") {
                    // libpq's "allow" (try without TLS first) is not offered.
                    return format!("{name}=allow is not supported (use prefer or require)");
                }
                format!(
                    "unknown {name} {value:?} (use disable, prefer, require, verify-ca or verify-full; \
                     or DISABLED, PREFERRED, REQUIRED, VERIFY_CA, VERIFY_IDENTITY)"
                )
            })?;
            if mode.replace(parsed).is_some() {
                return Err(format!("{name} is given twice"));
            }
        } else if ROOT_NAMES.contains(&lower.as_str()) {
            if value.is_empty() {
                return Err(format!("{name} needs a file of CA certificates (PEM) or \"system\""));
            }
            let parsed = if value == "system" { Roots::System } else { Roots::File(value.into()) };
            if roots.replace(parsed).is_some() {
                return Err(format!("{name} is given twice"));
            }
        } else {
            kept.push(parameter);
        }
    }
    let mode = mode.unwrap_or(TlsMode::Prefer);
    if roots.is_some() && matches!(mode, TlsMode::Disable | TlsMode::Prefer) {
        return Err(format!(
            "a root certificate is only used with sslmode=require, verify-ca or verify-full (not {})",
            match mode {
                TlsMode::Disable => "disable",
                _ => "prefer",
            }
        ));
    }
    let mut stripped = base.to_owned();
    if !kept.is_empty() {
        stripped.push('?');
        stripped.push_str(&kept.join("&"));
    }
    if let Some(fragment) = fragment {
        stripped.push('#');
        stripped.push_str(fragment);
    }
    Ok((stripped, TlsParams { mode, roots }))
}

/// `%XX` escapes decoded (a malformed escape is kept as it is).
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(byte) = text.get(i + 1..i + 3).and_then(|hex| u8::from_str_radix(hex, 16).ok())
        {
            out.push(byte);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The certificates of `roots`, DER. A file must hold at least one PEM certificate; the system
/// store at least one usable root.
pub(crate) fn load_roots(roots: &Roots) -> Result<Vec<CertificateDer<'static>>, String> {
    match roots {
        Roots::File(path) => {
            let pem = std::fs::read(path).map_err(|e| format!("cannot read sslrootcert {}: {e}", path.display()))?;
            let certs = CertificateDer::pem_slice_iter(&pem)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| format!("sslrootcert {}: not a PEM certificate file ({e})", path.display()))?;
            if certs.is_empty() {
                return Err(format!("sslrootcert {} holds no PEM certificate", path.display()));
            }
            Ok(certs)
        }
        Roots::System => {
            let found = rustls_native_certs::load_native_certs();
            if found.certs.is_empty() {
                let why = found.errors.first().map_or_else(|| "none found".to_owned(), ToString::to_string);
                return Err(format!("no system root certificates to verify the server with ({why})"));
            }
            Ok(found.certs)
        }
    }
}

/// The PostgreSQL connector's rustls configuration (mysql_async builds its own from `SslOpts`).
#[cfg(feature = "postgres")]
mod verifier {
    use std::sync::Arc;

    use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
    use rustls::client::{verify_server_cert_signed_by_trust_anchor, verify_server_name};
    use rustls::crypto::WebPkiSupportedAlgorithms;
    use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
    use rustls::server::ParsedCertificate;
    use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

    use super::{Roots, TlsParams, load_roots};

    /// The rustls client configuration (ring provider, TLS 1.2 and 1.3) for `params`: it checks the
    /// server's certificate as [`TlsParams::verification`] says.
    pub(crate) fn client_config(params: &TlsParams) -> Result<ClientConfig, String> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let algorithms = provider.signature_verification_algorithms;
        let verifier = match params.verification() {
            None => Verifier { roots: None, check_name: false, algorithms },
            Some((roots, check_name)) => {
                let mut store = RootCertStore::empty();
                for cert in load_roots(&roots)? {
                    // The system store may hold certificates webpki cannot use: skip those; a file
                    // the user named must be entirely valid.
                    match (store.add(cert), &roots) {
                        (Ok(()), _) | (Err(_), Roots::System) => {}
                        (Err(e), Roots::File(path)) => {
                            return Err(format!("sslrootcert {}: not a usable CA certificate ({e})", path.display()));
                        }
                    }
                }
                if store.is_empty() {
                    return Err("no usable root certificate to verify the server with".to_owned());
                }
                Verifier { roots: Some(Arc::new(store)), check_name, algorithms }
            }
        };
        let config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS set-up: {e}"))?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier))
            .with_no_client_auth();
        Ok(config)
    }

    /// Checks a server's certificate: nothing but the handshake signatures when `roots` is `None`,
    /// else the chain to one of `roots` and, when `check_name`, the host name — the checks of
    /// rustls's `WebPkiServerVerifier`, split so that `verify-ca` can leave the name out.
    #[derive(Debug)]
    struct Verifier {
        roots: Option<Arc<RootCertStore>>,
        check_name: bool,
        algorithms: WebPkiSupportedAlgorithms,
    }

    impl ServerCertVerifier for Verifier {
        fn verify_server_cert(
            &self,
            end_entity: &CertificateDer<'_>,
            intermediates: &[CertificateDer<'_>],
            server_name: &ServerName<'_>,
            _ocsp_response: &[u8],
            now: UnixTime,
        ) -> Result<ServerCertVerified, rustls::Error> {
            if let Some(roots) = &self.roots {
                let cert = ParsedCertificate::try_from(end_entity)?;
                verify_server_cert_signed_by_trust_anchor(&cert, roots, intermediates, now, self.algorithms.all)?;
                if self.check_name {
                    verify_server_name(&cert, server_name)?;
                }
            }
            Ok(ServerCertVerified::assertion())
        }

        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
        }

        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            self.algorithms.supported_schemes()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_in_either_spelling() {
        for (url, mode) in [
            ("postgres://h/d", TlsMode::Prefer),
            ("postgres://h/d?sslmode=disable", TlsMode::Disable),
            ("postgres://h/d?sslmode=require", TlsMode::Require),
            ("postgres://h/d?sslmode=verify-ca", TlsMode::VerifyCa),
            ("postgres://h/d?sslmode=verify-full", TlsMode::VerifyFull),
            ("mysql://h/d?ssl-mode=DISABLED", TlsMode::Disable),
            ("mysql://h/d?ssl-mode=PREFERRED", TlsMode::Prefer),
            ("mysql://h/d?ssl-mode=REQUIRED", TlsMode::Require),
            ("mysql://h/d?ssl-mode=VERIFY_CA", TlsMode::VerifyCa),
            ("mysql://h/d?ssl-mode=VERIFY_IDENTITY", TlsMode::VerifyFull),
            ("mysql://h/d?ssl_mode=verify_identity", TlsMode::VerifyFull),
        ] {
            assert_eq!(split_url(url).unwrap().1.mode, mode, "{url}");
        }
    }

    #[test]
    fn tls_parameters_are_taken_out_and_the_rest_kept() {
        let (url, params) =
            split_url("postgres://u:p@h:5/d?application_name=x&sslmode=verify-full&sslrootcert=/a%20b/ca.pem&y=1")
                .unwrap();
        assert_eq!(url, "postgres://u:p@h:5/d?application_name=x&y=1");
        assert_eq!(params, TlsParams { mode: TlsMode::VerifyFull, roots: Some(Roots::File("/a b/ca.pem".into())) });
        let (url, params) = split_url("mysql://r@h/d?ssl-mode=VERIFY_CA&ssl-ca=system").unwrap();
        assert_eq!(url, "mysql://r@h/d");
        assert_eq!(params.verification(), Some((Roots::System, false)));
    }

    #[test]
    fn what_each_mode_checks() {
        let file = Some(Roots::File("ca.pem".into()));
        let check = |mode, roots: Option<Roots>| TlsParams { mode, roots }.verification();
        assert_eq!(check(TlsMode::Prefer, None), None);
        assert_eq!(check(TlsMode::Require, None), None);
        assert_eq!(check(TlsMode::Require, file.clone()), Some((Roots::File("ca.pem".into()), false)));
        assert_eq!(check(TlsMode::VerifyCa, None), Some((Roots::System, false)));
        assert_eq!(check(TlsMode::VerifyFull, file), Some((Roots::File("ca.pem".into()), true)));
    }

    #[test]
    fn bad_parameters_are_one_clear_line() {
        for (url, expected) in [
            ("postgres://h/d?sslmode=allow", "sslmode=allow is not supported (use prefer or require)"),
            ("postgres://h/d?sslmode=bogus", "use disable, prefer, require, verify-ca or verify-full"),
            ("postgres://h/d?sslmode=require&sslmode=disable", "sslmode is given twice"),
            ("postgres://h/d?sslrootcert=", "needs a file"),
            ("postgres://h/d?sslrootcert=ca.pem", "only used with sslmode=require"),
            ("mysql://h/d?ssl-mode=DISABLED&ssl-ca=ca.pem", "not disable"),
        ] {
            let error = split_url(url).unwrap_err();
            assert!(error.contains(expected), "{url}: {error}");
            assert!(!error.contains('\n'), "{error}");
        }
    }

    #[test]
    fn root_files_must_hold_certificates() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.pem");
        assert!(load_roots(&Roots::File(missing)).unwrap_err().contains("cannot read sslrootcert"));
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        assert!(load_roots(&Roots::File(empty)).unwrap_err().contains("holds no PEM certificate"));
    }
}
