//! The thin Redis adapter (fred): connect with a hard timeout, read `INFO` and `CONFIG GET`,
//! execute the commands `commands_for` decided. No decisions are made here.
//!
//! Connections are kept between probes (one round trip per probe, no TLS handshake every
//! second) and thrown away on the first error or timeout: the next probe reconnects from scratch,
//! so a silent network cut can never leave a half-dead connection in use. fred's own reconnect
//! machinery is not used (no reconnect policy, one attempt per command).

use std::sync::Arc;
use std::time::{Duration, Instant};

use fred::prelude::*;
use fred::rustls;
use fred::rustls::pki_types::pem::PemObject;
use fred::rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use fred::types::config::{TlsConfig, TlsConnector, TlsHostMapping};
use fred::types::{ClusterHash, ConnectHandle, CustomCommand};

use crate::commands::{Command, TlsFiles};
use crate::info::{OWNED_PARAMETERS, RedisConfig};
use crate::secret::Secret;

/// Run one call on a cached connection within the timeout; drop the connection on failure.
/// The error names the step that did not complete: connecting (with AUTH and the TLS
/// handshake) or the call itself.
macro_rules! cached_call {
    ($self:ident, $ep:ident, $step:expr, |$c:ident| $call:expr) => {{
        let timeout = $self.timeout;
        let mut reached = Step::Connect;
        let res = match tokio::time::timeout(timeout, async {
            let $c = $self.get($ep).await?;
            reached = $step;
            $call.await
        })
        .await
        {
            Ok(r) => r,
            Err(_) => Err(IoError::Unreachable(NO_ANSWER.into())),
        };
        match &res {
            Ok(_) => $self.answered(),
            // An error reply leaves the connection usable.
            Err(IoError::Redis(_)) => $self.answered(),
            // A late answer on a kept connection may be queued behind other traffic (see
            // `Cached::for_probe`): keep the connection while it is within its patience.
            Err(IoError::Unreachable(why)) if why == NO_ANSWER && $self.patient() => {}
            // Anything else (I/O, TLS, auth, a connection silent for too long) drops it so the
            // next call starts from a fresh connection.
            Err(_) => $self.reset(),
        }
        res.map_err(|cause| RedisError {
            addr: $ep.addr(),
            step: reached,
            cause,
        })
    }};
}

/// What a call says when no answer came within its timeout.
pub const NO_ANSWER: &str = "no answer within the probe timeout";

/// Where to connect and how to authenticate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    pub host: String,
    pub port: u16,
    pub username: Option<String>,
    pub password: Option<Secret>,
    /// The password being rotated out (`previousPassword`, docs/password-rotation.md): tried
    /// when `password` is refused.
    pub previous: Option<Secret>,
    pub tls: Option<TlsFiles>,
}

impl Endpoint {
    pub fn addr(&self) -> String {
        crate::addr(&self.host, self.port)
    }
}

/// Why a connection or command failed, classified for a user (the words only: callers say
/// which server, [`RedisError`] which step).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum IoError {
    /// The server rejected our credentials.
    #[error("{0}")]
    Auth(String),
    /// TCP could not be established, was reset, or the server did not answer in time.
    #[error("{0}")]
    Unreachable(String),
    /// TLS configuration or handshake failure.
    #[error("{0}")]
    Tls(String),
    /// The server answered with an error.
    #[error("{0}")]
    Redis(String),
}

/// The step of a call to Redis that did not complete.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// TCP, the TLS handshake and `AUTH` (fred does them as one).
    Connect,
    Info,
    InfoReplication,
    ConfigGet,
    ConfigSet,
    ReplicaOf,
    ConfigRewrite,
    SentinelMaster,
    /// `ACL GETUSER default` (reading) or the rotation's `MULTI` (setting).
    Passwords,
}

impl std::fmt::Display for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Step::Connect => "connect",
            Step::Info => "INFO",
            Step::InfoReplication => "INFO replication",
            Step::ConfigGet => "CONFIG GET",
            Step::ConfigSet => "CONFIG SET",
            Step::ReplicaOf => "REPLICAOF",
            Step::ConfigRewrite => "CONFIG REWRITE",
            Step::SentinelMaster => "SENTINEL MASTER",
            Step::Passwords => "ACL default user",
        })
    }
}

impl Step {
    /// The step that executes `cmd`.
    pub fn of(cmd: &Command) -> Step {
        match cmd {
            Command::ConfigSet(_) => Step::ConfigSet,
            Command::ReplicaOf(..) | Command::ReplicaOfNoOne | Command::Reconnect(..) => {
                Step::ReplicaOf
            }
            Command::SetPasswords { .. } => Step::Passwords,
        }
    }
}

