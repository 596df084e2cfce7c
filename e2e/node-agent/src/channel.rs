//! The remote-command WebSocket protocol (`v5.channel.k8s.io`, `v4.channel.k8s.io`) as the
//! kubelet serves it for `exec` (k8s.io/apiserver/pkg/util/proxy/websocket.go): every binary
//! message starts with a channel byte; 0 stdin, 1 stdout, 2 stderr, 3 error (one
//! `metav1.Status` JSON at the end), 4 resize, 255 close (v5: the client closed a stream,
//! i.e. stdin's EOF).

use serde_json::json;

pub const STDIN: u8 = 0;
pub const STDOUT: u8 = 1;
pub const STDERR: u8 = 2;
pub const ERROR: u8 = 3;
pub const RESIZE: u8 = 4;
pub const CLOSE: u8 = 255;

pub const V5: &str = "v5.channel.k8s.io";
pub const V4: &str = "v4.channel.k8s.io";

/// The subprotocol to answer with, from the client's `Sec-WebSocket-Protocol` offers: v5 if
/// offered (it can close stdin), else v4.
pub fn choose_protocol<'a>(offered: impl IntoIterator<Item = &'a str>) -> Option<&'static str> {
    let offered: Vec<&str> = offered.into_iter().map(str::trim).collect();
    [V5, V4].into_iter().find(|p| offered.contains(p))
}

pub fn frame(channel: u8, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + 1);
    out.push(channel);
    out.extend_from_slice(data);
    out
}

/// What a client's binary message means to the server.
#[derive(Clone, Debug, PartialEq)]
pub enum Incoming {
    Stdin(Vec<u8>),
    /// v5 only: the client will send no more stdin.
    CloseStdin,
    /// Terminal size change (ignored: no TTYs here).
    Resize,
    Ignored,
}

pub fn parse(msg: &[u8], protocol: &str) -> Incoming {
    match msg.split_first() {
        Some((&STDIN, data)) => Incoming::Stdin(data.to_vec()),
        Some((&CLOSE, rest)) if protocol == V5 && rest.first() == Some(&STDIN) => {
            Incoming::CloseStdin
        }
        Some((&RESIZE, _)) => Incoming::Resize,
        _ => Incoming::Ignored,
    }
}

/// The error channel's last message for a command that exited with `code` (what makes
/// `kubectl exec` exit with the same code).
pub fn exit_status(code: i32, command: &[String]) -> String {
    let status = if code == 0 {
        json!({"metadata": {}, "status": "Success"})
    } else {
        json!({
            "metadata": {},
            "status": "Failure",
            "message": format!(
                "command terminated with non-zero exit code: error executing command [{}], exit code {code}",
                command.join(" ")
            ),
            "reason": "NonZeroExitCode",
            "details": {"causes": [{"reason": "ExitCode", "message": code.to_string()}]},
        })
    };
    status.to_string()
}

/// The error channel's message when the command could not be run at all.
pub fn internal_error(message: &str) -> String {
    json!({
        "metadata": {},
        "status": "Failure",
        "message": format!("Internal error occurred: {message}"),
        "reason": "InternalError",
        "details": {"causes": [{"message": message}]},
        "code": 500,
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    #[test]
    fn negotiates_v5_first() {
        assert_eq!(
            choose_protocol(["v4.channel.k8s.io", "v5.channel.k8s.io"]),
            Some(V5)
        );
        assert_eq!(choose_protocol(["v4.channel.k8s.io"]), Some(V4));
        assert_eq!(choose_protocol(["channel.k8s.io", "SPDY/3.1"]), None);
    }

    #[test]
    fn framing() {
        assert_eq!(frame(STDOUT, b"hi"), vec![1, b'h', b'i']);
        assert_eq!(frame(STDERR, b""), vec![2]);
        assert_eq!(parse(&[0, b'x'], V5), Incoming::Stdin(b"x".to_vec()));
        assert_eq!(parse(&[255, 0], V5), Incoming::CloseStdin);
        assert_eq!(parse(&[255, 0], V4), Incoming::Ignored);
        assert_eq!(parse(&[4, b'{', b'}'], V5), Incoming::Resize);
        assert_eq!(parse(&[], V5), Incoming::Ignored);
    }

    #[test]
    fn exit_status_json() {
        let ok: Value = serde_json::from_str(&exit_status(0, &[])).unwrap();
        assert_eq!(ok, serde_json::json!({"metadata": {}, "status": "Success"}));
        let cmd = vec!["sh".to_string(), "-c".into(), "exit 3".into()];
        let failed: Value = serde_json::from_str(&exit_status(3, &cmd)).unwrap();
        assert_eq!(failed["status"], "Failure");
        assert_eq!(failed["reason"], "NonZeroExitCode");
        assert_eq!(failed["details"]["causes"][0]["reason"], "ExitCode");
        assert_eq!(failed["details"]["causes"][0]["message"], "3");
        let err: Value = serde_json::from_str(&internal_error("boom")).unwrap();
        assert_eq!(err["reason"], "InternalError");
        assert_eq!(err["code"], 500);
    }
}
