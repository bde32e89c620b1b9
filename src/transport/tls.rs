//! TLS material for QUIC: the server's certificate (configured or
//! self-signed on first start) and the client's ways of trusting it.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use sha2::{Digest, Sha256};

use crate::protocol::ALPN;

/// Where a generated certificate lives inside the data dir.
pub const CERT_FILE: &str = "tls/cert.pem";
pub const KEY_FILE: &str = "tls/key.pem";

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {msg}")]
    Pem { path: PathBuf, msg: String },
    #[error("certificate generation: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("tls: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("a certificate fingerprint is 64 hex digits (colons allowed)")]
    BadFingerprint,
}

pub struct ServerIdentity {
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
}

impl ServerIdentity {
    /// The configured PEM pair, or the data dir's generated one, created now if missing.
    pub fn load_or_generate(
        data_dir: &Path,
        configured: Option<(&Path, &Path)>,
    ) -> Result<Self, TlsError> {
        let (cert, key) = match configured {
            Some((c, k)) => (c.to_path_buf(), k.to_path_buf()),
            None => {
                let cert = data_dir.join(CERT_FILE);
                let key = data_dir.join(KEY_FILE);
                if !cert.exists() || !key.exists() {
                    generate(&cert, &key)?;
                }
                (cert, key)
            }
        };
        let chain = CertificateDer::pem_file_iter(&cert)
            .and_then(|it| it.collect::<Result<Vec<_>, _>>())
            .map_err(|e| TlsError::Pem {
                path: cert.clone(),
                msg: e.to_string(),
            })?;
        if chain.is_empty() {
            return Err(TlsError::Pem {
                path: cert,
                msg: "no certificate".into(),
            });
        }
        let key = PrivateKeyDer::from_pem_file(&key).map_err(|e| TlsError::Pem {
            path: key.clone(),
            msg: e.to_string(),
        })?;
        Ok(ServerIdentity { chain, key })
    }

    /// SHA-256 of the leaf certificate, the value clients pin.
    pub fn fingerprint(&self) -> String {
        fingerprint(&self.chain[0])
    }

    pub fn server_config(self) -> Result<rustls::ServerConfig, TlsError> {
        let mut cfg = rustls::ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_no_client_auth()
            .with_single_cert(self.chain, self.key)?;
        cfg.alpn_protocols = vec![ALPN.to_vec()];
        Ok(cfg)
    }
}

impl ServerIdentity {
    /// For HTTPS and `wss://` (the LeanCloud door): TLS 1.2 and 1.3, as
    /// browsers and the SDKs' HTTP stacks speak, HTTP/1.1 only.
    pub fn web_server_config(self) -> Result<rustls::ServerConfig, TlsError> {
        let mut cfg = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(self.chain, self.key)?;
        cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(cfg)
    }
}

fn generate(cert: &Path, key: &Path) -> Result<(), TlsError> {
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".into(), "tidings".into()])?;
    if let Some(dir) = cert.parent() {
        fs::create_dir_all(dir).map_err(|source| TlsError::Io {
            path: dir.into(),
            source,
        })?;
    }
    crate::util::write_private(key, ck.key_pair.serialize_pem().as_bytes()).map_err(|source| {
        TlsError::Io {
            path: key.into(),
            source,
        }
    })?;
    fs::write(cert, ck.cert.pem()).map_err(|source| TlsError::Io {
        path: cert.into(),
        source,
    })?;
    Ok(())
}

pub fn fingerprint(cert: &CertificateDer<'_>) -> String {
    hex::encode(Sha256::digest(cert.as_ref()))
}

/// Accepts `ab:cd:…` or `abcd…`, either case.
pub fn parse_fingerprint(s: &str) -> Result<[u8; 32], TlsError> {
    let clean: String = s.chars().filter(|c| *c != ':').collect();
    let mut out = [0u8; 32];
    hex::decode_to_slice(clean, &mut out).map_err(|_| TlsError::BadFingerprint)?;
    Ok(out)
}

/// The fingerprint of the certificate a server with this data dir serves, if it generated one.
pub fn data_dir_fingerprint(data_dir: &Path) -> Result<String, TlsError> {
    let path = data_dir.join(CERT_FILE);
    let cert = CertificateDer::from_pem_file(&path).map_err(|e| TlsError::Pem {
        path,
        msg: e.to_string(),
    })?;
    Ok(fingerprint(&cert))
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// How a client decides to trust the server.
#[derive(Debug, Clone)]
pub enum ServerTrust {
    /// The SHA-256 of the server's leaf certificate (self-signed deployments).
    Pin([u8; 32]),
    /// Ordinary WebPKI validation against these roots (a CA-issued certificate).
    Roots(Vec<CertificateDer<'static>>),
}

pub fn client_config(trust: ServerTrust) -> Result<rustls::ClientConfig, TlsError> {
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?;
    let mut cfg = match trust {
        ServerTrust::Pin(pin) => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(PinVerifier {
                pin,
                provider: provider(),
            }))
            .with_no_client_auth(),
        ServerTrust::Roots(roots) => {
            let mut store = rustls::RootCertStore::empty();
            for r in roots {
                store.add(r)?;
            }
            builder.with_root_certificates(store).with_no_client_auth()
        }
    };
    cfg.alpn_protocols = vec![ALPN.to_vec()];
    Ok(cfg)
}

/// Trusts exactly one certificate, by hash; names and dates do not matter
/// because the pin already says which key we expect.
#[derive(Debug)]
struct PinVerifier {
    pin: [u8; 32],
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl rustls::client::danger::ServerCertVerifier for PinVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        if Sha256::digest(end_entity.as_ref()).as_slice() == self.pin {
            Ok(rustls::client::danger::ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::ApplicationVerificationFailure,
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}
