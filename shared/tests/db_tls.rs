//! PostgreSQL over TLS against the REAL local server (`infra/services.sh` turns TLS on with a
//! certificate of its development CA and keeps plain connections accepted): each `sslmode`, the
//! CA from a file, from `PGSSLROOTCERT` and from `DATABASE_CA_CERT`, a wrong CA, a host name the
//! certificate does not carry, and the pool the functions use.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Command;

use mecapy_shared::config::{Config, ConfigError};
use mecapy_shared::db::tls::SslMode;
use mecapy_shared::db::{self, DatabaseConfig};
use mecapy_shared::http::error_chain;
use mecapy_testkit::local_env;

const START_HINT: &str = "start the local services with `make up` (or `infra/services.sh up`)";
const BRIDGE_IP: &str = "172.17.0.1";

struct Local {
    env: HashMap<String, String>,
    /// `DATABASE_URL` without its query: `postgres://user:password@host:port/db`.
    base: String,
    ca_file: String,
}

impl Local {
    /// The local configuration; fails naming the service if PostgreSQL or its CA is missing.
    async fn new() -> Self {
        let env = local_env();
        let url = env["DATABASE_URL"].clone();
        let base = url.split('?').next().unwrap().to_string();
        let ca_file = env
            .get("PGSSLROOTCERT")
            .cloned()
            .expect("infra/local.env sets PGSSLROOTCERT");
        let plain = DatabaseConfig::parse(&format!("{base}?sslmode=disable"), None).unwrap();
        if let Err(e) = plain.connect().await {
            panic!(
                "PostgreSQL is not reachable at {base} ({}): {START_HINT}",
                error_chain(&e)
            );
        }
        if std::fs::metadata(&ca_file).is_err() {
            panic!(
                "the CA of PostgreSQL's TLS certificate is missing at {ca_file}: {START_HINT} \
                 (infra/services.sh creates it and turns TLS on)"
            );
        }
        Local { env, base, ca_file }
    }

    /// `base` on another host (and port kept), with `query`.
    fn url_at(&self, host: &str, query: &str) -> String {
        let base = self.base.replacen("@127.0.0.1:", &format!("@{host}:"), 1);
        format!("{base}?{query}")
    }

    fn url(&self, query: &str) -> String {
        self.url_at("127.0.0.1", query)
    }
}

