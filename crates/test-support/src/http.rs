//! A blocking HTTP GET, for the instance managers' `/status` and `/metrics` and for Prometheus'
//! API: from this network namespace over a plain socket, or from inside another one with curl
//! (the only way in without entering the namespace).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use crate::process::command;

/// `GET http://<addr><path>` as HTTP/1.0 (no chunking; the server closes): status code and
/// body. Connecting may take 2 s, the answer 5 s.
pub fn get(addr: &str, path: &str) -> Result<(u16, String), String> {
    let sock: std::net::SocketAddr = addr.parse().map_err(|e| format!("{addr}: {e}"))?;
    let mut s = TcpStream::connect_timeout(&sock, Duration::from_secs(2))
        .map_err(|e| format!("{addr}: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(|e| e.to_string())?;
    // One write: `write!` on a socket may send the request in pieces.
    let request = format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n");
    s.write_all(request.as_bytes()).map_err(|e| e.to_string())?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf)
        .map_err(|e| format!("{addr}{path}: {e}"))?;
    let text = String::from_utf8_lossy(&buf);
    let (head, body) = text.split_once("\r\n\r\n").ok_or("no HTTP header")?;
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or("bad status line")?;
    Ok((code, body.to_string()))
}

/// [`get`] from inside network namespace `ns` (with curl, 3 s in all), or from here when None.
pub fn get_in(ns: Option<&str>, addr: &str, path: &str) -> Result<(u16, String), String> {
    let Some(ns) = ns else {
        return get(addr, path);
    };
    let url = format!("http://{addr}{path}");
    let out = command(Some(ns), "curl")
        .args(["-s", "-m", "3", "-w", "\n%{http_code}", &url])
        .output()
        .map_err(|e| format!("curl {url} in {ns}: {e}"))?;
    if !out.status.success() {
        return Err(format!("curl {url} in {ns}: {}", out.status));
    }
    let s = String::from_utf8_lossy(&out.stdout);
    let (body, code) = s.rsplit_once('\n').ok_or("no status code from curl")?;
    let code = code
        .trim()
        .parse()
        .map_err(|_| format!("bad status code {code:?}"))?;
    Ok((code, body.to_string()))
}

#[cfg(test)]
mod tests {
    use std::net::TcpListener;

    use super::*;

    #[test]
    fn reads_the_status_and_the_body() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let server = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            // The whole header, however TCP splits it (one read may return part of it).
            let mut request = Vec::new();
            let mut chunk = [0; 1024];
            while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = s.read(&mut chunk).unwrap();
                assert!(n > 0, "the client closed before its header ended");
                request.extend_from_slice(&chunk[..n]);
            }
            assert!(String::from_utf8_lossy(&request).starts_with("GET /status HTTP/1.0\r\n"));
            s.write_all(b"HTTP/1.0 503 Service Unavailable\r\nContent-Length: 2\r\n\r\nno")
                .unwrap();
        });
        assert_eq!(get_in(None, &addr, "/status").unwrap(), (503, "no".into()));
        server.join().unwrap();
        assert!(get("127.0.0.1:1", "/").is_err());
    }
}
