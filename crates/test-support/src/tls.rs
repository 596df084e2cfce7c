//! Certificates for TLS tests and drills, made with `openssl` (a CA, and certificates it signs
//! for both server and client use), written into a directory.

use std::path::Path;
use std::process::Command;

use crate::redis::ServerTls;

/// Run `openssl args` in `dir`.
fn openssl(dir: &Path, args: &[&str]) -> Result<(), String> {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .map_err(|e| format!("openssl is missing ({e}): run `make deps`"))?;
    if !out.status.success() {
        return Err(format!(
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(())
}

/// A CA (`ca.crt`, `ca.key`) and a certificate it signs (`tls.crt`, `tls.key`, CN `redis`)
/// for `sans` (`IP:...`, `DNS:...`), in `dir`.
pub fn make_certs(dir: &Path, sans: &[String]) -> Result<ServerTls, String> {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
            "-days",
            "2",
            "-subj",
            "/CN=test-ca",
        ],
    )?;
    issue_cert(dir, "redis", sans, "tls")?;
    Ok(ServerTls {
        ca: dir.join("ca.crt"),
        cert: dir.join("tls.crt"),
        key: dir.join("tls.key"),
    })
}

/// A new key and certificate (CN `cn`, `sans`) signed by the CA in `dir`, written as
/// `<stem>.key` and `<stem>.crt`.
pub fn issue_cert(dir: &Path, cn: &str, sans: &[String], stem: &str) -> Result<(), String> {
    let (key, csr, crt, ext) = (
        format!("{stem}.key"),
        format!("{stem}.csr"),
        format!("{stem}.crt"),
        format!("{stem}.cnf"),
    );
    let subject = format!("/CN={cn}");
    openssl(
        dir,
        &[
            "req", "-newkey", "rsa:2048", "-nodes", "-keyout", &key, "-out", &csr, "-subj",
            &subject,
        ],
    )?;
    std::fs::write(
        dir.join(&ext),
        format!(
            "subjectAltName={}\nextendedKeyUsage=serverAuth,clientAuth\nbasicConstraints=CA:FALSE\n",
            sans.join(",")
        ),
    )
    .map_err(|e| e.to_string())?;
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            &crt,
            "-days",
            "2",
            "-extfile",
            &ext,
        ],
    )
}
