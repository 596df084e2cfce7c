//! The kubelet API the apiserver proxies to: HTTPS on 127.0.0.1:<kubelet-port>, client
//! certificates verified against `--client-ca-file` (no further authorisation: only the
//! apiserver holds such a certificate here). `/containerLogs` (what `kubectl logs` reads),
//! `/exec` as a `v5.channel.k8s.io` WebSocket (what `kubectl exec` speaks through the
//! apiserver, which proxies it as is because the Node declares `ExtendWebSocketsToKubelet`),
//! and `/healthz`.

use std::collections::HashMap;
use std::convert::Infallible;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, Result};
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use chrono::{DateTime, Utc};
use futures::{SinkExt, StreamExt};
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use nix::sys::signal::Signal;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::agent::Agent;
use crate::channel;
use crate::crilog::{LogOptions, Renderer, Stream, split_lines};
use crate::runtime::{self, ExecConfig, ExitRecord, PidRecord};

/// Query parameters, repeated ones kept (`command=a&command=b`).
pub fn parse_query(q: &str) -> HashMap<String, Vec<String>> {
    let mut out: HashMap<String, Vec<String>> = HashMap::new();
    for pair in q.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        out.entry(percent_decode(k))
            .or_default()
            .push(percent_decode(v));
    }
    out
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                match u8::from_str_radix(
                    std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("zz"),
                    16,
                ) {
                    Ok(b) => {
                        out.push(b);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn flag(q: &HashMap<String, Vec<String>>, name: &str) -> bool {
    q.get(name)
        .and_then(|v| v.first())
        .is_some_and(|v| matches!(v.as_str(), "1" | "true" | "True" | "TRUE"))
}

fn first<'a>(q: &'a HashMap<String, Vec<String>>, name: &str) -> Option<&'a str> {
    q.get(name).and_then(|v| v.first()).map(String::as_str)
}

/// `/containerLogs` options: `tailLines`, `sinceSeconds`/`sinceTime`, `limitBytes`,
/// `timestamps`, `stream`.
pub fn log_options(
    q: &HashMap<String, Vec<String>>,
    now: DateTime<Utc>,
) -> Result<LogOptions, String> {
    let num = |k: &str| -> Result<Option<i64>, String> {
        first(q, k)
            .map(|v| v.parse::<i64>().map_err(|_| format!("invalid {k}: {v:?}")))
            .transpose()
    };
    let since = match (num("sinceSeconds")?, first(q, "sinceTime")) {
        (Some(s), _) => Some(now - chrono::Duration::seconds(s)),
        (None, Some(t)) => Some(
            DateTime::parse_from_rfc3339(t)
                .map_err(|_| format!("invalid sinceTime: {t:?}"))?
                .with_timezone(&Utc),
        ),
        _ => None,
    };
    let stream = match first(q, "stream").map(str::to_lowercase).as_deref() {
        None | Some("") | Some("all") => None,
        Some("stdout") => Some(Stream::Stdout),
        Some("stderr") => Some(Stream::Stderr),
        Some(s) => return Err(format!("invalid stream: {s:?}")),
    };
    Ok(LogOptions {
        tail_lines: num("tailLines")?.filter(|t| *t >= 0).map(|t| t as usize),
        since,
        limit_bytes: num("limitBytes")?.filter(|l| *l > 0).map(|l| l as usize),
        timestamps: flag(q, "timestamps"),
        stream,
    })
}

fn error(code: StatusCode, msg: impl Into<String>) -> Response {
    (code, msg.into()).into_response()
}

/// A container's attempts on disk: (attempt number, directory).
fn attempts(agent: &Agent, uid: &str, container: &str) -> Vec<(u32, PathBuf)> {
    let dir = agent.pod_dir(uid).join("containers").join(container);
    let mut out: Vec<(u32, PathBuf)> = std::fs::read_dir(&dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| Some((e.file_name().to_str()?.parse().ok()?, e.path())))
        .collect();
    out.sort();
    out
}