/// A failed call to one Redis server: which server, which step, and why. The cause comes first
/// so that messages keep reading as they did before the step was added
/// (`connection refused (connect 127.0.0.1:6379)`).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{cause} ({step} {addr})")]
pub struct RedisError {
    /// `host:port` of the server.
    pub addr: String,
    pub step: Step,
    /// Why, in words for a user.
    pub cause: IoError,
}

/// Stable, human wording for a fred error (no addresses of ephemeral ports, no secrets).
pub fn classify(e: &Error) -> IoError {
    let d = e.details().to_string();
    let lower = d.to_lowercase();
    if lower.contains("wrongpass")
        || lower.contains("invalid password")
        || lower.contains("invalid username-password")
        || lower.contains("noauth")
        || lower.contains("without any password configured")
        || matches!(e.kind(), ErrorKind::Auth)
    {
        let what = if lower.contains("without any password configured") {
            "the server has no password but one was sent (remove passwordFile or set a password on the source)"
        } else if lower.contains("noauth") {
            "the server requires a password but none is configured (set passwordFile)"
        } else {
            "the server rejected the password (WRONGPASS)"
        };
        return IoError::Auth(what.into());
    }
    // rustls failures surface as I/O errors from tokio-rustls; server error replies that merely
    // mention TLS (a failed CONFIG SET tls-*) are not TLS failures of this connection.
    if matches!(e.kind(), ErrorKind::Tls)
        || (matches!(e.kind(), ErrorKind::IO)
            && (lower.contains("certificate")
                || lower.contains("tls")
                || lower.contains("handshake")
                || lower.contains("alert")))
    {
        return IoError::Tls(tls_detail(&d));
    }
    if matches!(e.kind(), ErrorKind::Timeout) {
        return IoError::Unreachable(NO_ANSWER.into());
    }
    if matches!(e.kind(), ErrorKind::IO | ErrorKind::Canceled) || lower.contains("connection") {
        let why = if lower.contains("refused") {
            "connection refused".to_string()
        } else if lower.contains("reset") {
            "connection reset".to_string()
        } else if lower.contains("no route") || lower.contains("unreachable") {
            "no route to host".to_string()
        } else if lower.contains("lookup") || lower.contains("resolve") || lower.contains("name") {
            "host name does not resolve".to_string()
        } else {
            d
        };
        return IoError::Unreachable(why);
    }
    IoError::Redis(d)
}

/// `Custom { kind: InvalidData, error: InvalidCertificate(UnknownIssuer) }` -> words.
fn tls_detail(d: &str) -> String {
    let inner = d
        .split_once("error: ")
        .map(|(_, r)| r.trim_end_matches(['}', ' ']))
        .unwrap_or(d);
    if inner.contains("InvalidCertificate(") {
        let hint = if inner.contains("UnknownIssuer") || inner.contains("BadSignature") {
            " (not signed by the CA in --tls-ca-file)"
        } else if inner.contains("NotValidForName") {
            " (the certificate does not name the host in upstream.host)"
        } else if inner.contains("Expired") {
            " (expired)"
        } else {
            ""
        };
        format!("the source's certificate was rejected: {inner}{hint}")
    } else {
        format!("TLS handshake failed: {inner}")
    }
}

fn pem_error(what: &str, path: &str, e: impl std::fmt::Display) -> IoError {
    IoError::Tls(format!("cannot load {what} from {path}: {e}"))
}

/// Checks that a server's certificate chains to the pod's CA, not which names it carries: for
/// the local redis-server, reached on a loopback address inside the pod, whose certificate
/// names the pod's DNS names (never `127.0.0.1`). Nothing outside the pod can answer on its
/// loopback address, so the name adds nothing there; everywhere else names are checked.
#[derive(Debug)]
struct ChainOnly(Arc<rustls::client::WebPkiServerVerifier>);

