//! The push providers' own HTTP clients, apart from `crate::http::client`:
//! APNs wants few long-lived HTTP/2 connections ("don't repeatedly open and
//! close connections"), and a client that only negotiates h2 by ALPN opened
//! 9 connections for 500 concurrent sends from a cold start (measured in
//! the push design note), one with HTTP/2 prior knowledge.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use super::PushError;

/// How a provider's client talks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wire {
    /// HTTP/2 from the first byte, all requests multiplexed on one
    /// connection: APNs, FCM and Google's token endpoint all speak h2.
    Http2Only,
    /// h2 or HTTP/1.1 by ALPN (plain `http://` allowed): a webhook
    /// gateway may be anything.
    Negotiated,
}

/// The certificates in a PEM file, for `extra_ca_file`.
pub fn read_ca_file(path: &Path) -> Result<Vec<CertificateDer<'static>>, PushError> {
    let text = std::fs::read(path).map_err(|source| PushError::Read {
        path: path.display().to_string(),
        source,
    })?;
    let certs: Vec<_> = CertificateDer::pem_slice_iter(&text)
        .collect::<Result<_, _>>()
        .map_err(|e| PushError::Key {
            path: path.display().to_string(),
            msg: format!("bad PEM certificate: {e}"),
        })?;
    if certs.is_empty() {
        return Err(PushError::Key {
            path: path.display().to_string(),
            msg: "no certificate in the file".into(),
        });
    }
    Ok(certs)
}

/// A client certificate and its key (APNs certificate auth).
pub struct Identity {
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
}

impl Identity {
    /// Reads a PEM chain and a PEM private key.
    pub fn from_files(cert: &Path, key: &Path) -> Result<Self, PushError> {
        let chain = read_ca_file(cert)?;
        let text = std::fs::read(key).map_err(|source| PushError::Read {
            path: key.display().to_string(),
            source,
        })?;
        let key = PrivateKeyDer::from_pem_slice(&text).map_err(|e| PushError::Key {
            path: key.display().to_string(),
            msg: format!("no PEM private key: {e}"),
        })?;
        Ok(Self { chain, key })
    }
}

/// A reqwest client with our ring-based rustls, the platform's roots plus
/// `extra_roots`, no redirects and no proxy from the environment. `timeout`
/// bounds a whole request, so a stuck stream becomes a retry.
pub fn build(
    wire: Wire,
    extra_roots: &[CertificateDer<'static>],
    identity: Option<&Identity>,
    timeout: Duration,
) -> Result<reqwest::Client, PushError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = rustls_platform_verifier::Verifier::new_with_extra_roots(
        extra_roots.to_vec(),
        provider.clone(),
    )
    .map_err(|e| PushError::Client(format!("TLS verifier: {e}")))?;
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| PushError::Client(format!("TLS: {e}")))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier));
    let mut tls = match identity {
        Some(id) => tls
            .with_client_auth_cert(id.chain.clone(), id.key.clone_key())
            .map_err(|e| PushError::Client(format!("client certificate: {e}")))?,
        None => tls.with_no_client_auth(),
    };
    tls.alpn_protocols = match wire {
        Wire::Http2Only => vec![b"h2".to_vec()],
        Wire::Negotiated => vec![b"h2".to_vec(), b"http/1.1".to_vec()],
    };
    let mut b = reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .connect_timeout(Duration::from_secs(10))
        .timeout(timeout)
        .tcp_nodelay(true)
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .user_agent(concat!("tidings/", env!("CARGO_PKG_VERSION")));
    if wire == Wire::Http2Only {
        b = b
            .http2_prior_knowledge()
            // A quiet connection is kept alive rather than reopened.
            .pool_idle_timeout(None)
            .http2_keep_alive_interval(Duration::from_secs(60))
            .http2_keep_alive_while_idle(true);
    }
    b.build().map_err(|e| PushError::Client(e.to_string()))
}