fn known_container(agent: &Agent, uid: &str, container: &str) -> bool {
    agent
        .pod_dir(uid)
        .join("containers")
        .join(container)
        .exists()
}

async fn container_logs(
    State(agent): State<Arc<Agent>>,
    Path((ns, pod, container)): Path<(String, String, String)>,
    RawQuery(q): RawQuery,
) -> Response {
    let q = parse_query(q.as_deref().unwrap_or_default());
    let opts = match log_options(&q, Utc::now()) {
        Ok(o) => o,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    let Some(uid) = agent.pod_uid(&ns, &pod) else {
        return error(StatusCode::NOT_FOUND, format!("pod {ns}/{pod} not found"));
    };
    if !known_container(&agent, &uid, &container) {
        return error(
            StatusCode::BAD_REQUEST,
            format!("container {container:?} in pod {pod:?} is waiting to start"),
        );
    }
    let list = attempts(&agent, &uid, &container);
    let previous = flag(&q, "previous");
    let chosen = if previous {
        if list.len() < 2 {
            return error(
                StatusCode::BAD_REQUEST,
                format!("previous terminated container {container:?} in pod {pod:?} not found"),
            );
        }
        list[list.len() - 2].clone()
    } else {
        match list.last() {
            Some(a) => a.clone(),
            None => {
                return error(
                    StatusCode::BAD_REQUEST,
                    format!("container {container:?} in pod {pod:?} is waiting to start"),
                );
            }
        }
    };
    let log = agent
        .pod_dir(&uid)
        .join("logs")
        .join(&container)
        .join(format!("{}.log", chosen.0));
    let follow = flag(&q, "follow") && !previous;
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(16);
    tokio::spawn(stream_log(log, chosen.1, opts, follow, tx));
    let body = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|b| (Ok::<_, Infallible>(b), rx))
    });
    Response::builder()
        .header("Content-Type", "text/plain")
        .body(Body::from_stream(body))
        .unwrap_or_else(|_| error(StatusCode::INTERNAL_SERVER_ERROR, "response"))
}

/// Send the log's rendered content; with `follow`, keep sending what is appended until the
/// container exits (as the kubelet does) or the client goes.
async fn stream_log(
    log: PathBuf,
    attempt_dir: PathBuf,
    opts: LogOptions,
    follow: bool,
    tx: tokio::sync::mpsc::Sender<Bytes>,
) {
    let tail = opts.tail_lines;
    let mut renderer = Renderer::new(opts);
    let mut file = match tokio::fs::File::open(&log).await {
        Ok(f) => f,
        Err(_) => return,
    };
    let mut content = Vec::new();
    if file.read_to_end(&mut content).await.is_err() {
        return;
    }
    // Only whole lines; an unfinished last line waits for the next read.
    let complete = content
        .iter()
        .rposition(|&b| b == b'\n')
        .map(|p| p + 1)
        .unwrap_or(0);
    let mut pending = content.split_off(complete);
    let out = renderer.render(&split_lines(&content, tail));
    if !out.is_empty() && tx.send(Bytes::from(out)).await.is_err() {
        return;
    }
    if !follow {
        return;
    }
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        if renderer.done() {
            return;
        }
        let n = match file.read(&mut buf).await {
            Ok(n) => n,
            Err(_) => return,
        };
        if n == 0 {
            if attempt_dir.join("exit").exists() {
                // Exited and drained (one more read catches what came with the exit).
                let mut rest = Vec::new();
                let _ = file.read_to_end(&mut rest).await;
                pending.extend(rest);
                let out = renderer.render(&split_lines(&pending, None));
                if !out.is_empty() {
                    let _ = tx.send(Bytes::from(out)).await;
                }
                return;
            }
            if tx.is_closed() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        }
        pending.extend_from_slice(&buf[..n]);
        let complete = pending
            .iter()
            .rposition(|&b| b == b'\n')
            .map(|p| p + 1)
            .unwrap_or(0);
        let rest = pending.split_off(complete);
        let out = renderer.render(&split_lines(&pending, None));
        pending = rest;
        if !out.is_empty() && tx.send(Bytes::from(out)).await.is_err() {
            return;
        }
    }
}