impl rustls::client::danger::ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        use rustls::CertificateError::{NotValidForName, NotValidForNameContext};
        // The name is checked last, after the chain: this error means the chain is good.
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(
                NotValidForName | NotValidForNameContext { .. },
            )) => Ok(rustls::client::danger::ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// Whether `host` is a loopback address (the pod's own redis-server).
pub fn is_loopback(host: &str) -> bool {
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// A rustls client config from the pod's CA, certificate and key files. With `check_names`
/// false the server's certificate must still chain to the CA ([`ChainOnly`]).
pub fn rustls_config(files: &TlsFiles, check_names: bool) -> Result<rustls::ClientConfig, IoError> {
    let mut roots = rustls::RootCertStore::empty();
    let cas: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&files.ca)
        .map_err(|e| pem_error("the CA", &files.ca, e))?
        .collect::<Result<_, _>>()
        .map_err(|e| pem_error("the CA", &files.ca, e))?;
    for ca in cas {
        roots
            .add(ca)
            .map_err(|e| pem_error("the CA", &files.ca, e))?;
    }
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&files.cert)
        .map_err(|e| pem_error("the certificate", &files.cert, e))?
        .collect::<Result<_, _>>()
        .map_err(|e| pem_error("the certificate", &files.cert, e))?;
    let key = PrivateKeyDer::from_pem_file(&files.key)
        .map_err(|e| pem_error("the private key", &files.key, e))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| IoError::Tls(e.to_string()))?;
    let builder = if check_names {
        builder.with_root_certificates(roots)
    } else {
        let verifier =
            rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| pem_error("the CA", &files.ca, e))?;
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(ChainOnly(verifier)))
    };
    builder
        .with_client_auth_cert(certs, key)
        .map_err(|e| IoError::Tls(format!("client certificate/key rejected: {e}")))
}

/// One live connection.
pub struct Conn {
    client: Client,
    handle: ConnectHandle,
    /// Authenticated with the endpoint's `previous` password (`password` was refused).
    pub with_previous: bool,
}

impl Conn {
    /// Connect and authenticate, all within `timeout` per attempt: with the endpoint's
    /// password, and when the server refuses it, with the previous one (a rotation under way:
    /// this server may not have taken the new password yet). When both are refused, the error
    /// is the first one's.
    pub async fn connect(ep: &Endpoint, timeout: Duration) -> Result<Conn, IoError> {
        match Conn::connect_with(ep, ep.password.as_ref(), timeout).await {
            Err(IoError::Auth(why)) => match &ep.previous {
                Some(previous) => Conn::connect_with(ep, Some(previous), timeout)
                    .await
                    .map(|c| Conn {
                        with_previous: true,
                        ..c
                    })
                    .map_err(|_| IoError::Auth(why)),
                None => Err(IoError::Auth(why)),
            },
            other => other,
        }
    }

    async fn connect_with(
        ep: &Endpoint,
        password: Option<&Secret>,
        timeout: Duration,
    ) -> Result<Conn, IoError> {
        let tls = match &ep.tls {
            Some(files) => {
                // Fail early with a clear message for a host that is not a valid TLS name.
                ServerName::try_from(ep.host.clone()).map_err(|e| {
                    IoError::Tls(format!("{} is not a valid TLS name: {e}", ep.host))
                })?;
                Some(TlsConfig {
                    connector: TlsConnector::from(rustls_config(files, !is_loopback(&ep.host))?),
                    hostnames: TlsHostMapping::None,
                })
            }
            None => None,
        };
        let config = Config {
            server: ServerConfig::new_centralized(ep.host.clone(), ep.port),
            username: ep.username.clone(),
            password: password.map(|p| p.expose().to_string()),
            tls,
            fail_fast: true,
            ..Default::default()
        };
        let client = Builder::from_config(config)
            .with_connection_config(|c| {
                c.connection_timeout = timeout;
                c.internal_command_timeout = timeout;
                c.max_command_attempts = 1;
                c.tcp = TcpConfig {
                    nodelay: Some(true),
                    ..Default::default()
                };
            })
            .with_performance_config(|p| {
                p.default_command_timeout = timeout;
            })
            .build()
            .map_err(|e| classify(&e))?;
        match tokio::time::timeout(timeout, client.init()).await {
            Ok(Ok(handle)) => Ok(Conn {
                client,
                handle,
                with_previous: false,
            }),
            Ok(Err(e)) => Err(classify(&e)),
            Err(_) => Err(IoError::Unreachable(NO_ANSWER.into())),
        }
    }

    /// `INFO` (default sections), raw text.
    pub async fn info(&self) -> Result<String, IoError> {
        self.client
            .custom::<String, String>(
                CustomCommand::new_static("INFO", ClusterHash::FirstKey, false),
                vec![],
            )
            .await
            .map_err(|e| classify(&e))
    }

    /// `INFO replication`, raw text (what the upstream probe reads).
    pub async fn info_replication(&self) -> Result<String, IoError> {
        self.info_section("replication").await
    }

    /// `INFO <section>`, raw text (one section per call: Redis before 7.0 takes only one).
    pub async fn info_section(&self, section: &str) -> Result<String, IoError> {
        self.client
            .custom::<String, &str>(
                CustomCommand::new_static("INFO", ClusterHash::FirstKey, false),
                vec![section],
            )
            .await
            .map_err(|e| classify(&e))
    }

