//! TLS on a server's HTTP address (the Graph API, /metrics, /healthz): a certificate the
//! operator gives as PEM files, or, for local use, a self-signed one geodird makes once and
//! keeps beside its replicas, so that clients can be told to trust it
//! (`curl --cacert DATA/tls-DC/cert.pem`). rustls with the `ring` provider; rcgen makes the
//! self-signed certificate.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use engine::{Error, Result};

/// Where a server's certificate comes from.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub enum Tls {
    /// Plain HTTP.
    #[default]
    Off,
    /// The operator's certificate chain and private key (PEM files).
    Files { cert: PathBuf, key: PathBuf },
    /// A self-signed certificate for `localhost`, `127.0.0.1` and the listen address, made
    /// at the first start and kept in `tls-DC/` of the data folder.
    SelfSigned,
}

/// The names a self-signed certificate covers: localhost, the loopback addresses, and the
/// address the server listens on when it is a specific one.
pub fn self_signed_names(listen: &std::net::SocketAddr) -> Vec<String> {
    let mut names = vec![
        "localhost".to_string(),
        "127.0.0.1".to_string(),
        "::1".to_string(),
    ];
    let ip = listen.ip().to_string();
    if !listen.ip().is_unspecified() && !names.contains(&ip) {
        names.push(ip);
    }
    names
}

/// The self-signed certificate and key of `dir` (made there, key mode 0600, when absent):
/// their paths.
pub fn self_signed(dir: &Path, names: Vec<String>) -> Result<(PathBuf, PathBuf)> {
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    if cert.exists() && key.exists() {
        return Ok((cert, key));
    }
    let made = rcgen::generate_simple_self_signed(names)
        .map_err(|e| Error::Storage(format!("making a self-signed certificate: {e}")))?;
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir.display(), e))?;
    let write = |path: &Path, text: &str, mode: u32| -> Result<()> {
        use std::io::Write as _;
        use std::os::unix::fs::OpenOptionsExt as _;
        let tmp = path.with_extension("tmp");
        let written = (|| {
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(mode)
                .open(&tmp)?;
            f.write_all(text.as_bytes())?;
            f.sync_all()?;
            std::fs::rename(&tmp, path)
        })();
        written.map_err(|e| Error::io(path.display(), e))
    };
    write(&key, &made.signing_key.serialize_pem(), 0o600)?;
    write(&cert, &made.cert.pem(), 0o644)?;
    Ok((cert, key))
}

/// A rustls server configuration from PEM: the certificate chain and its private key.
/// HTTP/1.1 only (the Graph API's clients speak it).
pub fn server_config(cert_pem: &[u8], key_pem: &[u8]) -> Result<Arc<rustls::ServerConfig>> {
    use rustls::pki_types::pem::PemObject as _;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| Error::Invalid(format!("tls_cert: not a PEM certificate chain: {e}")))?;
    if certs.is_empty() {
        return Err(Error::Invalid(
            "tls_cert: no certificate in the file".into(),
        ));
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem)
        .map_err(|e| Error::Invalid(format!("tls_key: not a PEM private key: {e}")))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Invalid(format!("tls: {e}")))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| Error::Invalid(format!("tls_cert and tls_key do not go together: {e}")))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The server configuration for `tls` (None when off), reading the files or making the
/// self-signed certificate in `dir`; and the certificate's path.
pub fn load(
    tls: &Tls,
    dir: &Path,
    listen: &std::net::SocketAddr,
) -> Result<Option<(Arc<rustls::ServerConfig>, PathBuf)>> {
    let (cert, key) = match tls {
        Tls::Off => return Ok(None),
        Tls::Files { cert, key } => (cert.clone(), key.clone()),
        Tls::SelfSigned => self_signed(dir, self_signed_names(listen))?,
    };
    let read = |p: &Path, what: &str| {
        std::fs::read(p).map_err(|e| Error::Invalid(format!("{what} {}: {e}", p.display())))
    };
    let config = server_config(&read(&cert, "tls_cert")?, &read(&key, "tls_key")?)?;
    Ok(Some((config, cert)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_self_signed_certificate_is_made_once_with_a_private_key_only_its_owner_reads() {
        let dir = tempfile::tempdir().expect("tempdir");
        let listen = "127.0.0.2:0".parse().expect("addr");
        let names = self_signed_names(&listen);
        assert!(names.contains(&"127.0.0.2".to_string()), "{names:?}");
        let (cert, key) = self_signed(&dir.path().join("tls"), names.clone()).expect("made");
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&key).expect("key").permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "key mode {mode:o}");
        let first = std::fs::read(&cert).expect("cert");
        let (cert2, _) = self_signed(&dir.path().join("tls"), names).expect("again");
        assert_eq!(std::fs::read(cert2).expect("cert"), first, "made again");
        let loaded = load(&Tls::SelfSigned, &dir.path().join("tls"), &listen).expect("load");
        assert!(loaded.is_some());
    }

    #[test]
    fn files_that_are_not_a_certificate_and_its_key_are_refused_by_name() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (cert, key) = self_signed(&dir.path().join("a"), vec!["localhost".into()]).expect("a");
        let (_, other_key) =
            self_signed(&dir.path().join("b"), vec!["localhost".into()]).expect("b");
        let (c, k) = (
            std::fs::read(&cert).expect("c"),
            std::fs::read(&key).expect("k"),
        );
        server_config(&c, &k).expect("a matching pair");
        let e = server_config(b"garbage", &k).expect_err("garbage cert");
        assert!(e.to_string().contains("tls_cert"), "{e}");
        let e = server_config(&c, b"garbage").expect_err("garbage key");
        assert!(e.to_string().contains("tls_key"), "{e}");
        let e = server_config(&c, &std::fs::read(other_key).expect("k2")).expect_err("mismatch");
        assert!(e.to_string().contains("do not go together"), "{e}");
    }
}