/// The running container's pid and exec settings.
fn running_container(
    agent: &Agent,
    ns: &str,
    pod: &str,
    container: &str,
) -> Result<(PidRecord, ExecConfig), (StatusCode, String)> {
    let uid = agent
        .pod_uid(ns, pod)
        .ok_or_else(|| (StatusCode::NOT_FOUND, "pod does not exist".to_string()))?;
    let (_, dir) = attempts(agent, &uid, container).pop().ok_or_else(|| {
        (
            StatusCode::NOT_FOUND,
            format!("container {container:?} not found in pod {pod:?}"),
        )
    })?;
    let pid: Option<PidRecord> = runtime::read_json(&dir.join("pid"));
    let exited: Option<ExitRecord> = runtime::read_json(&dir.join("exit"));
    match (pid, exited) {
        (Some(p), None) if p.alive() => {
            let cfg: ExecConfig = runtime::read_json(&dir.join("exec.json")).ok_or_else(|| {
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "exec configuration missing".to_string(),
                )
            })?;
            Ok((p, cfg))
        }
        _ => Err((
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("container {container:?} is not running: cannot exec in a stopped container"),
        )),
    }
}

async fn exec(
    State(agent): State<Arc<Agent>>,
    Path(parts): Path<String>,
    RawQuery(q): RawQuery,
    ws: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Response {
    // /exec/{ns}/{pod}/{container} or /exec/{ns}/{pod}/{uid}/{container}
    let parts: Vec<String> = parts.split('/').map(String::from).collect();
    let (ns, pod, container) = match parts.as_slice() {
        [ns, pod, c] | [ns, pod, _, c] => (ns.clone(), pod.clone(), c.clone()),
        _ => return error(StatusCode::NOT_FOUND, "not found"),
    };
    let q = parse_query(q.as_deref().unwrap_or_default());
    let command = q.get("command").cloned().unwrap_or_default();
    if command.is_empty() {
        return error(
            StatusCode::BAD_REQUEST,
            "you must specify at least one command for the container",
        );
    }
    // The container first: a refused WebSocket makes kubectl retry with SPDY, and the
    // reason it sees is the one of that second request.
    let (pid, cfg) = match running_container(&agent, &ns, &pod, &container) {
        Ok(x) => x,
        Err((code, msg)) => return error(code, msg),
    };
    let Ok(ws) = ws else {
        return error(
            StatusCode::BAD_REQUEST,
            "redis-node-agent serves exec over WebSocket (v5.channel.k8s.io) only, not SPDY",
        );
    };
    let opts = ExecOpts {
        stdin: flag(&q, "stdin") || flag(&q, "input"),
        stdout: flag(&q, "stdout") || flag(&q, "output"),
        stderr: flag(&q, "stderr") || flag(&q, "error"),
    };
    let argv = runtime::exec_argv(&agent.tools, pid.pid, &cfg, &command);
    tracing::info!(%ns, %pod, %container, ?command, "exec");
    ws.protocols([channel::V5, channel::V4])
        .on_upgrade(move |socket| exec_session(socket, argv, command, opts))
}

#[derive(Clone, Copy, Debug)]
struct ExecOpts {
    stdin: bool,
    stdout: bool,
    stderr: bool,
}

async fn exec_session(socket: WebSocket, argv: Vec<String>, command: Vec<String>, opts: ExecOpts) {
    let protocol = socket
        .protocol()
        .and_then(|p| p.to_str().ok())
        .unwrap_or(channel::V4)
        .to_string();
    let (mut sink, mut incoming) = socket.split();
    let (out_tx, mut out_rx) = tokio::sync::mpsc::channel::<Message>(64);
    let writer = tokio::spawn(async move {
        while let Some(m) = out_rx.recv().await {
            let close = matches!(m, Message::Close(_));
            if sink.send(m).await.is_err() || close {
                break;
            }
        }
        let _ = sink.close().await;
    });
    let send = |ch: u8, data: &[u8]| Message::Binary(Bytes::from(channel::frame(ch, data)));
    // The connection is established: an empty message on the lowest writable channel.
    let first = if opts.stdout {
        channel::STDOUT
    } else if opts.stderr {
        channel::STDERR
    } else {
        channel::ERROR
    };
    let _ = out_tx.send(send(first, &[])).await;
    let spawned = tokio::process::Command::new(&argv[0])
        .args(&argv[1..])
        .env_clear()
        .stdin(if opts.stdin {
            std::process::Stdio::piped()
        } else {
            std::process::Stdio::null()
        })
        .stdout(if opts.stdout {
            std::process::Stdio::piped()
        } else {
            std::process::Stdio::null()
        })
        .stderr(if opts.stderr {
            std::process::Stdio::piped()
        } else {
            std::process::Stdio::null()
        })
        .process_group(0)
        .kill_on_drop(true)
        .spawn();
    let mut child = match spawned {
        Ok(c) => c,
        Err(e) => {
            let _ = out_tx
                .send(send(
                    channel::ERROR,
                    channel::internal_error(&e.to_string()).as_bytes(),
                ))
                .await;
            let _ = out_tx.send(normal_close()).await;
            drop(out_tx);
            let _ = writer.await;
            return;
        }
    };
    let child_pid = child.id();
    let mut pumps = Vec::new();
    for (ch, pipe) in [
        (
            channel::STDOUT,
            child
                .stdout
                .take()
                .map(|p| Box::new(p) as Box<dyn tokio::io::AsyncRead + Send + Unpin>),
        ),
        (
            channel::STDERR,
            child
                .stderr
                .take()
                .map(|p| Box::new(p) as Box<dyn tokio::io::AsyncRead + Send + Unpin>),
        ),
    ] {
        let Some(mut pipe) = pipe else { continue };
        let tx = out_tx.clone();
        pumps.push(tokio::spawn(async move {
            let mut buf = vec![0u8; 32 * 1024];
            loop {
                match pipe.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if tx.send(send(ch, &buf[..n])).await.is_err() {
                            break;
                        }
                    }
                }
            }
        }));
    }
    let mut stdin = child.stdin.take();
    let reader = tokio::spawn(async move {
        while let Some(msg) = incoming.next().await {
            match msg {
                Ok(Message::Binary(data)) => match channel::parse(&data, &protocol) {
                    channel::Incoming::Stdin(d) => {
                        if let Some(s) = stdin.as_mut()
                            && s.write_all(&d).await.is_err()
                        {
                            stdin = None;
                        }
                    }
                    channel::Incoming::CloseStdin => stdin = None,
                    channel::Incoming::Resize | channel::Incoming::Ignored => {}
                },
                Ok(Message::Close(_)) | Err(_) => return true,
                Ok(_) => {}
            }
        }
        true
    });
    let status = tokio::select! {
        s = child.wait() => Some(s),
        _ = wait_closed(reader) => None,
    };
    match status {
        Some(Ok(s)) => {
            for p in pumps {
                let _ = tokio::time::timeout(Duration::from_secs(2), p).await;
            }
            use std::os::unix::process::ExitStatusExt;
            let code = s.code().unwrap_or_else(|| 128 + s.signal().unwrap_or(9));
            let _ = out_tx
                .send(send(
                    channel::ERROR,
                    channel::exit_status(code, &command).as_bytes(),
                ))
                .await;
        }
        Some(Err(e)) => {
            let _ = out_tx
                .send(send(
                    channel::ERROR,
                    channel::internal_error(&e.to_string()).as_bytes(),
                ))
                .await;
        }
        None => {
            // The client went away: so does the command.
            if let Some(p) = child_pid {
                runtime::signal_group(p, Signal::SIGKILL);
            }
        }
    }
    let _ = out_tx.send(normal_close()).await;
    drop(out_tx);
    let _ = tokio::time::timeout(Duration::from_secs(5), writer).await;
}