    /// `CONFIG GET` of every owned parameter in one call.
    pub async fn owned_config(&self) -> Result<RedisConfig, IoError> {
        let mut args = vec!["GET"];
        args.extend_from_slice(OWNED_PARAMETERS);
        let flat: Vec<String> = self
            .client
            .custom(
                CustomCommand::new_static("CONFIG", ClusterHash::FirstKey, false),
                args,
            )
            .await
            .map_err(|e| classify(&e))?;
        Ok(RedisConfig::from_pairs(pairs(flat)))
    }

    /// Execute one planned command. `replicaof` is the name `REPLICAOF` has in this Redis
    /// (renamed per cluster by the operator's redis.conf).
    pub async fn execute(&self, cmd: &Command, replicaof: &str) -> Result<(), IoError> {
        let (name, args): (&str, Vec<String>) = match cmd {
            Command::ConfigSet(pairs) => {
                let mut a = vec!["SET".to_string()];
                for (k, v) in pairs {
                    a.push(k.to_string());
                    a.push(v.expose().to_string());
                }
                ("CONFIG", a)
            }
            Command::ReplicaOf(h, p) => (replicaof, vec![h.clone(), p.to_string()]),
            Command::ReplicaOfNoOne => (replicaof, vec!["NO".into(), "ONE".into()]),
            Command::Reconnect(h, p) => return self.reconnect(replicaof, h, *p).await,
            Command::SetPasswords { current, previous } => {
                return self.set_passwords(current, previous.as_ref()).await;
            }
        };
        self.client
            .custom::<Value, String>(
                CustomCommand::new(name.to_string(), ClusterHash::FirstKey, false),
                args,
            )
            .await
            .map(|_| ())
            .map_err(|e| classify(&e))
    }

    /// [`Command::SetPasswords`]: `CONFIG SET requirepass <current>` (so that `CONFIG GET
    /// requirepass` and a rewritten redis.conf say the new one; Redis skips it when the value is
    /// unchanged) and `ACL SETUSER default resetpass ><current> [><previous>]` (the passwords
    /// accepted from then on, whatever was before), in one transaction: no client is ever
    /// refused a password that was accepted before and is still wanted. Connections already
    /// authenticated stay so.
    async fn set_passwords(
        &self,
        current: &Secret,
        previous: Option<&Secret>,
    ) -> Result<(), IoError> {
        let trx = self.client.multi();
        trx.custom::<Value, String>(
            CustomCommand::new_static("CONFIG", ClusterHash::FirstKey, false),
            vec![
                "SET".into(),
                "requirepass".into(),
                current.expose().to_string(),
            ],
        )
        .await
        .map_err(|e| classify(&e))?;
        trx.custom::<Value, String>(
            CustomCommand::new_static("ACL", ClusterHash::FirstKey, false),
            default_user_passwords_args(current, previous),
        )
        .await
        .map_err(|e| classify(&e))?;
        trx.exec::<Value>(true)
            .await
            .map(|_| ())
            .map_err(|e| classify(&e))
    }

    /// The SHA-256 (hex) of every password the default user accepts (`ACL GETUSER default`).
    pub async fn default_user_passwords(&self) -> Result<Vec<String>, IoError> {
        let reply: Value = self
            .client
            .custom(
                CustomCommand::new_static("ACL", ClusterHash::FirstKey, false),
                vec!["GETUSER", "default"],
            )
            .await
            .map_err(|e| classify(&e))?;
        Ok(acl_passwords(reply))
    }

    /// `ACL SETUSER default resetpass ><current> [><previous>]` alone (a Sentinel has no
    /// `MULTI` and no `requirepass` to set).
    pub async fn set_default_user_passwords(
        &self,
        current: &Secret,
        previous: Option<&Secret>,
    ) -> Result<(), IoError> {
        self.client
            .custom::<Value, String>(
                CustomCommand::new_static("ACL", ClusterHash::FirstKey, false),
                default_user_passwords_args(current, previous),
            )
            .await
            .map(|_| ())
            .map_err(|e| classify(&e))
    }

    /// A Sentinel's `sentinel-pass` (`SENTINEL CONFIG GET`): what it authenticates to the
    /// other Sentinels with.
    pub async fn sentinel_pass(&self) -> Result<Secret, IoError> {
        let flat: Vec<String> = self
            .client
            .custom(
                CustomCommand::new_static("SENTINEL", ClusterHash::FirstKey, false),
                vec!["CONFIG", "GET", "sentinel-pass"],
            )
            .await
            .map_err(|e| classify(&e))?;
        Ok(Secret::new(flat.into_iter().nth(1).unwrap_or_default()))
    }

