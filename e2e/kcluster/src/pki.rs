//! The cluster's certificates and kubeconfigs, generated at every `up` (nothing secret is kept
//! between runs). One CA signs everything: the apiserver's serving certificate, one client
//! certificate per identity (each component its own, as kubeadm does, so RBAC and the Node
//! authorizer see real identities), the kubelet API's serving certificates, and the
//! service-account signing key stands apart.
//!
//! Files are written 0600 in the cluster directory (root only).

use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};

use crate::net::{APISERVER_IP, APISERVER_PORT, KUBERNETES_SERVICE_IP};

/// Who a client certificate says it is: `CN` is the user, `O` the groups.
pub struct Identity<'a> {
    pub user: &'a str,
    pub groups: &'a [&'a str],
}

pub struct Pki {
    dir: PathBuf,
    issuer: Issuer<'static, KeyPair>,
}

/// A certificate and its key, as files.
pub struct Pair {
    pub cert: PathBuf,
    pub key: PathBuf,
}

fn write_private(path: &Path, body: &str) -> Result<(), String> {
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    f.write_all(body.as_bytes())
        .map_err(|e| format!("{}: {e}", path.display()))
}

fn err(e: rcgen::Error) -> String {
    format!("certificate generation: {e}")
}

impl Pki {
    /// A new CA in `dir/pki` (replacing any earlier one).
    pub fn create(dir: &Path) -> Result<Pki, String> {
        let dir = dir.join("pki");
        fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let key = KeyPair::generate().map_err(err)?;
        let mut params = CertificateParams::new(Vec::<String>::new()).map_err(err)?;
        params
            .distinguished_name
            .push(DnType::CommonName, "kcluster-ca");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let cert = params.self_signed(&key).map_err(err)?;
        write_private(&dir.join("ca.crt"), &cert.pem())?;
        write_private(&dir.join("ca.key"), &key.serialize_pem())?;
        Ok(Pki {
            dir,
            issuer: Issuer::new(params, key),
        })
    }

    pub fn ca_cert(&self) -> PathBuf {
        self.dir.join("ca.crt")
    }

    fn sign(
        &self,
        name: &str,
        cn: &str,
        orgs: &[&str],
        sans: &[&str],
        usage: &[ExtendedKeyUsagePurpose],
    ) -> Result<Pair, String> {
        let key = KeyPair::generate().map_err(err)?;
        let mut params = CertificateParams::new(Vec::<String>::new()).map_err(err)?;
        params.distinguished_name.push(DnType::CommonName, cn);
        for o in orgs {
            params.distinguished_name.push(DnType::OrganizationName, *o);
        }
        params.subject_alt_names = sans
            .iter()
            .map(|s| match s.parse() {
                Ok(ip) => Ok(SanType::IpAddress(ip)),
                Err(_) => s.to_string().try_into().map(SanType::DnsName).map_err(err),
            })
            .collect::<Result<_, _>>()?;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = usage.to_vec();
        let cert = params.signed_by(&key, &self.issuer).map_err(err)?;
        let pair = Pair {
            cert: self.dir.join(format!("{name}.crt")),
            key: self.dir.join(format!("{name}.key")),
        };
        write_private(&pair.cert, &cert.pem())?;
        write_private(&pair.key, &key.serialize_pem())?;
        Ok(pair)
    }

    /// The apiserver's serving certificate: every name a client may use for it.
    pub fn apiserver(&self) -> Result<Pair, String> {
        self.sign(
            "apiserver",
            "kube-apiserver",
            &[],
            &[
                "127.0.0.1",
                APISERVER_IP,
                KUBERNETES_SERVICE_IP,
                "localhost",
                "kubernetes",
                "kubernetes.default",
                "kubernetes.default.svc",
                "kubernetes.default.svc.cluster.local",
            ],
            &[ExtendedKeyUsagePurpose::ServerAuth],
        )
    }

    /// A kubelet API serving certificate (the node agent's), for `127.0.0.1` and the node name.
    pub fn kubelet_serving(&self, node: &str) -> Result<Pair, String> {
        self.sign(
            &format!("kubelet-{node}"),
            &format!("system:node:{node}"),
            &["system:nodes"],
            &["127.0.0.1", node],
            &[ExtendedKeyUsagePurpose::ServerAuth],
        )
    }

    /// A client certificate for `id`.
    pub fn client(&self, file: &str, id: &Identity) -> Result<Pair, String> {
        self.sign(
            file,
            id.user,
            id.groups,
            &[],
            &[ExtendedKeyUsagePurpose::ClientAuth],
        )
    }

    /// The service-account signing key (ECDSA P-256, PKCS#8): the apiserver signs and verifies
    /// tokens with it, the controller-manager signs the legacy token Secrets.
    /// Returns (private key, public key) files: the apiserver verifies with the public one.
    pub fn service_account_key(&self) -> Result<(PathBuf, PathBuf), String> {
        let key = KeyPair::generate().map_err(err)?;
        let private = self.dir.join("sa.key");
        let public = self.dir.join("sa.pub");
        write_private(&private, &key.serialize_pem())?;
        write_private(&public, &key.public_key_pem())?;
        Ok((private, public))
    }

    /// A kubeconfig for `id` talking to `server` (a client certificate signed here).
    pub fn kubeconfig(&self, file: &str, id: &Identity, server: &str) -> Result<PathBuf, String> {
        let pair = self.client(file, id)?;
        let path = self.dir.join(format!("{file}.kubeconfig"));
        write_private(
            &path,
            &kubeconfig_yaml(server, &self.ca_cert(), &pair, id.user),
        )?;
        Ok(path)
    }
}

/// The default server a harness-side client uses.
pub fn local_server() -> String {
    format!("https://127.0.0.1:{APISERVER_PORT}")
}

fn kubeconfig_yaml(server: &str, ca: &Path, pair: &Pair, user: &str) -> String {
    format!(
        "apiVersion: v1\n\
         kind: Config\n\
         clusters:\n\
         - name: kcluster\n  cluster:\n    server: {server}\n    certificate-authority: {ca}\n\
         users:\n\
         - name: {user:?}\n  user:\n    client-certificate: {cert}\n    client-key: {key}\n\
         contexts:\n\
         - name: kcluster\n  context:\n    cluster: kcluster\n    user: {user:?}\n\
         current-context: kcluster\n",
        ca = ca.display(),
        cert = pair.cert.display(),
        key = pair.key.display(),
    )
}
