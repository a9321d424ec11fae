//! One root store per process. The SDK's HTTPS client and every `reqwest` client (the response
//! sender, the Apono client) each read the operating system's root certificates on their own
//! when left to their defaults: the CA bundle and every file of `/etc/ssl/certs`, about 290
//! files per read, which was most of a cold start that makes no AWS call. Here they are read
//! once, on first use, and every client trusts that same list.
//!
//! Why the operating system's roots and not a compiled-in list (`webpki-roots`): Lambda's base
//! image receives CA updates without a rebuild of the function, and a company that inspects
//! TLS adds its own CA the usual way (`SSL_CERT_FILE` / `SSL_CERT_DIR`, which
//! `rustls-native-certs` honours). A compiled-in list would follow neither.

use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode, TlsContext, TrustStore};
use aws_smithy_runtime_api::client::http::SharedHttpClient;
use base64::Engine;
use std::sync::LazyLock;

/// Where Linux distributions keep the bundle of every trusted CA, generated from the CA
/// directory by `update-ca-certificates` / `update-ca-trust`: Debian and Ubuntu (and Alpine),
/// Amazon Linux (Lambda's `provided.al2023`), RHEL and Fedora, SUSE.
const CA_BUNDLES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem",
    "/etc/ssl/ca-bundle.pem",
];

/// The operating system's root certificates (DER, each once), read once per process: the
/// distribution's CA bundle alone, which holds the same CAs as its CA directory (reading both,
/// as `rustls-native-certs` does, parses every CA twice). `SSL_CERT_FILE` / `SSL_CERT_DIR`,
/// when set, are read as given, and a system without a known bundle is searched as usual.
pub fn native_roots() -> &'static [Vec<u8>] {
    static ROOTS: LazyLock<Vec<Vec<u8>>> = LazyLock::new(|| {
        let overridden = ["SSL_CERT_FILE", "SSL_CERT_DIR"]
            .iter()
            .any(|v| std::env::var_os(v).is_some());
        let bundle = CA_BUNDLES
            .iter()
            .map(std::path::Path::new)
            .find(|p| p.is_file());
        let found = match bundle {
            Some(bundle) if !overridden => {
                rustls_native_certs::load_certs_from_paths(Some(bundle), None)
            }
            _ => rustls_native_certs::load_native_certs(),
        };
        if !found.errors.is_empty() {
            tracing::warn!(errors = ?found.errors, "some root certificates could not be read");
        }
        if found.certs.is_empty() {
            tracing::warn!("no root certificates found: HTTPS calls will fail");
        }
        // Order does not matter to a trust store: sorted, duplicates go without copies.
        let mut roots: Vec<Vec<u8>> = found.certs.into_iter().map(|c| c.to_vec()).collect();
        roots.sort_unstable();
        roots.dedup();
        roots
    });
    &ROOTS
}

/// A `reqwest` client builder that trusts exactly [`native_roots`].
pub fn reqwest_builder() -> reqwest::ClientBuilder {
    let roots = native_roots()
        .iter()
        .filter_map(|der| reqwest::Certificate::from_der(der).ok());
    reqwest::Client::builder().tls_certs_only(roots)
}

/// The SDK's HTTPS client (rustls, aws-lc: the SDK's default) trusting exactly [`native_roots`].
pub fn sdk_http_client() -> SharedHttpClient {
    let mut pem = String::new();
    for der in native_roots() {
        pem.push_str("-----BEGIN CERTIFICATE-----\n");
        let encoded = base64::engine::general_purpose::STANDARD.encode(der);
        for line in encoded.as_bytes().chunks(64) {
            pem.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
            pem.push('\n');
        }
        pem.push_str("-----END CERTIFICATE-----\n");
    }
    let store = TrustStore::empty()
        .with_native_roots(false)
        .with_pem_certificate(pem);
    aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(CryptoMode::AwsLc))
        .tls_context(
            TlsContext::builder()
                .with_trust_store(store)
                .build()
                .expect("a TLS context from a trust store builds"),
        )
        .build_https()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_roots_are_read_once_and_shared_by_every_client() {
        let first = native_roots();
        assert!(!first.is_empty(), "this machine has root certificates");
        assert!(std::ptr::eq(first, native_roots()), "read once per process");
        reqwest_builder().build().expect("reqwest trusts the roots");
        let _sdk = sdk_http_client();
    }
}
