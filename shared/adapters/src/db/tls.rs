//! How to reach PostgreSQL: the one place that reads `DATABASE_URL` and `DATABASE_CA_CERT`,
//! applies libpq's `sslmode` and `sslrootcert`, and connects over TLS with rustls. The pool,
//! `migrate`, the test helpers, the benchmarks and the end-to-end tests all connect through a
//! [`DatabaseConfig`].
//!
//! `sslmode`, as libpq names it (absent means `prefer`, libpq's default):
//! - `disable`: plain TCP, never TLS;
//! - `prefer`: TLS when the server offers it, plain when it answers that it has no TLS;
//! - `require`: TLS or no connection;
//! - `verify-ca`: TLS, and the server's certificate must chain to a configured CA;
//! - `verify-full`: `verify-ca`, and the certificate must also name the host connected to
//!   (a DNS name or an IP address of its subject alternative names).
//!
//! Without a CA, `prefer` and `require` encrypt but check no certificate (libpq does the same);
//! `verify-ca` and `verify-full` need one. A configured CA is never ignored: with `prefer` or
//! `require` the chain is checked too, as libpq does when it finds a root certificate. A failed
//! handshake fails the connection, also with `prefer` (libpq would retry in plain text).
//!
//! The CAs come from a PEM file, `sslrootcert=<file>` in the URL or else `PGSSLROOTCERT` (as
//! libpq reads them; a shell-sourced env file cannot hold a URL with two parameters), and from
//! `DATABASE_CA_CERT`, the PEM text itself (a literal `\n` counts as a line break, so the
//! certificate fits in a one-line CloudFormation parameter). Both are trusted when both are given. `sslmode` and `sslrootcert`
//! are removed before the URL reaches `tokio_postgres`, which does not know the `verify-*` modes.
//! Over TLS the session is bound to the server's certificate (SCRAM `tls-server-end-point`
//! channel binding) when the server offers it.

use std::fmt;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::str::FromStr;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use percent_encoding::percent_decode_str;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use sha2::{Digest, Sha256, Sha384, Sha512};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_postgres::tls::{ChannelBinding, MakeTlsConnect, TlsConnect, TlsStream};

use crate::ConfigError;

/// The connection URL (libpq URL syntax, plus `sslmode` and `sslrootcert`).
pub const URL_VAR: &str = "DATABASE_URL";
/// CA certificates as PEM text, for hosts where no file can be shipped (a Lambda function).
pub const CA_VAR: &str = "DATABASE_CA_CERT";
/// libpq's variable for `sslrootcert`, used when the URL has none.
pub const ROOT_CERT_VAR: &str = "PGSSLROOTCERT";

/// libpq's `sslmode` values this client implements (`allow` is not one of them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl SslMode {
    const NAMES: &'static str = "disable, prefer, require, verify-ca or verify-full";

    pub fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }
}

impl FromStr for SslMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "disable" => Ok(SslMode::Disable),
            "prefer" => Ok(SslMode::Prefer),
            "require" => Ok(SslMode::Require),
            "verify-ca" => Ok(SslMode::VerifyCa),
            "verify-full" => Ok(SslMode::VerifyFull),
            other => Err(format!(
                "sslmode {other:?} is not supported: use {}",
                SslMode::NAMES
            )),
        }
    }
}

impl fmt::Display for SslMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A parsed `DATABASE_URL` with its TLS settings: everything needed to open a connection.
#[derive(Clone)]
pub struct DatabaseConfig {
    pg: tokio_postgres::Config,
    sslmode: SslMode,
    ca_certificates: usize,
    tls: MakeRustlsConnect,
}

impl fmt::Debug for DatabaseConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // tokio_postgres::Config's Debug redacts the password.
        f.debug_struct("DatabaseConfig")
            .field("pg", &self.pg)
            .field("sslmode", &self.sslmode)
            .field("ca_certificates", &self.ca_certificates)
            .finish()
    }
}