    /// Make a Sentinel use `password` towards the data pods of `master` (`auth-pass`) and the
    /// other Sentinels (`sentinel-pass`), in that order (`sentinel-pass` is what tells it is
    /// done).
    pub async fn sentinel_use_password(
        &self,
        master: &str,
        password: &Secret,
    ) -> Result<(), IoError> {
        self.client
            .custom::<Value, String>(
                CustomCommand::new_static("SENTINEL", ClusterHash::FirstKey, false),
                vec![
                    "SET".into(),
                    master.into(),
                    "auth-pass".into(),
                    password.expose().into(),
                ],
            )
            .await
            .map_err(|e| classify(&e))?;
        self.client
            .custom::<Value, String>(
                CustomCommand::new_static("SENTINEL", ClusterHash::FirstKey, false),
                vec![
                    "CONFIG".into(),
                    "SET".into(),
                    "sentinel-pass".into(),
                    password.expose().into(),
                ],
            )
            .await
            .map(|_| ())
            .map_err(|e| classify(&e))
    }

    /// `SENTINEL GET-MASTER-ADDR-BY-NAME`: where a Sentinel says `master` is.
    pub async fn sentinel_master_addr(
        &self,
        master: &str,
    ) -> Result<Option<(String, u16)>, IoError> {
        let v: Vec<String> = self
            .client
            .custom(
                CustomCommand::new_static("SENTINEL", ClusterHash::FirstKey, false),
                vec!["GET-MASTER-ADDR-BY-NAME", master],
            )
            .await
            .map_err(|e| classify(&e))?;
        Ok(match v.as_slice() {
            [h, p] => p.parse().ok().map(|p| (h.clone(), p)),
            _ => None,
        })
    }

    /// [`Command::Reconnect`]: re-point away and back in one transaction, so Redis connects to
    /// `host port` at once, with no event-loop turn in between.
    async fn reconnect(&self, replicaof: &str, host: &str, port: u16) -> Result<(), IoError> {
        let trx = self.client.multi();
        let name = || CustomCommand::new(replicaof.to_string(), ClusterHash::FirstKey, false);
        let (dh, dp) = crate::commands::DETOUR;
        trx.custom::<Value, String>(name(), vec![dh.to_string(), dp.to_string()])
            .await
            .map_err(|e| classify(&e))?;
        trx.custom::<Value, String>(name(), vec![host.to_string(), port.to_string()])
            .await
            .map_err(|e| classify(&e))?;
        trx.exec::<Value>(true)
            .await
            .map(|_| ())
            .map_err(|e| classify(&e))
    }

    /// `SENTINEL MASTER <name>` on a Sentinel: the flat field/value pairs, or `None` when the
    /// Sentinel does not monitor `name` (`-ERR No such master with that name`).
    pub async fn sentinel_master(
        &self,
        name: &str,
    ) -> Result<Option<Vec<(String, String)>>, IoError> {
        let res: Result<Vec<String>, _> = self
            .client
            .custom(
                CustomCommand::new_static("SENTINEL", ClusterHash::FirstKey, false),
                vec!["MASTER", name],
            )
            .await;
        match res {
            Ok(flat) => Ok(Some(pairs(flat))),
            Err(e) if e.details().contains("No such master") => Ok(None),
            Err(e) => Err(classify(&e)),
        }
    }

    /// One command with any arguments; its reply.
    pub async fn command(&self, name: &'static str, args: Vec<Value>) -> Result<Value, IoError> {
        self.client
            .custom::<Value, Value>(
                CustomCommand::new_static(name, ClusterHash::FirstKey, false),
                args,
            )
            .await
            .map_err(|e| classify(&e))
    }

    /// `cmds` in one pipeline (one round trip): each command's reply, or its error reply's
    /// text. Err when the pipeline itself could not be sent.
    pub async fn pipeline(
        &self,
        cmds: &[crate::similarity::Cmd],
    ) -> Result<Vec<Result<Value, String>>, IoError> {
        if cmds.is_empty() {
            return Ok(vec![]);
        }
        let p = self.client.pipeline();
        for c in cmds {
            p.custom::<(), Value>(
                CustomCommand::new_static(c.name, ClusterHash::FirstKey, false),
                c.args.clone(),
            )
            .await
            .map_err(|e| classify(&e))?;
        }
        let replies = p.try_all::<Value>().await;
        if replies.len() != cmds.len()
            && let Some(Err(e)) = replies.first()
        {
            return Err(classify(e));
        }
        Ok(replies
            .into_iter()
            .map(|r| r.map_err(|e| e.details().to_string()))
            .collect())
    }