/// `(ssl, protocol version)` of the session, as the server sees it.
async fn session_tls(client: &tokio_postgres::Client) -> (bool, Option<String>) {
    let row = client
        .query_one(
            "SELECT ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .expect("pg_stat_ssl");
    (row.get(0), row.get(1))
}

async fn connect(url: &str, ca_pem: Option<&str>) -> Result<tokio_postgres::Client, String> {
    let config = DatabaseConfig::parse(url, ca_pem).unwrap_or_else(|e| panic!("{url}: {e}"));
    config.connect().await.map_err(|e| error_chain(&e))
}

async fn assert_tls(url: &str, ca_pem: Option<&str>) {
    let client = connect(url, ca_pem).await.unwrap_or_else(|e| {
        if e.contains("does not support TLS") {
            panic!("PostgreSQL does not offer TLS ({e}): {START_HINT}");
        }
        panic!("{url}: {e}")
    });
    let (ssl, version) = session_tls(&client).await;
    assert!(ssl, "{url}: the session is not encrypted");
    assert!(
        matches!(version.as_deref(), Some("TLSv1.3" | "TLSv1.2")),
        "{version:?}"
    );
}

fn assert_certificate_refused(result: Result<tokio_postgres::Client, String>, what: &str) {
    match result {
        Ok(_) => panic!("{what}: connected, the certificate should have been refused"),
        Err(e) => assert!(
            e.contains("TLS handshake") && e.contains("certificate"),
            "{what}: {e}"
        ),
    }
}

/// A throwaway CA that never signed PostgreSQL's certificate (removed on drop).
struct OtherCa {
    dir: PathBuf,
    cert: PathBuf,
}

impl OtherCa {
    fn new() -> Self {
        let dir =
            std::env::temp_dir().join(format!("mecapy-other-ca-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let cert = dir.join("ca.crt");
        let out = Command::new("openssl")
            .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
            .args(["ec_paramgen_curve:P-256", "-nodes", "-days", "1"])
            .args(["-subj", "/CN=Not the MecaPy development CA", "-keyout"])
            .arg(dir.join("ca.key"))
            .arg("-out")
            .arg(&cert)
            .output()
            .unwrap_or_else(|e| {
                panic!("openssl makes the throwaway CA ({e}): apt-get install openssl")
            });
        assert!(
            out.status.success(),
            "openssl req: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        OtherCa { dir, cert }
    }
}

impl Drop for OtherCa {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[tokio::test]
async fn the_local_configuration_is_verified_tls() {
    let local = Local::new().await;
    let config = DatabaseConfig::from_lookup(|k| local.env.get(k).cloned())
        .unwrap_or_else(|e| panic!("infra/local.env: {e}"));
    assert_eq!(config.sslmode(), SslMode::VerifyFull);
    assert_eq!(config.ca_certificates(), 1);
    let client = config
        .connect()
        .await
        .unwrap_or_else(|e| panic!("{}: {}: {START_HINT}", local.base, error_chain(&e)));
    assert!(session_tls(&client).await.0);
}

#[tokio::test]
async fn verify_full_with_the_project_ca_connects_on_both_addresses() {
    let local = Local::new().await;
    for host in ["127.0.0.1", BRIDGE_IP] {
        let url = local.url_at(
            host,
            &format!("sslmode=verify-full&sslrootcert={}", local.ca_file),
        );
        assert_tls(&url, None).await;
    }
    // The DNS name of the certificate, reached at its address.
    let url = local.url_at(
        "localhost",
        &format!(
            "hostaddr=127.0.0.1&sslmode=verify-full&sslrootcert={}",
            local.ca_file
        ),
    );
    assert_tls(&url, None).await;
}

#[tokio::test]
async fn the_ca_as_one_line_text_verifies_the_server_as_the_functions_do() {
    let local = Local::new().await;
    let pem = std::fs::read_to_string(&local.ca_file).unwrap();
    let one_line = pem.replace('\n', "\\n");
    assert!(!one_line.contains('\n'));
    // The deployed functions: the bridge address, the CA in DATABASE_CA_CERT, no file.
    let url = local.url_at(BRIDGE_IP, "sslmode=verify-full");
    let vars = HashMap::from([
        ("DATABASE_URL", url.clone()),
        ("DATABASE_CA_CERT", one_line),
    ]);
    let config = DatabaseConfig::from_lookup(|k| vars.get(k).cloned()).unwrap();
    assert_eq!(config.ca_certificates(), 1);
    let client = config
        .connect()
        .await
        .unwrap_or_else(|e| panic!("{url}: {}", error_chain(&e)));
    assert!(session_tls(&client).await.0);
}

#[tokio::test]
async fn a_wrong_ca_is_refused() {
    let local = Local::new().await;
    let other = OtherCa::new();
    // A configured CA is checked in every TLS mode, as libpq does with a root certificate.
    for mode in ["verify-full", "verify-ca", "require", "prefer"] {
        let url = local.url(&format!(
            "sslmode={mode}&sslrootcert={}",
            other.cert.display()
        ));
        assert_certificate_refused(connect(&url, None).await, mode);
    }
    let pem = std::fs::read_to_string(&other.cert).unwrap();
    let url = local.url_at(BRIDGE_IP, "sslmode=verify-full");
    assert_certificate_refused(connect(&url, Some(&pem)).await, "DATABASE_CA_CERT");
}

#[tokio::test]
async fn a_host_name_the_certificate_does_not_carry_is_refused_by_verify_full_only() {
    let local = Local::new().await;
    // hostaddr reaches the server; the name checked against the certificate is the host's.
    let query = |mode: &str| {
        format!(
            "hostaddr=127.0.0.1&sslmode={mode}&sslrootcert={}",
            local.ca_file
        )
    };
    let url = local.url_at("db.invalid", &query("verify-full"));
    let Err(e) = connect(&url, None).await else {
        panic!("verify-full with host db.invalid connected");
    };
    assert!(
        e.contains("certificate") && e.contains("not valid for name"),
        "{e}"
    );
    // verify-ca checks the chain only.
    assert_tls(&local.url_at("db.invalid", &query("verify-ca")), None).await;
}

#[tokio::test]
async fn require_and_prefer_encrypt_without_a_ca() {
    let local = Local::new().await;
    assert_tls(&local.url("sslmode=require"), None).await;
    // No sslmode: prefer, libpq's default, takes TLS when the server offers it.
    assert_tls(&local.url("application_name=mecapy-tls-test"), None).await;
    assert_tls(&local.url_at(BRIDGE_IP, "sslmode=prefer"), None).await;
}

#[tokio::test]
async fn disable_stays_plain_and_plain_is_still_accepted() {
    let local = Local::new().await;
    for host in ["127.0.0.1", BRIDGE_IP] {
        let url = local.url_at(host, "sslmode=disable");
        let client = connect(&url, None)
            .await
            .unwrap_or_else(|e| panic!("{url}: {e}"));
        assert_eq!(session_tls(&client).await, (false, None), "{url}");
    }
}

#[tokio::test]
async fn channel_binding_ties_the_login_to_the_certificate() {
    let local = Local::new().await;
    // SCRAM-SHA-256-PLUS: the server checks our tls-server-end-point hash of its certificate.
    assert_tls(&local.url("sslmode=require&channel_binding=require"), None).await;
    assert_tls(
        &local.url_at(
            BRIDGE_IP,
            &format!(
                "sslmode=verify-full&sslrootcert={}&channel_binding=require",
                local.ca_file
            ),
        ),
        None,
    )
    .await;
}

#[tokio::test]
async fn the_pool_of_the_functions_connects_over_verified_tls() {
    let local = Local::new().await;
    let config = DatabaseConfig::from_lookup(|k| local.env.get(k).cloned()).unwrap();
    let pool = db::pool(&config, 2).unwrap();
    let client = pool
        .get()
        .await
        .unwrap_or_else(|e| panic!("pool over TLS: {}: {START_HINT}", error_chain(&e)));
    assert!(session_tls(&client).await.0);
}

#[tokio::test]
async fn a_bad_sslmode_or_ca_fails_start_up_naming_the_variable() {
    let local = Local::new().await;
    let load = |overrides: &[(&str, String)]| {
        let mut vars = local.env.clone();
        vars.insert("STATE_SECRET".into(), "x".repeat(32));
        for (k, v) in overrides {
            vars.insert(k.to_string(), v.clone());
        }
        Config::from_lookup(|k| vars.get(k).cloned())
    };
    load(&[]).expect("infra/local.env is a valid configuration");

    let bad_mode = load(&[("DATABASE_URL", local.url("sslmode=verify_full"))]);
    assert!(
        matches!(&bad_mode, Err(ConfigError::Invalid { name: "DATABASE_URL", reason }) if reason.contains("verify-full")),
        "{bad_mode:?}"
    );
    let no_file = load(&[("PGSSLROOTCERT", "/nonexistent/mecapy-ca.crt".into())]);
    assert!(
        matches!(&no_file, Err(ConfigError::Invalid { name: "PGSSLROOTCERT", reason }) if reason.contains("/nonexistent/mecapy-ca.crt")),
        "{no_file:?}"
    );
    let not_pem = load(&[("DATABASE_CA_CERT", "MIIB...".into())]);
    assert!(
        matches!(
            &not_pem,
            Err(ConfigError::Invalid {
                name: "DATABASE_CA_CERT",
                ..
            })
        ),
        "{not_pem:?}"
    );
    let no_ca = load(&[
        ("DATABASE_URL", local.url("sslmode=verify-full")),
        ("PGSSLROOTCERT", String::new()),
    ]);
    assert!(
        matches!(&no_ca, Err(ConfigError::Invalid { name: "DATABASE_URL", reason }) if reason.contains("DATABASE_CA_CERT")),
        "{no_ca:?}"
    );
}