/// A close frame with code 1000: client-go treats anything else (even "no status") as an
/// error of every stream, and `kubectl exec` would fail after the command succeeded.
fn normal_close() -> Message {
    Message::Close(Some(axum::extract::ws::CloseFrame {
        code: axum::extract::ws::close_code::NORMAL,
        reason: "".into(),
    }))
}

async fn wait_closed(reader: tokio::task::JoinHandle<bool>) {
    let _ = reader.await;
}

async fn healthz() -> &'static str {
    "ok"
}

pub fn router(agent: Arc<Agent>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/containerLogs/{ns}/{pod}/{container}", get(container_logs))
        .route("/exec/{*parts}", any(exec))
        .with_state(agent)
}

fn tls_config(agent: &Agent) -> Result<rustls::ServerConfig> {
    let a = &agent.args;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&a.tls_cert_file)
        .with_context(|| format!("reading {}", a.tls_cert_file.display()))?
        .collect::<Result<_, _>>()?;
    let key = PrivateKeyDer::from_pem_file(&a.tls_key_file)
        .with_context(|| format!("reading {}", a.tls_key_file.display()))?;
    let mut roots = rustls::RootCertStore::empty();
    for ca in CertificateDer::pem_file_iter(&a.client_ca_file)
        .with_context(|| format!("reading {}", a.client_ca_file.display()))?
    {
        roots.add(ca?)?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)?;
    // HTTP/1.1 only: WebSocket upgrades need it, and it is what the apiserver proxies.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

