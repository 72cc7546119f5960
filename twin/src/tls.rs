//! The twin's own small PKI: a CA, a serving certificate for the API on 127.0.0.1, and a
//! client certificate for `system:admin` — written into a kubeconfig like the installer's
//! `auth/kubeconfig` (a certificate-based one, which the restore requires).

use rcgen::{BasicConstraints, Certificate, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use std::sync::Arc;

/// Everything TLS of one served world.
pub struct Pki {
    ca: Certificate,
    server_cert: Certificate,
    server_key: KeyPair,
    client_cert: Certificate,
    client_key: KeyPair,
}

fn err(what: &str, e: impl std::fmt::Display) -> String {
    format!("twin PKI: {what}: {e}")
}

impl Pki {
    pub fn generate() -> Result<Pki, String> {
        let ca_key = KeyPair::generate().map_err(|e| err("CA key", e))?;
        let mut ca = CertificateParams::new(Vec::<String>::new()).map_err(|e| err("CA", e))?;
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name.push(DnType::OrganizationalUnitName, "openshift");
        ca.distinguished_name.push(DnType::CommonName, "kube-apiserver-localhost-signer (drctl twin)");
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        let ca = ca.self_signed(&ca_key).map_err(|e| err("CA", e))?;

        let server_key = KeyPair::generate().map_err(|e| err("server key", e))?;
        let mut server = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).map_err(|e| err("server", e))?;
        server.distinguished_name.push(DnType::CommonName, "127.0.0.1");
        server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let server_cert = server.signed_by(&server_key, &ca, &ca_key).map_err(|e| err("server certificate", e))?;

        let client_key = KeyPair::generate().map_err(|e| err("client key", e))?;
        let mut client = CertificateParams::new(Vec::<String>::new()).map_err(|e| err("client", e))?;
        client.distinguished_name.push(DnType::OrganizationName, "system:masters");
        client.distinguished_name.push(DnType::CommonName, "system:admin");
        client.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let client_cert = client.signed_by(&client_key, &ca, &ca_key).map_err(|e| err("client certificate", e))?;
        Ok(Pki { ca, server_cert, server_key, client_cert, client_key })
    }

    /// The API server's TLS: our serving certificate; a client must present a certificate our CA
    /// signed (as kube-apiserver's client-CA authentication).
    pub fn server_config(&self) -> Result<Arc<rustls::ServerConfig>, String> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.ca.der().clone()).map_err(|e| err("CA root", e))?;
        // A client may also come with a bearer token instead (an `oc login` kubeconfig): the API
        // decides per request, as kube-apiserver's authenticators do.
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
            .allow_unauthenticated()
            .build()
            .map_err(|e| err("client verifier", e))?;
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.server_key.serialize_der()));
        let chain: Vec<CertificateDer<'static>> = vec![self.server_cert.der().clone(), self.ca.der().clone()];
        let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| err("protocol versions", e))?
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain, key)
            .map_err(|e| err("serving certificate", e))?;
        cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(cfg))
    }

    /// A kubeconfig for `server` (`https://127.0.0.1:PORT`), context `admin`: with the client
    /// certificate embedded, as the installer writes `auth/kubeconfig`, or with `token` (as
    /// `oc login` writes one).
    pub fn kubeconfig(&self, server: &str, token: Option<&str>) -> String {
        use base64::Engine;
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s.as_bytes());
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: twin\n  cluster:\n    server: {server}\n    certificate-authority-data: {ca}\n\
             contexts:\n- name: admin\n  context:\n    cluster: twin\n    user: admin\ncurrent-context: admin\n\
             users:\n- name: admin\n  user:\n{user}preferences: {{}}\n",
            ca = b64(&self.ca.pem()),
            user = match token {
                Some(t) => format!("    token: {t}\n"),
                None => format!(
                    "    client-certificate-data: {}\n    client-key-data: {}\n",
                    b64(&self.client_cert.pem()),
                    b64(&self.client_key.serialize_pem())
                ),
            },
        )
    }
}
