//! Certificates made at test time with rcgen (feature `pki`): a [`TestCa`] issues server
//! certificates (for `127.0.0.1` and `localhost`) and client certificates, and [`client_config`]
//! builds a rustls client that trusts a CA, offers the given ALPN protocols and may present a
//! client certificate. The server's and the CLI's TLS tests share it.
//!
//! Everything here is made from constants and fresh keys, so a failure is a bug of the test set-up:
//! it panics with the reason.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ClientConfig, RootCertStore};

/// A certificate authority made for one test.
pub struct TestCa {
    /// Its certificate, PEM.
    pub cert_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl std::fmt::Debug for TestCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestCa").field("cert_pem", &self.cert_pem).finish_non_exhaustive()
    }
}

/// A certificate and its key, PEM.
#[derive(Debug, Clone)]
pub struct Issued {
    /// The certificate.
    pub cert_pem: String,
    /// Its private key (PKCS#8).
    pub key_pem: String,
}

impl TestCa {
    /// A new self-signed CA named `name`, with a fresh key.
    pub fn new(name: &str) -> TestCa {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("no subject alternative names");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let key = KeyPair::generate().expect("a fresh key pair");
        let cert = params.self_signed(&key).expect("a self-signed CA certificate");
        TestCa { cert_pem: cert.pem(), issuer: Issuer::new(params, key) }
    }

    /// A server certificate for `127.0.0.1` and `localhost`, named `name`.
    pub fn server(&self, name: &str) -> Issued {
        self.server_for(name, &["127.0.0.1", "localhost"])
    }

    /// A server certificate for `hosts` (DNS names or IP addresses), named `name`.
    pub fn server_for(&self, name: &str, hosts: &[&str]) -> Issued {
        let names = hosts.iter().map(|host| (*host).to_owned()).collect::<Vec<_>>();
        let mut params = CertificateParams::new(names).expect("valid subject alternative names");
        params.distinguished_name.push(DnType::CommonName, name);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        self.issue(&params)
    }

    /// A client certificate named `name`.
    pub fn client(&self, name: &str) -> Issued {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("no subject alternative names");
        params.distinguished_name.push(DnType::CommonName, name);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        self.issue(&params)
    }

    fn issue(&self, params: &CertificateParams) -> Issued {
        let key = KeyPair::generate().expect("a fresh key pair");
        let cert = params.signed_by(&key, &self.issuer).expect("a certificate signed by the CA");
        Issued { cert_pem: cert.pem(), key_pem: key.serialize_pem() }
    }

    /// A root store holding this CA.
    pub fn roots(&self) -> RootCertStore {
        let mut roots = RootCertStore::empty();
        let cert = CertificateDer::from_pem_slice(self.cert_pem.as_bytes()).expect("rcgen's PEM parses");
        roots.add(cert).expect("the CA certificate is a valid trust anchor");
        roots
    }

    /// Writes the CA certificate to `path`; returns the path.
    pub fn write(&self, path: &Path) -> PathBuf {
        std::fs::write(path, &self.cert_pem).unwrap_or_else(|error| panic!("write {}: {error}", path.display()));
        path.to_owned()
    }
}

impl Issued {
    /// Writes the certificate and key as `STEM.pem` and `STEM-key.pem` in `dir`; returns the paths.
    pub fn write(&self, dir: &Path, stem: &str) -> (PathBuf, PathBuf) {
        let cert = dir.join(format!("{stem}.pem"));
        let key = dir.join(format!("{stem}-key.pem"));
        for (path, pem) in [(&cert, &self.cert_pem), (&key, &self.key_pem)] {
            std::fs::write(path, pem).unwrap_or_else(|error| panic!("write {}: {error}", path.display()));
        }
        (cert, key)
    }

    /// The certificate, DER.
    pub fn der(&self) -> CertificateDer<'static> {
        CertificateDer::from_pem_slice(self.cert_pem.as_bytes()).expect("rcgen's PEM parses")
    }
}

/// A rustls client (ring provider, TLS 1.2 and 1.3) that trusts `ca`, offers `alpn` (in that
/// order; none when empty) and, when given, presents `client` as its certificate.
pub fn client_config(ca: &TestCa, alpn: &[&[u8]], client: Option<&Issued>) -> Arc<ClientConfig> {
    let builder = ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions")
        .with_root_certificates(ca.roots());
    let mut config = match client {
        None => builder.with_no_client_auth(),
        Some(client) => {
            let key = PrivateKeyDer::from_pem_slice(client.key_pem.as_bytes()).expect("rcgen's PEM key parses");
            builder.with_client_auth_cert(vec![client.der()], key).expect("the client certificate and key match")
        }
    };
    config.alpn_protocols = alpn.iter().map(|protocol| protocol.to_vec()).collect();
    Arc::new(config)
}