    /// `CONFIG REWRITE`: persist the applied settings in redis-server's config file.
    pub async fn config_rewrite(&self) -> Result<(), IoError> {
        self.client
            .custom::<Value, &str>(
                CustomCommand::new_static("CONFIG", ClusterHash::FirstKey, false),
                vec!["REWRITE"],
            )
            .await
            .map(|_| ())
            .map_err(|e| classify(&e))
    }

    /// Drop the connection without waiting on the network (it may be silently cut).
    pub fn close(self) {
        let Conn { client, handle, .. } = self;
        tokio::spawn(async move {
            let _ = tokio::time::timeout(Duration::from_millis(200), client.quit()).await;
            handle.abort();
        });
    }
}

/// A connection to one endpoint, re-established on demand and dropped on any error (and, with
/// a maximum age, at least that often).
pub struct Cached {
    endpoint: Option<Endpoint>,
    conn: Option<Conn>,
    timeout: Duration,
    max_age: Option<Duration>,
    connected_at: Option<Instant>,
    /// The last answer on `conn` (or its connection), for [`Cached::for_probe`]'s patience.
    answered_at: Option<Instant>,
    /// [`Cached::for_probe`]: how long a kept connection may go without answering before it is
    /// dropped, and how long a replacement may take to connect.
    patience: Option<Duration>,
    /// The replacement of a connection past its maximum age, connecting in the background.
    renewal: Option<tokio::task::JoinHandle<Result<Conn, IoError>>>,
}

impl Cached {
    pub fn new(timeout: Duration) -> Self {
        Cached {
            endpoint: None,
            conn: None,
            timeout,
            max_age: None,
            connected_at: None,
            answered_at: None,
            patience: None,
            renewal: None,
        }
    }

    /// A connection that is replaced once it is `max_age` old: behind a Service or a virtual IP,
    /// a kept connection stays with the server it first reached, and the upstream probe must see
    /// what the address leads to now.
    pub fn with_max_age(timeout: Duration, max_age: Duration) -> Self {
        Cached {
            max_age: Some(max_age),
            ..Cached::new(timeout)
        }
    }

    /// The upstream probe's connection: [`Cached::with_max_age`], made for a link the
    /// replication stream may saturate. There, every answer waits in the link's queue behind
    /// the stream (hundreds of milliseconds) and a lost packet waits for TCP's retransmission,
    /// so a fresh connection (TCP, TLS, AUTH: several round trips) often cannot be made within
    /// the probe timeout while a kept one still answers. Dropping the connection on every
    /// timeout (and every `max_age`) then turned one late answer into seconds of "link down"
    /// and unknown lag, exactly while the lag was high. So:
    /// - a timeout leaves the connection in place (its answer is read and discarded when it
    ///   comes; the next call is answered after it) unless it has not answered for `patience`:
    ///   a silently cut connection is dropped then, and the next call starts fresh (after a
    ///   long cut a kept TCP connection would wait out its retransmission backoff);
    /// - at `max_age` the replacement connects in the background, with `patience` as its
    ///   timeout, while the old connection keeps answering; it takes over once connected. The
    ///   old one serves at most `3 × max_age` in all.
    ///
    /// A timeout is still a failed probe (the link is reported down for that tick): only the
    /// connection is kept.
    pub fn for_probe(timeout: Duration, max_age: Duration, patience: Duration) -> Self {
        Cached {
            patience: Some(patience),
            ..Cached::with_max_age(timeout, max_age)
        }
    }

    /// Forget the connection (after an error).
    pub fn reset(&mut self) {
        if let Some(c) = self.conn.take() {
            c.close();
        }
        self.connected_at = None;
        self.answered_at = None;
    }

    /// The kept connection answered (a reply or an error reply).
    fn answered(&mut self) {
        self.answered_at = Some(Instant::now());
    }

    /// A timeout leaves the kept connection in place ([`Cached::for_probe`]).
    fn patient(&self) -> bool {
        match (self.patience, self.conn.as_ref(), self.answered_at) {
            (Some(p), Some(_), Some(at)) => at.elapsed() < p,
            _ => false,
        }
    }