impl DatabaseConfig {
    /// From the process environment (`DATABASE_URL`, `DATABASE_CA_CERT`).
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// From `DATABASE_URL` (required), `PGSSLROOTCERT` and `DATABASE_CA_CERT` (empty values
    /// count as unset: the template's default passes an empty `DATABASE_CA_CERT`).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let set = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());
        let url = set(URL_VAR).ok_or(ConfigError::Missing(URL_VAR))?;
        Self::build(&url, set(ROOT_CERT_VAR).as_deref(), set(CA_VAR).as_deref())
    }

    /// `url` as `DATABASE_URL` and `ca_pem` as `DATABASE_CA_CERT`, ignoring the environment;
    /// errors name the variable.
    pub fn parse(url: &str, ca_pem: Option<&str>) -> Result<Self, ConfigError> {
        Self::build(url, None, ca_pem)
    }

    fn build(
        url: &str,
        root_cert_var: Option<&str>,
        ca_pem: Option<&str>,
    ) -> Result<Self, ConfigError> {
        let invalid_url = |reason: String| ConfigError::Invalid {
            name: URL_VAR,
            reason,
        };
        let parts = split_url(url.trim()).map_err(invalid_url)?;
        let sslmode = match &parts.sslmode {
            None => SslMode::Prefer,
            Some(value) => value.parse().map_err(invalid_url)?,
        };

        let mut roots = RootCertStore::empty();
        let root_cert = match (&parts.sslrootcert, root_cert_var) {
            (Some(path), _) => Some((URL_VAR, path.as_str())),
            (None, Some(path)) => Some((ROOT_CERT_VAR, path)),
            (None, None) => None,
        };
        if let Some((name, path)) = root_cert {
            let invalid = |reason: String| ConfigError::Invalid { name, reason };
            let pem = read_root_cert(path).map_err(invalid)?;
            add_certificates(&mut roots, &pem)
                .map_err(|e| invalid(format!("sslrootcert {path}: {e}")))?;
        }
        if let Some(text) = ca_pem {
            add_certificates(&mut roots, &pem_from_env(text)).map_err(|reason| {
                ConfigError::Invalid {
                    name: CA_VAR,
                    reason,
                }
            })?;
        }
        let ca_certificates = roots.len();
        if ca_certificates == 0 && matches!(sslmode, SslMode::VerifyCa | SslMode::VerifyFull) {
            return Err(invalid_url(format!(
                "sslmode={sslmode} needs the CA that signed the server's certificate: \
                 sslrootcert=<PEM file> in {URL_VAR} (or {ROOT_CERT_VAR}), or the PEM text in \
                 {CA_VAR}"
            )));
        }

        let mut pg = tokio_postgres::Config::from_str(&parts.rest)
            .map_err(|e| invalid_url(crate::error_chain(&e)))?;
        pg.ssl_mode(match sslmode {
            SslMode::Disable => tokio_postgres::config::SslMode::Disable,
            SslMode::Prefer => tokio_postgres::config::SslMode::Prefer,
            _ => tokio_postgres::config::SslMode::Require,
        });
        if pg.get_connect_timeout().is_none() {
            pg.connect_timeout(Duration::from_secs(3));
        }
        if pg.get_application_name().is_none() {
            pg.application_name("mecapy");
        }
        let roots = (ca_certificates > 0).then_some(roots);
        let tls = MakeRustlsConnect::new(sslmode, roots).map_err(invalid_url)?;
        Ok(DatabaseConfig {
            pg,
            sslmode,
            ca_certificates,
            tls,
        })
    }

    /// The connection parameters, without `sslmode=verify-*` and `sslrootcert`.
    pub fn pg(&self) -> &tokio_postgres::Config {
        &self.pg
    }

    pub fn sslmode(&self) -> SslMode {
        self.sslmode
    }

    /// How many CA certificates are trusted (from `sslrootcert` and `DATABASE_CA_CERT`).
    pub fn ca_certificates(&self) -> usize {
        self.ca_certificates
    }

    /// The TLS connector to hand to `tokio_postgres` or to a pool.
    pub fn tls(&self) -> MakeRustlsConnect {
        self.tls.clone()
    }

    /// The same server and TLS settings, another database.
    pub fn with_dbname(&self, dbname: &str) -> Self {
        let mut other = self.clone();
        other.pg.dbname(dbname);
        other
    }

    /// One connection; its I/O runs on a spawned task until the client is dropped.
    pub async fn connect(&self) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
        let (client, connection) = self.pg.connect(self.tls()).await?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "PostgreSQL connection closed");
            }
        });
        Ok(client)
    }
}