pub async fn serve(agent: Arc<Agent>) -> Result<()> {
    let config = Arc::new(tls_config(&agent)?);
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    let addr = format!("127.0.0.1:{}", agent.args.kubelet_port);
    let listener = tokio::net::TcpListener::bind(&addr)
        .await
        .with_context(|| format!("binding the kubelet API on {addr}"))?;
    tracing::info!(%addr, "kubelet API listening");
    let app = router(agent);
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!(error = %e, "accept");
                continue;
            }
        };
        let acceptor = acceptor.clone();
        let app = app.clone();
        tokio::spawn(async move {
            let tls = match acceptor.accept(tcp).await {
                Ok(t) => t,
                Err(e) => {
                    tracing::debug!(%peer, error = %e, "TLS handshake refused");
                    return;
                }
            };
            let service = TowerToHyperService::new(app);
            let conn = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tls), service)
                .with_upgrades();
            if let Err(e) = conn.await {
                tracing::debug!(%peer, error = %e, "connection");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_keep_repeated_parameters() {
        let q = parse_query(
            "command=redis-cli&command=INFO&command=replication&stdin=true&stdout=1&x=a%20b+c%2F",
        );
        assert_eq!(q["command"], ["redis-cli", "INFO", "replication"]);
        assert!(flag(&q, "stdin"));
        assert!(flag(&q, "stdout"));
        assert!(!flag(&q, "stderr"));
        assert_eq!(q["x"], ["a b c/"]);
        assert_eq!(parse_query("a=%zz")["a"], ["%zz"]);
        assert_eq!(parse_query("a=%4")["a"], ["%4"]);
    }

    #[test]
    fn log_query_options() {
        let now = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        let q = parse_query(
            "tailLines=10&timestamps=true&sinceSeconds=60&limitBytes=100&stream=Stderr",
        );
        let o = log_options(&q, now).unwrap();
        assert_eq!(o.tail_lines, Some(10));
        assert!(o.timestamps);
        assert_eq!(o.since, Some(now - chrono::Duration::seconds(60)));
        assert_eq!(o.limit_bytes, Some(100));
        assert_eq!(o.stream, Some(Stream::Stderr));
        let o = log_options(&parse_query("sinceTime=2023-11-14T22:00:00Z"), now).unwrap();
        assert_eq!(o.since.unwrap().to_rfc3339(), "2023-11-14T22:00:00+00:00");
        assert!(log_options(&parse_query("tailLines=x"), now).is_err());
        assert_eq!(
            log_options(&parse_query(""), now).unwrap(),
            LogOptions::default()
        );
    }
}