    /// Install a finished background replacement (a failed one is tried again on the next call
    /// that finds the connection past its age).
    async fn take_renewal(&mut self) {
        if !self.renewal.as_ref().is_some_and(|h| h.is_finished()) {
            return;
        }
        let Some(handle) = self.renewal.take() else {
            return;
        };
        if let Ok(Ok(conn)) = handle.await {
            self.reset();
            self.conn = Some(conn);
            self.connected_at = Some(Instant::now());
            self.answered();
        }
    }

    /// A connection to `ep`, reusing the current one if `ep` did not change.
    pub async fn get(&mut self, ep: &Endpoint) -> Result<&Conn, IoError> {
        if self.endpoint.as_ref() != Some(ep) {
            self.reset();
            if let Some(h) = self.renewal.take() {
                h.abort();
            }
            self.endpoint = Some(ep.clone());
        }
        self.take_renewal().await;
        if let (Some(max), Some(at)) = (self.max_age, self.connected_at)
            && at.elapsed() >= max
        {
            match self.patience {
                Some(patience) if self.conn.is_some() && at.elapsed() < max * 3 => {
                    if self.renewal.is_none() {
                        let ep = ep.clone();
                        self.renewal =
                            Some(tokio::spawn(
                                async move { Conn::connect(&ep, patience).await },
                            ));
                    }
                }
                _ => self.reset(),
            }
        }
        if self.conn.is_none() {
            self.conn = Some(Conn::connect(ep, self.timeout).await?);
            self.connected_at = Some(Instant::now());
            self.answered();
        }
        Ok(self.conn.as_ref().expect("just connected"))
    }

    pub async fn info(&mut self, ep: &Endpoint) -> Result<String, RedisError> {
        cached_call!(self, ep, Step::Info, |c| c.info())
    }

    /// `INFO all` (every section but the modules'), raw text.
    pub async fn info_all(&mut self, ep: &Endpoint) -> Result<String, RedisError> {
        cached_call!(self, ep, Step::Info, |c| c.info_section("all"))
    }

    pub async fn info_replication(&mut self, ep: &Endpoint) -> Result<String, RedisError> {
        cached_call!(self, ep, Step::InfoReplication, |c| c.info_replication())
    }

    pub async fn owned_config(&mut self, ep: &Endpoint) -> Result<RedisConfig, RedisError> {
        cached_call!(self, ep, Step::ConfigGet, |c| c.owned_config())
    }

    pub async fn execute(
        &mut self,
        ep: &Endpoint,
        cmd: &Command,
        replicaof: &str,
    ) -> Result<(), RedisError> {
        cached_call!(self, ep, Step::of(cmd), |c| c.execute(cmd, replicaof))
    }

    pub async fn config_rewrite(&mut self, ep: &Endpoint) -> Result<(), RedisError> {
        cached_call!(self, ep, Step::ConfigRewrite, |c| c.config_rewrite())
    }

    pub async fn default_user_passwords(
        &mut self,
        ep: &Endpoint,
    ) -> Result<Vec<String>, RedisError> {
        cached_call!(self, ep, Step::Passwords, |c| c.default_user_passwords())
    }

    pub async fn sentinel_master(
        &mut self,
        ep: &Endpoint,
        name: &str,
    ) -> Result<Option<Vec<(String, String)>>, RedisError> {
        cached_call!(self, ep, Step::SentinelMaster, |c| c.sentinel_master(name))
    }
}

/// A flat `[field, value, field, value, ...]` reply as pairs (an odd last item is dropped).
fn pairs<T>(flat: Vec<T>) -> Vec<(T, T)> {
    let mut out = Vec::with_capacity(flat.len() / 2);
    let mut it = flat.into_iter();
    while let (Some(k), Some(v)) = (it.next(), it.next()) {
        out.push((k, v));
    }
    out
}

/// The arguments of `ACL SETUSER default resetpass ><current> [><previous>]`.
fn default_user_passwords_args(current: &Secret, previous: Option<&Secret>) -> Vec<String> {
    let mut args = vec![
        "SETUSER".to_string(),
        "default".into(),
        "resetpass".into(),
        format!(">{}", current.expose()),
    ];
    args.extend(previous.map(|p| format!(">{}", p.expose())));
    args
}

/// The `passwords` entry of an `ACL GETUSER` reply (a flat RESP2 array or a RESP3 map).
fn acl_passwords(reply: Value) -> Vec<String> {
    let fields: Vec<(Value, Value)> = match reply {
        Value::Array(items) => pairs(items),
        Value::Map(map) => map
            .inner()
            .into_iter()
            .map(|(k, v)| (Value::from(k), v))
            .collect(),
        _ => Vec::new(),
    };
    fields
        .into_iter()
        .find(|(k, _)| k.as_str().as_deref() == Some("passwords"))
        .map(|(_, v)| match v {
            Value::Array(items) => items.into_iter().filter_map(|i| i.as_string()).collect(),
            _ => Vec::new(),
        })
        .unwrap_or_default()
}