/// A URL with `sslmode` and `sslrootcert` taken out of its query (values percent-decoded).
#[derive(Debug, PartialEq, Eq)]
struct UrlParts {
    rest: String,
    sslmode: Option<String>,
    sslrootcert: Option<String>,
}

fn split_url(url: &str) -> Result<UrlParts, String> {
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        return Err("expected a postgres:// or postgresql:// URL".into());
    }
    let decode = |s: &str| {
        percent_decode_str(s)
            .decode_utf8()
            .map(|v| v.into_owned())
            .map_err(|_| format!("{s:?} is not UTF-8 once percent-decoded"))
    };
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, query),
        None => (url, ""),
    };
    let mut parts = UrlParts {
        rest: base.to_string(),
        sslmode: None,
        sslrootcert: None,
    };
    let mut kept = Vec::new();
    // libpq takes the last of repeated parameters; the others are kept as written.
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match decode(key)?.as_str() {
            "sslmode" => parts.sslmode = Some(decode(value)?),
            "sslrootcert" => parts.sslrootcert = Some(decode(value)?),
            _ => kept.push(pair),
        }
    }
    if !kept.is_empty() {
        parts.rest.push('?');
        parts.rest.push_str(&kept.join("&"));
    }
    Ok(parts)
}

fn read_root_cert(path: &str) -> Result<Vec<u8>, String> {
    if path.is_empty() {
        return Err("sslrootcert is empty: give the path of the CA's PEM file".into());
    }
    if path == "system" {
        return Err(format!(
            "sslrootcert=system is not supported: give the CA's PEM file, or its text in {CA_VAR}"
        ));
    }
    std::fs::read(path).map_err(|e| format!("sslrootcert {path}: cannot read it ({e})"))
}

/// `DATABASE_CA_CERT` with each literal `\n` turned into a line break.
fn pem_from_env(text: &str) -> Vec<u8> {
    text.replace("\\n", "\n").into_bytes()
}

/// Adds every certificate of a PEM text; refuses a text that holds none.
fn add_certificates(roots: &mut RootCertStore, pem: &[u8]) -> Result<(), String> {
    let mut added = 0;
    for (i, cert) in CertificateDer::pem_slice_iter(pem).enumerate() {
        let cert = cert.map_err(|e| format!("certificate {}: {e}", i + 1))?;
        roots
            .add(cert)
            .map_err(|e| format!("certificate {} is not a usable CA: {e}", i + 1))?;
        added += 1;
    }
    if added == 0 {
        return Err("no PEM certificate (-----BEGIN CERTIFICATE-----) in it".into());
    }
    Ok(())
}

/// Makes a rustls connector per connection, for the host name `tokio_postgres` connects to.
#[derive(Clone)]
pub struct MakeRustlsConnect {
    config: Arc<ClientConfig>,
}

impl MakeRustlsConnect {
    fn new(sslmode: SslMode, roots: Option<RootCertStore>) -> Result<Self, String> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let verifier: Arc<dyn ServerCertVerifier> = match roots {
            None => Arc::new(AnyCertificate {
                algorithms: provider.signature_verification_algorithms,
            }),
            Some(roots) => {
                let webpki = chain_verifier(roots, provider.clone())?;
                if sslmode == SslMode::VerifyFull {
                    webpki
                } else {
                    Arc::new(ChainOnly(webpki))
                }
            }
        };
        let mut config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS configuration: {e}"))?
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_no_client_auth();
        // What libpq 17 sends; PostgreSQL 17 requires it with sslnegotiation=direct.
        config.alpn_protocols = vec![b"postgresql".to_vec()];
        Ok(MakeRustlsConnect {
            config: Arc::new(config),
        })
    }
}

