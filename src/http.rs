//! The one way Tidings builds outbound HTTP clients (hook calls, the
//! system-conversation webhook, the admin CLI), so TLS and proxy policy
//! cannot drift between them.

use std::sync::Arc;
use std::time::Duration;

/// A pooled reqwest client: our ring-based rustls with the platform's roots,
/// HTTP/1.1 or h2 by ALPN, keep-alive, no redirects (the far end answers
/// itself) and no proxy from the environment (calls go to the app's own
/// servers). `timeout` bounds a whole request when given.
pub fn client(
    connect_timeout: Duration,
    timeout: Option<Duration>,
) -> Result<reqwest::Client, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = rustls_platform_verifier::Verifier::new(provider.clone())
        .map_err(|e| format!("TLS verifier: {e}"))?;
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let mut b = reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .connect_timeout(connect_timeout)
        .pool_idle_timeout(Duration::from_secs(60))
        .tcp_nodelay(true)
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .user_agent(concat!("tidings/", env!("CARGO_PKG_VERSION")));
    if let Some(t) = timeout {
        b = b.timeout(t);
    }
    b.build().map_err(|e| e.to_string())
}

/// A request error with its source chain, which holds the useful part
/// ("connection refused").
pub fn error_text(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