/// What the replication gate reads from an upstream, on a connection of its own that is opened
/// for this read and closed after it: a kept connection may still lead to a server the address
/// no longer leads to, and the gate must judge what Redis's next connection will reach. One
/// `INFO` (server, replication and keyspace in one round trip), and the instant it arrived.
pub async fn read_history(
    ep: &Endpoint,
    timeout: Duration,
) -> Result<(String, Instant, Option<Secret>), RedisError> {
    let err = |step, cause| RedisError {
        addr: ep.addr(),
        step,
        cause,
    };
    let mut step = Step::Connect;
    let res = tokio::time::timeout(timeout * 2, async {
        let conn = Conn::connect(ep, timeout).await?;
        step = Step::Info;
        // The password this upstream accepts: what the gate opens with.
        let accepted = if conn.with_previous {
            ep.previous.clone()
        } else {
            ep.password.clone()
        };
        let read = conn
            .info()
            .await
            .map(|text| (text, Instant::now(), accepted));
        conn.close();
        read
    })
    .await;
    match res {
        Ok(Ok(r)) => Ok(r),
        Ok(Err(cause)) => Err(err(step, cause)),
        Err(_) => Err(err(step, IoError::Unreachable(NO_ANSWER.into()))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acl_getuser_and_setuser_words() {
        let flat = |items: &[&str]| Value::Array(items.iter().map(|i| Value::from(*i)).collect());
        let reply = Value::Array(vec![
            Value::from("flags"),
            flat(&["on"]),
            Value::from("passwords"),
            flat(&["aa", "bb"]),
            Value::from("commands"),
            Value::from("+@all"),
        ]);
        assert_eq!(acl_passwords(reply), ["aa", "bb"]);
        assert_eq!(acl_passwords(Value::Null), Vec::<String>::new());
        assert_eq!(pairs(vec![1, 2, 3, 4, 5]), [(1, 2), (3, 4)]);
        let (new, old) = (Secret::new("n"), Secret::new("o"));
        assert_eq!(
            default_user_passwords_args(&new, Some(&old)),
            ["SETUSER", "default", "resetpass", ">n", ">o"]
        );
        assert_eq!(
            default_user_passwords_args(&new, None),
            ["SETUSER", "default", "resetpass", ">n"]
        );
    }

    #[test]
    fn tls_errors_read_as_words() {
        assert_eq!(
            tls_detail("Custom { kind: InvalidData, error: InvalidCertificate(BadSignature) }"),
            "the source's certificate was rejected: InvalidCertificate(BadSignature) (not signed by the CA in --tls-ca-file)"
        );
        assert_eq!(
            tls_detail("received fatal alert: HandshakeFailure"),
            "TLS handshake failed: received fatal alert: HandshakeFailure"
        );
    }

    /// A refused connection is reported at the connect step, with the address.
    #[tokio::test]
    async fn a_failed_call_names_the_address_and_the_step() {
        // A port nothing listens on: bind one, then free it.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let ep = Endpoint {
            host: "127.0.0.1".into(),
            port,
            username: None,
            password: None,
            previous: None,
            tls: None,
        };
        let mut cached = Cached::new(Duration::from_secs(2));
        let e = cached.info(&ep).await.unwrap_err();
        assert_eq!(e.step, Step::Connect);
        assert_eq!(e.cause, IoError::Unreachable("connection refused".into()));
        assert_eq!(
            e.to_string(),
            format!("connection refused (connect 127.0.0.1:{port})")
        );
    }

    #[test]
    fn errors_are_classified_for_users() {
        let e = Error::new(ErrorKind::Auth, "WRONGPASS invalid username-password pair");
        assert!(matches!(classify(&e), IoError::Auth(m) if m.contains("WRONGPASS")));
        let e = Error::new(ErrorKind::IO, "Connection refused (os error 111)");
        assert_eq!(
            classify(&e),
            IoError::Unreachable("connection refused".into())
        );
        let e = Error::new(ErrorKind::Timeout, "Request timed out.");
        assert!(matches!(classify(&e), IoError::Unreachable(_)));
        let e = Error::new(
            ErrorKind::Unknown,
            "ERR CONFIG SET failed (possibly related to argument 'tls-replication')",
        );
        assert!(matches!(classify(&e), IoError::Redis(_)));
    }
}