fn chain_verifier(
    roots: RootCertStore,
    provider: Arc<CryptoProvider>,
) -> Result<Arc<WebPkiServerVerifier>, String> {
    WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
        .build()
        .map_err(|e| format!("TLS certificate verifier: {e}"))
}

impl<S> MakeTlsConnect<S> for MakeRustlsConnect
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = RustlsStream<S>;
    type TlsConnect = RustlsConnect;
    type Error = io::Error;

    fn make_tls_connect(&mut self, host: &str) -> io::Result<RustlsConnect> {
        let name = ServerName::try_from(host).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{host:?} cannot be checked against a TLS certificate: {e}"),
            )
        })?;
        Ok(RustlsConnect {
            connector: tokio_rustls::TlsConnector::from(self.config.clone()),
            name: name.to_owned(),
        })
    }
}

/// The handshake of one connection.
pub struct RustlsConnect {
    connector: tokio_rustls::TlsConnector,
    name: ServerName<'static>,
}

impl<S> TlsConnect<S> for RustlsConnect
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = RustlsStream<S>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<RustlsStream<S>>> + Send>>;

    fn connect(self, stream: S) -> Self::Future {
        Box::pin(async move {
            let stream = self.connector.connect(self.name, stream).await?;
            Ok(RustlsStream(stream))
        })
    }
}

/// A TLS session with the server.
pub struct RustlsStream<S>(tokio_rustls::client::TlsStream<S>);

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for RustlsStream<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for RustlsStream<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> TlsStream for RustlsStream<S> {
    /// Lets SCRAM-SHA-256-PLUS bind the login to the certificate the server presented, so a
    /// man in the middle cannot relay the authentication even when no certificate is checked.
    fn channel_binding(&self) -> ChannelBinding {
        let (_, session) = self.0.get_ref();
        session
            .peer_certificates()
            .and_then(|chain| chain.first())
            .and_then(|cert| tls_server_end_point(cert))
            .map_or_else(ChannelBinding::none, ChannelBinding::tls_server_end_point)
    }
}

/// RFC 5929's `tls-server-end-point`: the hash of the server's certificate, with the hash of its
/// signature algorithm (SHA-256 for MD5 and SHA-1). `None` for other algorithms (Ed25519,
/// RSA-PSS), which PostgreSQL does not bind either.
fn tls_server_end_point(cert: &[u8]) -> Option<Vec<u8>> {
    const RSA_PKCS1: [u8; 8] = [0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01];
    const ECDSA_SHA1: [u8; 7] = [0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x01];
    const ECDSA_SHA2: [u8; 7] = [0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03];
    let oid = signature_algorithm(cert)?;
    let hash = match oid.split_last()? {
        (&last, prefix) if prefix == RSA_PKCS1 => match last {
            4 | 5 | 11 => 256,
            12 => 384,
            13 => 512,
            _ => return None,
        },
        (&last, prefix) if prefix == ECDSA_SHA2 => match last {
            2 => 256,
            3 => 384,
            4 => 512,
            _ => return None,
        },
        _ if oid == ECDSA_SHA1 => 256,
        _ => return None,
    };
    Some(match hash {
        256 => Sha256::digest(cert).to_vec(),
        384 => Sha384::digest(cert).to_vec(),
        _ => Sha512::digest(cert).to_vec(),
    })
}

