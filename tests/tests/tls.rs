//! Every HTTPS client of the functions trusts the one root store the process reads
//! (`custom_resource::tls`): the SDK's client, and the `reqwest` clients of the response
//! sender and the Apono client. Run in a process of its own: the store is read once, from
//! `SSL_CERT_FILE`, here a test CA.

use aws_credential_types::Credentials;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/tls");

const STS_ANSWER: &str = r#"<GetCallerIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><GetCallerIdentityResult><Arn>arn:aws:iam::123456789012:user/tls-test</Arn><UserId>AIDATLSTEST</UserId><Account>123456789012</Account></GetCallerIdentityResult><ResponseMetadata><RequestId>tls-test</RequestId></ResponseMetadata></GetCallerIdentityResponse>"#;

/// An HTTPS server on 127.0.0.1 presenting `cert`, answering every request with STS's answer.
async fn https_server(cert: &str, key: &str) -> u16 {
    let chain = CertificateDer::pem_file_iter(format!("{FIXTURES}/{cert}"))
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_file(format!("{FIXTURES}/{key}")).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(chain, key)
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut request = Vec::new();
                let mut buf = [0u8; 4096];
                // Read the head and (for STS's POST) the short body, then answer and close.
                while let Ok(n) = tls.read(&mut buf).await {
                    request.extend_from_slice(&buf[..n]);
                    let text = String::from_utf8_lossy(&request);
                    let Some(head_end) = text.find("\r\n\r\n") else {
                        if n == 0 {
                            return;
                        }
                        continue;
                    };
                    let length = text[..head_end]
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                        })
                        .unwrap_or(0);
                    if request.len() >= head_end + 4 + length || n == 0 {
                        break;
                    }
                }
                let answer = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: text/xml\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{STS_ANSWER}",
                    STS_ANSWER.len()
                );
                let _ = tls.write_all(answer.as_bytes()).await;
                let _ = tls.shutdown().await;
            });
        }
    });
    port
}

fn sts(port: u16) -> aws_sdk_sts::Client {
    let config = aws_sdk_sts::Config::builder()
        .behavior_version(aws_sdk_sts::config::BehaviorVersion::latest())
        .region(aws_sdk_sts::config::Region::new("us-east-1"))
        .credentials_provider(Credentials::for_tests())
        .endpoint_url(format!("https://localhost:{port}"))
        .http_client(custom_resource::tls::sdk_http_client())
        .retry_config(aws_sdk_sts::config::retry::RetryConfig::disabled())
        .build();
    aws_sdk_sts::Client::from_conf(config)
}

#[tokio::test]
async fn the_sdk_and_reqwest_trust_exactly_the_store_read_once_from_ssl_cert_file() {
    // The only test of this binary, before anything reads the environment.
    std::env::set_var("SSL_CERT_FILE", format!("{FIXTURES}/ca.pem"));
    std::env::remove_var("SSL_CERT_DIR");
    let roots = custom_resource::tls::native_roots();
    assert_eq!(roots.len(), 1, "the test CA alone");

    let trusted = https_server("server.pem", "server.key").await;
    let untrusted = https_server("untrusted.pem", "untrusted.key").await;
    let http = custom_resource::tls::reqwest_builder().build().unwrap();

    let answer = http
        .get(format!("https://localhost:{trusted}/"))
        .send()
        .await
        .expect("reqwest trusts a server the store's CA signed");
    assert_eq!(answer.status(), 200);
    let identity = sts(trusted)
        .get_caller_identity()
        .send()
        .await
        .expect("the SDK trusts a server the store's CA signed");
    assert_eq!(identity.account(), Some("123456789012"));

    let refused = http
        .get(format!("https://localhost:{untrusted}/"))
        .send()
        .await
        .expect_err("reqwest refuses a certificate outside the store");
    assert!(
        format!("{:?}", refused).contains("UnknownIssuer"),
        "{refused:?}"
    );
    let refused = sts(untrusted)
        .get_caller_identity()
        .send()
        .await
        .expect_err("the SDK refuses a certificate outside the store");
    let detail = format!(
        "{}",
        aws_smithy_types::error::display::DisplayErrorContext(&refused)
    );
    assert!(
        detail.contains("UnknownIssuer") || detail.contains("certificate"),
        "{detail}"
    );
    assert!(
        std::ptr::eq(roots, custom_resource::tls::native_roots()),
        "read once"
    );
}