/// The OID of `Certificate.signatureAlgorithm` (DER: SEQUENCE { tbs, SEQUENCE { OID, .. }, .. }).
fn signature_algorithm(cert: &[u8]) -> Option<&[u8]> {
    let (0x30, certificate, _) = der_element(cert)? else {
        return None;
    };
    let (0x30, _tbs, rest) = der_element(certificate)? else {
        return None;
    };
    let (0x30, algorithm, _) = der_element(rest)? else {
        return None;
    };
    let (0x06, oid, _) = der_element(algorithm)? else {
        return None;
    };
    Some(oid)
}

/// One DER element: (tag, contents, what follows it).
fn der_element(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (first as usize, rest)
    } else {
        let n = (first & 0x7f) as usize;
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |len, &b| (len << 8) | b as usize);
        (len, &rest[n..])
    };
    (rest.len() >= len).then(|| (tag, &rest[..len], &rest[len..]))
}

/// `prefer` and `require` without a CA: any certificate, as libpq; the handshake signature is
/// still checked, so the server holds the key of the certificate it shows (channel binding).
#[derive(Debug)]
struct AnyCertificate {
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for AnyCertificate {
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

/// `verify-ca`, and `prefer`/`require` with a CA: the chain (validity, issuer, usage) is checked,
/// the host name is not. webpki checks the chain before the name, so a name mismatch means the
/// chain was good.
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn invalid(result: Result<DatabaseConfig, ConfigError>) -> (&'static str, String) {
        match result {
            Err(ConfigError::Invalid { name, reason }) => (name, reason),
            other => panic!("expected an invalid variable, got {other:?}"),
        }
    }

    /// Why `DATABASE_URL` with this `sslmode` and no CA is refused (the variable is named).
    fn refused_sslmode(mode: &str) -> String {
        let (name, reason) = invalid(DatabaseConfig::parse(
            &format!("postgres://u@db/app?sslmode={mode}"),
            None,
        ));
        assert_eq!(name, "DATABASE_URL");
        reason
    }

    #[test]
    fn sslmode_and_sslrootcert_are_taken_out_of_the_url() {
        let parts = split_url(
            "postgres://u:p@db:5432/app?application_name=x&sslmode=verify-full&sslrootcert=%2Ftmp%2Fca%20dir%2Fca.crt&connect_timeout=7",
        )
        .unwrap();
        assert_eq!(
            parts,
            UrlParts {
                rest: "postgres://u:p@db:5432/app?application_name=x&connect_timeout=7".into(),
                sslmode: Some("verify-full".into()),
                sslrootcert: Some("/tmp/ca dir/ca.crt".into()),
            }
        );
        let parts = split_url("postgresql://u@db/app?sslmode=require").unwrap();
        assert_eq!(parts.rest, "postgresql://u@db/app");
        assert_eq!(parts.sslmode.as_deref(), Some("require"));
        assert_eq!(
            split_url("postgres://u@db/app").unwrap().rest,
            "postgres://u@db/app"
        );
    }

    #[test]
    fn the_last_sslmode_wins_as_in_libpq() {
        let parts = split_url("postgres://u@db/app?sslmode=disable&sslmode=require").unwrap();
        assert_eq!(parts.sslmode.as_deref(), Some("require"));
    }

    #[test]
    fn the_stripped_url_is_what_tokio_postgres_gets() {
        let cfg = DatabaseConfig::parse(
            "postgres://u:p@db.internal:6432/app?sslmode=require&application_name=api",
            None,
        )
        .unwrap();
        assert_eq!(cfg.sslmode(), SslMode::Require);
        assert_eq!(
            cfg.pg().get_ssl_mode(),
            tokio_postgres::config::SslMode::Require
        );
        assert_eq!(cfg.pg().get_ports(), [6432]);
        assert_eq!(cfg.pg().get_dbname(), Some("app"));
        assert_eq!(cfg.pg().get_application_name(), Some("api"));
        assert!(!format!("{cfg:?}").contains(":p@"), "{cfg:?}");
    }

    #[test]
    fn no_sslmode_means_prefer() {
        let cfg = DatabaseConfig::parse("postgres://u:p@db/app", None).unwrap();
        assert_eq!(cfg.sslmode(), SslMode::Prefer);
        assert_eq!(
            cfg.pg().get_ssl_mode(),
            tokio_postgres::config::SslMode::Prefer
        );
        assert_eq!(cfg.pg().get_application_name(), Some("mecapy"));
        assert_eq!(
            cfg.pg().get_connect_timeout(),
            Some(&Duration::from_secs(3))
        );
        let cfg = DatabaseConfig::parse("postgres://u:p@db/app?sslmode=disable", None).unwrap();
        assert_eq!(
            cfg.pg().get_ssl_mode(),
            tokio_postgres::config::SslMode::Disable
        );
    }

    #[test]
    fn an_unknown_sslmode_names_the_variable_and_the_choices() {
        for mode in ["verify_full", "allow", "", "REQUIRE"] {
            let reason = refused_sslmode(mode);
            assert!(reason.contains("verify-full"), "{reason}");
        }
    }

    #[test]
    fn verification_without_a_ca_is_refused_at_start_up() {
        for mode in ["verify-ca", "verify-full"] {
            let reason = refused_sslmode(mode);
            assert!(reason.contains("DATABASE_CA_CERT"), "{reason}");
        }
    }

    #[test]
    fn an_unreadable_or_empty_root_cert_is_refused() {
        let (name, reason) = invalid(DatabaseConfig::parse(
            "postgres://u@db/app?sslmode=verify-full&sslrootcert=/nonexistent/ca.crt",
            None,
        ));
        assert_eq!(name, "DATABASE_URL");
        assert!(reason.contains("/nonexistent/ca.crt"), "{reason}");

        let empty = std::env::temp_dir().join(format!("mecapy-empty-{}.crt", std::process::id()));
        std::fs::write(&empty, "").unwrap();
        let (name, reason) = invalid(DatabaseConfig::parse(
            &format!(
                "postgres://u@db/app?sslmode=verify-full&sslrootcert={}",
                empty.display()
            ),
            None,
        ));
        std::fs::remove_file(&empty).unwrap();
        assert_eq!(name, "DATABASE_URL");
        assert!(reason.contains("no PEM certificate"), "{reason}");

        let (_, reason) = invalid(DatabaseConfig::parse(
            "postgres://u@db/app?sslmode=verify-full&sslrootcert=",
            None,
        ));
        assert!(reason.contains("empty"), "{reason}");
    }

    #[test]
    fn a_ca_variable_without_a_certificate_names_it() {
        let (name, reason) = invalid(DatabaseConfig::parse(
            "postgres://u@db/app?sslmode=verify-full",
            Some("not a certificate"),
        ));
        assert_eq!(name, "DATABASE_CA_CERT");
        assert!(reason.contains("no PEM certificate"), "{reason}");

        let (name, reason) = invalid(DatabaseConfig::parse(
            "postgres://u@db/app",
            Some("-----BEGIN CERTIFICATE-----\\nnot base64!\\n-----END CERTIFICATE-----\\n"),
        ));
        assert_eq!(name, "DATABASE_CA_CERT");
        assert!(reason.contains("certificate 1"), "{reason}");
    }

    fn from_vars(vars: &[(&str, &str)]) -> Result<DatabaseConfig, ConfigError> {
        DatabaseConfig::from_lookup(|k| {
            vars.iter()
                .find(|(name, _)| *name == k)
                .map(|(_, v)| v.to_string())
        })
    }

    #[test]
    fn empty_ca_variables_are_unset() {
        let cfg = from_vars(&[
            ("DATABASE_URL", "postgres://u@db/app"),
            ("DATABASE_CA_CERT", ""),
            ("PGSSLROOTCERT", ""),
        ])
        .unwrap();
        assert_eq!(cfg.ca_certificates(), 0);
        assert!(matches!(
            from_vars(&[("DATABASE_URL", " ")]),
            Err(ConfigError::Missing("DATABASE_URL"))
        ));
    }

    #[test]
    fn pgsslrootcert_is_read_when_the_url_has_no_sslrootcert() {
        let (name, reason) = invalid(from_vars(&[
            ("DATABASE_URL", "postgres://u@db/app?sslmode=verify-full"),
            ("PGSSLROOTCERT", "/nonexistent/env-ca.crt"),
        ]));
        assert_eq!(name, "PGSSLROOTCERT");
        assert!(reason.contains("/nonexistent/env-ca.crt"), "{reason}");
        let (name, reason) = invalid(from_vars(&[
            (
                "DATABASE_URL",
                "postgres://u@db/app?sslmode=verify-full&sslrootcert=/nonexistent/url-ca.crt",
            ),
            ("PGSSLROOTCERT", "/nonexistent/env-ca.crt"),
        ]));
        assert_eq!(name, "DATABASE_URL");
        assert!(reason.contains("/nonexistent/url-ca.crt"), "{reason}");
    }

    #[test]
    fn literal_backslash_n_are_line_breaks() {
        let one_line = "-----BEGIN CERTIFICATE-----\\nMIIB\\nAAAA\\n-----END CERTIFICATE-----\\n";
        assert_eq!(
            String::from_utf8(pem_from_env(one_line)).unwrap(),
            "-----BEGIN CERTIFICATE-----\nMIIB\nAAAA\n-----END CERTIFICATE-----\n"
        );
        let real = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
        assert_eq!(pem_from_env(real), real.as_bytes());
    }

    #[test]
    fn not_a_postgres_url_is_refused() {
        let (name, reason) = invalid(DatabaseConfig::parse("host=db user=u", None));
        assert_eq!(name, "DATABASE_URL");
        assert!(reason.contains("postgres://"), "{reason}");
    }

    /// DER of SEQUENCE { SEQUENCE {}, SEQUENCE { OID }, BIT STRING } with `pad` bytes of tbs.
    fn fake_certificate(oid: &[u8], pad: usize) -> Vec<u8> {
        let mut tbs = vec![0x30];
        if pad < 0x80 {
            tbs.push(pad as u8);
        } else {
            tbs.extend([0x82, (pad >> 8) as u8, pad as u8]);
        }
        tbs.extend(std::iter::repeat_n(0u8, pad));
        let mut algorithm = vec![0x30, oid.len() as u8 + 2, 0x06, oid.len() as u8];
        algorithm.extend(oid);
        let body: Vec<u8> = [tbs, algorithm, vec![0x03, 0x01, 0x00]].concat();
        let mut cert = vec![0x30, 0x82, (body.len() >> 8) as u8, body.len() as u8];
        cert.extend(body);
        cert
    }

    #[test]
    fn the_end_point_hash_follows_the_signature_algorithm() {
        let ecdsa_sha256 = [0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02];
        let rsa_sha384 = [0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0c];
        let rsa_sha1 = [0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x05];
        let ed25519 = [0x2b, 0x65, 0x70];
        for pad in [3, 300] {
            let cert = fake_certificate(&ecdsa_sha256, pad);
            assert_eq!(signature_algorithm(&cert), Some(&ecdsa_sha256[..]));
            assert_eq!(
                tls_server_end_point(&cert),
                Some(Sha256::digest(&cert).to_vec())
            );
            let cert = fake_certificate(&rsa_sha384, pad);
            assert_eq!(
                tls_server_end_point(&cert),
                Some(Sha384::digest(&cert).to_vec())
            );
            let cert = fake_certificate(&rsa_sha1, pad);
            assert_eq!(
                tls_server_end_point(&cert),
                Some(Sha256::digest(&cert).to_vec())
            );
            assert_eq!(tls_server_end_point(&fake_certificate(&ed25519, pad)), None);
        }
        assert_eq!(tls_server_end_point(&[0x30, 0x05, 0x30]), None);
        assert_eq!(tls_server_end_point(b""), None);
    }
}
