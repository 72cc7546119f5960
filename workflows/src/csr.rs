//! What a CertificateSigningRequest is for, read the way the API server's own approvers read it:
//! the signer and the requesting user say which kind of certificate it is, and the PKCS#10
//! request itself says for whom. A kubelet's first client certificate is requested by the
//! node-bootstrapper service account, so only the request's subject (`CN=system:node:<name>`)
//! names the node. One function, [`classify`], used by the kube adapter and the simulator alike,
//! so both derive the node the same way.

use crate::ports::{CsrInfo, CsrKind, NodeInfo};
use drctl_runtime::clock::Timestamp;

/// The service account that requests a kubelet's first client certificate.
pub const NODE_BOOTSTRAPPER: &str = "system:serviceaccount:openshift-machine-config-operator:node-bootstrapper";
pub const CLIENT_SIGNER: &str = "kubernetes.io/kube-apiserver-client-kubelet";
pub const SERVING_SIGNER: &str = "kubernetes.io/kubelet-serving";
const NODE_PREFIX: &str = "system:node:";

/// The kind of a CSR and the node it is for (None when it is for no node, or when the request
/// and the requestor disagree about which).
pub fn classify(signer: &str, requestor: &str, request_pem: &[u8]) -> (CsrKind, Option<String>) {
    let subject_node = subject_common_name(request_pem).ok().and_then(|cn| cn.strip_prefix(NODE_PREFIX).map(str::to_string));
    match signer {
        CLIENT_SIGNER if requestor == NODE_BOOTSTRAPPER => (CsrKind::NodeBootstrapper, subject_node),
        SERVING_SIGNER => match requestor.strip_prefix(NODE_PREFIX) {
            // A node asks for its own serving certificate: the request must name the same node.
            Some(node) => (CsrKind::KubeletServing, subject_node.filter(|s| s == node)),
            None => (CsrKind::Other, None),
        },
        _ => (CsrKind::Other, subject_node),
    }
}

/// The subject common name of a PEM `CERTIFICATE REQUEST` (PKCS#10).
pub fn subject_common_name(pem: &[u8]) -> Result<String, String> {
    let der = pem_body(pem)?;
    // CertificationRequest ::= SEQUENCE { certificationRequestInfo, signatureAlgorithm, signature }
    let (request, _) = Der::new(&der).expect(SEQUENCE, "CertificationRequest")?;
    // CertificationRequestInfo ::= SEQUENCE { version INTEGER, subject Name, ... }
    let (info, _) = Der::new(request).expect(SEQUENCE, "certificationRequestInfo")?;
    let (_, rest) = Der::new(info).expect(INTEGER, "version")?;
    let (mut name, _) = Der::new(rest).expect(SEQUENCE, "subject")?;
    let mut cn = None;
    // Name ::= SEQUENCE OF RelativeDistinguishedName (SET OF AttributeTypeAndValue)
    while !name.is_empty() {
        let (rdn, rest) = Der::new(name).expect(SET, "RelativeDistinguishedName")?;
        name = rest;
        let mut attrs = rdn;
        while !attrs.is_empty() {
            let (atv, rest) = Der::new(attrs).expect(SEQUENCE, "AttributeTypeAndValue")?;
            attrs = rest;
            let (oid, value) = Der::new(atv).expect(OID, "attribute type")?;
            let (tag, text, _) = Der::new(value).any("attribute value")?;
            if oid == COMMON_NAME && matches!(tag, UTF8_STRING | PRINTABLE_STRING | IA5_STRING) {
                cn = Some(std::str::from_utf8(text).map_err(|_| "the common name is not UTF-8".to_string())?.to_string());
            }
        }
    }
    cn.ok_or_else(|| "the request's subject has no common name".into())
}

/// The subject alternative names a PEM `CERTIFICATE REQUEST` asks for, in its
/// extensionRequest attribute: DNS names and IP addresses as text, any other kind of name as
/// `email:`, `uri:` or `other:` (so no node address can match it). No extension: none.
pub fn requested_names(pem: &[u8]) -> Result<Vec<String>, String> {
    let der = pem_body(pem)?;
    let (request, _) = Der::new(&der).expect(SEQUENCE, "CertificationRequest")?;
    let (info, _) = Der::new(request).expect(SEQUENCE, "certificationRequestInfo")?;
    let (_, rest) = Der::new(info).expect(INTEGER, "version")?;
    let (_, rest) = Der::new(rest).expect(SEQUENCE, "subject")?;
    let (_, rest) = Der::new(rest).expect(SEQUENCE, "subjectPKInfo")?;
    // attributes [0] IMPLICIT SET OF Attribute; Attribute ::= SEQUENCE { type, values SET }
    let (mut attrs, _) = Der::new(rest).expect(ATTRIBUTES, "attributes")?;
    let mut names = vec![];
    while !attrs.is_empty() {
        let (attr, more) = Der::new(attrs).expect(SEQUENCE, "attribute")?;
        attrs = more;
        let (oid, values) = Der::new(attr).expect(OID, "attribute type")?;
        if oid != EXTENSION_REQUEST {
            continue;
        }
        let (values, _) = Der::new(values).expect(SET, "extensionRequest values")?;
        // Extensions ::= SEQUENCE OF Extension { extnID, critical BOOLEAN DEFAULT FALSE, extnValue }
        let (mut exts, _) = Der::new(values).expect(SEQUENCE, "extensions")?;
        while !exts.is_empty() {
            let (ext, more) = Der::new(exts).expect(SEQUENCE, "extension")?;
            exts = more;
            let (id, rest) = Der::new(ext).expect(OID, "extension id")?;
            let rest = match Der::new(rest).any("extension")? {
                (BOOLEAN, _, after) => after,
                _ => rest,
            };
            if id == SUBJECT_ALT_NAME {
                let (value, _) = Der::new(rest).expect(OCTET_STRING, "extension value")?;
                names.extend(general_names(value)?);
            }
        }
    }
    Ok(names)
}

/// GeneralNames ::= SEQUENCE OF GeneralName (RFC 5280 §4.2.1.6), as text.
fn general_names(value: &[u8]) -> Result<Vec<String>, String> {
    let (mut seq, _) = Der::new(value).expect(SEQUENCE, "subjectAltName")?;
    let mut out = vec![];
    while !seq.is_empty() {
        let (tag, body, more) = Der::new(seq).any("general name")?;
        seq = more;
        let text = || String::from_utf8_lossy(body).into_owned();
        out.push(match tag {
            0x82 => text(),
            0x87 => match body.len() {
                4 => std::net::Ipv4Addr::new(body[0], body[1], body[2], body[3]).to_string(),
                16 => std::net::Ipv6Addr::from(<[u8; 16]>::try_from(body).map_err(|_| "malformed request: iPAddress")?).to_string(),
                n => return Err(format!("malformed request: an iPAddress of {n} bytes")),
            },
            0x81 => format!("email:{}", text()),
            0x86 => format!("uri:{}", text()),
            t => format!("other:{t:#04x}"),
        });
    }
    Ok(out)
}

/// Whether a CSR may be approved without a person (OpenShift Container Platform 4.14 Backup and
/// restore §5.4.2.2 step 11, "approve each valid ... CSR"): a node-bootstrapper client CSR, or a
/// node's own kubelet-serving CSR asking for nothing but that node's name and the addresses the
/// API records for it (`node`, the Node object) — each with the signer that kind must use.
pub fn approvable(c: &CsrInfo, node: Option<&NodeInfo>) -> bool {
    match c.kind {
        CsrKind::NodeBootstrapper => c.signer == CLIENT_SIGNER && c.requestor == NODE_BOOTSTRAPPER,
        CsrKind::KubeletServing => {
            let Some(n) = node.filter(|n| c.node.as_deref() == Some(n.name.as_str())) else { return false };
            let own = |name: &String| *name == n.name || n.addresses.contains(name);
            c.signer == SERVING_SIGNER
                && c.requestor == format!("{NODE_PREFIX}{}", n.name)
                && c.names.as_ref().is_some_and(|names| !names.is_empty() && names.iter().all(own))
        }
        CsrKind::Other => false,
    }
}

/// How old a pending CSR may be and still be approved: a kubelet whose request is not answered
/// files a new one, so an older one is not what a running kubelet waits for.
pub const MAX_PENDING_AGE: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

/// The approval policy of every procedure that approves CSRs (4.14 Backup and restore
/// §5.4.2.2 step 11, §5.4.3): `None` when pending CSR `c` may be approved without a person,
/// else why not, for the evidence a person reads. It must be for one of the `expected` nodes
/// (the inventory's, or the cluster's own), ask for a kubelet's usages only, be filed within
/// [`MAX_PENDING_AGE`] of `now`, and pass [`approvable`]; `node` is the Node object of the node
/// it names, if one is registered.
pub fn refusal(c: &CsrInfo, expected: &[String], node: Option<&NodeInfo>, now: Timestamp) -> Option<String> {
    let who = format!("CSR {} (signer {}, requested by {})", c.name, c.signer, c.requestor);
    let Some(name) = c.node.as_deref() else {
        return Some(format!("{who}: its request names no node, or a node other than the requestor"));
    };
    if c.kind == CsrKind::Other {
        return Some(format!("{who}: neither a node-bootstrapper client CSR nor a kubelet-serving CSR"));
    }
    if !expected.iter().any(|e| e == name) {
        return Some(format!("{who}: for node {name}, which is not one of this cluster's nodes ({})", expected.join(", ")));
    }
    let (allowed, needed): (&[&str], &str) = match c.kind {
        CsrKind::KubeletServing => (&["digital signature", "key encipherment", "server auth"], "server auth"),
        _ => (&["digital signature", "key encipherment", "client auth"], "client auth"),
    };
    if !c.usages.iter().any(|u| u == needed) || c.usages.iter().any(|u| !allowed.contains(&u.as_str())) {
        return Some(format!("{who}: asks for usages {} (a kubelet's asks for {needed} and signing only)", c.usages.join(", ")));
    }
    match c.created {
        Some(t) if now.since(t) <= MAX_PENDING_AGE => {}
        Some(t) => {
            return Some(format!(
                "{who}: filed at {t}, more than {} h ago: a kubelet files a new one when it is not answered, so this one is not a kubelet's current request",
                MAX_PENDING_AGE.as_secs() / 3600
            ))
        }
        None => return Some(format!("{who}: its creation time is unknown")),
    }
    if !approvable(c, node) {
        let names = c.names.as_ref().map_or("an unreadable request".to_string(), |n| n.join(", "));
        return Some(format!("{who}: for node {name}, asking for {names}: not what that node's kubelet asks for"));
    }
    None
}

const SEQUENCE: u8 = 0x30;
const BOOLEAN: u8 = 0x01;
const OCTET_STRING: u8 = 0x04;
/// `[0]` constructed: the request's attributes.
const ATTRIBUTES: u8 = 0xa0;
/// 1.2.840.113549.1.9.14 (pkcs-9 extensionRequest), DER-encoded.
const EXTENSION_REQUEST: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x0e];
/// 2.5.29.17 (id-ce-subjectAltName), DER-encoded.
const SUBJECT_ALT_NAME: &[u8] = &[0x55, 0x1d, 0x11];
const SET: u8 = 0x31;
const INTEGER: u8 = 0x02;
const OID: u8 = 0x06;
const UTF8_STRING: u8 = 0x0c;
const PRINTABLE_STRING: u8 = 0x13;
const IA5_STRING: u8 = 0x16;
/// 2.5.4.3 (id-at-commonName), DER-encoded.
const COMMON_NAME: &[u8] = &[0x55, 0x04, 0x03];

/// A DER reader over one buffer: each read returns the contents of the next element and what
/// follows it. Bounded by the buffer: a malformed length is an error, never a panic.
struct Der<'a>(&'a [u8]);

impl<'a> Der<'a> {
    fn new(b: &'a [u8]) -> Der<'a> {
        Der(b)
    }

    fn any(&self, what: &str) -> Result<(u8, &'a [u8], &'a [u8]), String> {
        let b = self.0;
        let bad = || format!("malformed request: {what}");
        let (&tag, rest) = b.split_first().ok_or_else(bad)?;
        let (&first, rest) = rest.split_first().ok_or_else(bad)?;
        let (len, rest) = if first < 0x80 {
            (usize::from(first), rest)
        } else {
            let n = usize::from(first & 0x7f);
            if n == 0 || n > 4 || rest.len() < n {
                return Err(bad());
            }
            (rest[..n].iter().fold(0usize, |l, b| (l << 8) | usize::from(*b)), &rest[n..])
        };
        if rest.len() < len {
            return Err(bad());
        }
        Ok((tag, &rest[..len], &rest[len..]))
    }

    fn expect(&self, tag: u8, what: &str) -> Result<(&'a [u8], &'a [u8]), String> {
        match self.any(what)? {
            (t, body, rest) if t == tag => Ok((body, rest)),
            (t, _, _) => Err(format!("malformed request: {what} has tag {t:#04x}, expected {tag:#04x}")),
        }
    }
}

/// The DER inside a PEM block (or the DER itself, when the bytes are not PEM).
fn pem_body(pem: &[u8]) -> Result<Vec<u8>, String> {
    let text = match std::str::from_utf8(pem) {
        Ok(t) if t.contains("-----BEGIN") => t,
        _ => return Ok(pem.to_vec()),
    };
    let body: String = text.lines().filter(|l| !l.starts_with("-----")).flat_map(|l| l.trim().chars()).collect();
    base64_decode(&body).ok_or_else(|| "the PEM request is not valid base64".to_string())
}

fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let val = |c: u8| match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    };
    let bytes = s.trim_end_matches('=').as_bytes();
    let mut out = Vec::with_capacity(bytes.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0);
    for &c in bytes {
        acc = (acc << 6) | u32::from(val(c)?);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    // Made with `openssl req -new -key <P-256 key> -subj ... [-addext subjectAltName=...]`.
    const CLIENT_IP_10_0_131_183: &str = "-----BEGIN CERTIFICATE REQUEST-----
MIIBBDCBrAIBADBKMRUwEwYDVQQKDAxzeXN0ZW06bm9kZXMxMTAvBgNVBAMMKHN5
c3RlbTpub2RlOmlwLTEwLTAtMTMxLTE4My5lYzIuaW50ZXJuYWwwWTATBgcqhkjO
PQIBBggqhkjOPQMBBwNCAASV60hcEb2WWoRoNBOebeAcfTjR7kX1MAXh7CjAmBfY
WzjVAbOsCD2V4VHEYNV3aSzzu5HLMkDRGkSLHQ/+W5cUoAAwCgYIKoZIzj0EAwID
RwAwRAIgZPPNGfeXl6S1e/KEL/m4k3pBkrMW8EzvciqsLnnVx38CID+V72hQndk2
hjP4kaanGqIM/9ConFy2tHX30Hi+83g9
-----END CERTIFICATE REQUEST-----
";

    #[test]
    fn the_node_is_read_from_the_request_subject() {
        assert_eq!(subject_common_name(CLIENT_IP_10_0_131_183.as_bytes()).unwrap(), "system:node:ip-10-0-131-183.ec2.internal");
        /// signer, requestor, request: kind and node.
        type Case = (&'static str, &'static str, &'static str, (CsrKind, Option<&'static str>));
        let cases: [Case; 6] = [
            // The node-bootstrapper asks; only the request names the node.
            (CLIENT_SIGNER, NODE_BOOTSTRAPPER, CLIENT_IP_10_0_131_183, (CsrKind::NodeBootstrapper, Some("ip-10-0-131-183.ec2.internal"))),
            // A node asks for its own serving certificate.
            (
                SERVING_SIGNER,
                "system:node:ip-10-0-131-183.ec2.internal",
                CLIENT_IP_10_0_131_183,
                (CsrKind::KubeletServing, Some("ip-10-0-131-183.ec2.internal")),
            ),
            // ... or for another node's: no node (the policy then refuses it).
            (SERVING_SIGNER, "system:node:master-9", CLIENT_IP_10_0_131_183, (CsrKind::KubeletServing, None)),
            (SERVING_SIGNER, "system:admin", CLIENT_IP_10_0_131_183, (CsrKind::Other, None)),
            (CLIENT_SIGNER, "system:anonymous", CLIENT_IP_10_0_131_183, (CsrKind::Other, Some("ip-10-0-131-183.ec2.internal"))),
            // A request that cannot be read names no node.
            (
                CLIENT_SIGNER,
                NODE_BOOTSTRAPPER,
                "-----BEGIN CERTIFICATE REQUEST-----\nnot base64!\n-----END CERTIFICATE REQUEST-----\n",
                (CsrKind::NodeBootstrapper, None),
            ),
        ];
        for (signer, requestor, pem, (kind, node)) in cases {
            assert_eq!(classify(signer, requestor, pem.as_bytes()), (kind, node.map(str::to_string)), "{signer} {requestor}");
        }
    }

    /// `-subj "/O=system:nodes/CN=system:node:ip-10-0-131-183.ec2.internal" -addext
    /// subjectAltName=DNS:ip-10-0-131-183.ec2.internal,IP:10.0.131.183,IP:fd00::1`
    const SERVING_OWN_NAMES: &str = "-----BEGIN CERTIFICATE REQUEST-----
MIIBVzCB/gIBADBKMRUwEwYDVQQKDAxzeXN0ZW06bm9kZXMxMTAvBgNVBAMMKHN5
c3RlbTpub2RlOmlwLTEwLTAtMTMxLTE4My5lYzIuaW50ZXJuYWwwWTATBgcqhkjO
PQIBBggqhkjOPQMBBwNCAAQe3jkeDkvTTQrEHts5nLq6X3uEx9M/8d12EurEJ3Sb
+Fu1Oq1fGqQFDI6Y7hKRIWpPIwusVlWKyLM61S8gE8ttoFIwUAYJKoZIhvcNAQkO
MUMwQTA/BgNVHREEODA2ghxpcC0xMC0wLTEzMS0xODMuZWMyLmludGVybmFshwQK
AIO3hxD9AAAAAAAAAAAAAAAAAAABMAoGCCqGSM49BAMCA0gAMEUCIBG4H3IcGtIW
sZtRMSDlDF7qUhnKjSeq7vsTrfxvKKVYAiEAvBNfuhTF/d4Mx2/AlUgav5wnEE+9
za9whb+CqPQtTSI=
-----END CERTIFICATE REQUEST-----
";

    /// The same subject, asking also for the API's name, an e-mail address and the API VIP.
    const SERVING_FOREIGN_NAMES: &str = "-----BEGIN CERTIFICATE REQUEST-----
MIIBYjCCAQgCAQAwSjEVMBMGA1UECgwMc3lzdGVtOm5vZGVzMTEwLwYDVQQDDChz
eXN0ZW06bm9kZTppcC0xMC0wLTEzMS0xODMuZWMyLmludGVybmFsMFkwEwYHKoZI
zj0CAQYIKoZIzj0DAQcDQgAEHt45Hg5L000KxB7bOZy6ul97hMfTP/HddhLqxCd0
m/hbtTqtXxqkBQyOmO4SkSFqTyMLrFZVisizOtUvIBPLbaBcMFoGCSqGSIb3DQEJ
DjFNMEswSQYDVR0RBEIwQIIcaXAtMTAtMC0xMzEtMTgzLmVjMi5pbnRlcm5hbIIT
YXBpLm9jcC5leGFtcGxlLmNvbYEFYUBiLmOHBAoAAAUwCgYIKoZIzj0EAwIDSAAw
RQIhAIXmlw7/v6+ho2WxWr0KeJiLU3QKPLNSzfaDJeC0mCdmAiAKOZWvnQCHMYo+
CzLrTx/YJK6R58Rwwgb+3w1uTNPlmg==
-----END CERTIFICATE REQUEST-----
";

    #[test]
    fn subject_alternative_names_are_read_from_the_request() {
        let node = "ip-10-0-131-183.ec2.internal";
        assert_eq!(requested_names(SERVING_OWN_NAMES.as_bytes()).unwrap(), [node, "10.0.131.183", "fd00::1"]);
        assert_eq!(requested_names(SERVING_FOREIGN_NAMES.as_bytes()).unwrap(), [node, "api.ocp.example.com", "email:a@b.c", "10.0.0.5"]);
        assert_eq!(requested_names(CLIENT_IP_10_0_131_183.as_bytes()).unwrap(), Vec::<String>::new());
    }

    #[test]
    fn the_policy_approves_a_serving_csr_only_for_the_nodes_own_names() {
        let name = "ip-10-0-131-183.ec2.internal";
        let node = NodeInfo {
            name: name.into(),
            ready: false,
            control_plane: true,
            internal_ip: "10.0.131.183".into(),
            taints: vec![],
            status_since: None,
            addresses: vec!["10.0.131.183".into(), "fd00::1".into(), name.into()],
        };
        let csr = |kind: CsrKind, signer: &str, requestor: &str, pem: &str| {
            let (k, n) = classify(signer, requestor, pem.as_bytes());
            assert_eq!(k, kind);
            CsrInfo {
                name: "csr-x".into(),
                signer: signer.into(),
                requestor: requestor.into(),
                kind,
                node: n,
                names: requested_names(pem.as_bytes()).ok(),
                pending: true,
                approved: false,
                usages: match signer {
                    SERVING_SIGNER => vec!["digital signature".into(), "key encipherment".into(), "server auth".into()],
                    _ => vec!["digital signature".into(), "client auth".into()],
                },
                created: Some(Timestamp(1_000_000_000_000)),
            }
        };
        let own = format!("{NODE_PREFIX}{name}");
        let cases = [
            (csr(CsrKind::NodeBootstrapper, CLIENT_SIGNER, NODE_BOOTSTRAPPER, CLIENT_IP_10_0_131_183), Some(&node), true),
            (csr(CsrKind::KubeletServing, SERVING_SIGNER, &own, SERVING_OWN_NAMES), Some(&node), true),
            // Asking for the API's name and VIP: never without a person.
            (csr(CsrKind::KubeletServing, SERVING_SIGNER, &own, SERVING_FOREIGN_NAMES), Some(&node), false),
            // No Node object to compare with, or no names at all.
            (csr(CsrKind::KubeletServing, SERVING_SIGNER, &own, SERVING_OWN_NAMES), None, false),
            (csr(CsrKind::KubeletServing, SERVING_SIGNER, &own, CLIENT_IP_10_0_131_183), Some(&node), false),
            (csr(CsrKind::Other, CLIENT_SIGNER, "system:anonymous", CLIENT_IP_10_0_131_183), Some(&node), false),
        ];
        for (i, (c, n, want)) in cases.iter().enumerate() {
            assert_eq!(approvable(c, *n), *want, "case {i}: {c:?}");
        }
        let mut unreadable = cases[1].0.clone();
        unreadable.names = None;
        assert!(!approvable(&unreadable, Some(&node)));
        // The policy: the same, and only for a node of the cluster, a kubelet's usages, recent.
        let expected = vec![name.to_string(), "worker-0".to_string()];
        let now = Timestamp(1_000_000_000_000).plus(std::time::Duration::from_secs(3600));
        assert_eq!(refusal(&cases[0].0, &expected, Some(&node), now), None);
        assert_eq!(refusal(&cases[1].0, &expected, Some(&node), now), None);
        let foreign = refusal(&cases[0].0, &["worker-0".to_string()], None, now).unwrap();
        assert!(foreign.contains("not one of this cluster's nodes") && foreign.contains(name), "{foreign}");
        let wider = refusal(&cases[2].0, &expected, Some(&node), now).unwrap();
        assert!(wider.contains("not what that node's kubelet asks for"), "{wider}");
        assert!(refusal(&cases[5].0, &expected, Some(&node), now).unwrap().contains("neither a node-bootstrapper"));
        let mut signing = cases[0].0.clone();
        signing.usages.push("server auth".into());
        assert!(refusal(&signing, &expected, Some(&node), now).unwrap().contains("asks for usages"), "a client CSR asking to serve");
        let mut none = cases[1].0.clone();
        none.usages.clear();
        assert!(refusal(&none, &expected, Some(&node), now).is_some());
        let later = now.plus(MAX_PENDING_AGE);
        assert!(refusal(&cases[0].0, &expected, Some(&node), later).unwrap().contains("more than 24 h ago"));
        let mut undated = cases[0].0.clone();
        undated.created = None;
        assert!(refusal(&undated, &expected, Some(&node), now).unwrap().contains("creation time is unknown"));
    }

    #[test]
    fn malformed_requests_are_errors_not_panics() {
        for bad in [&b""[..], b"\x30", b"\x30\x84\xff\xff\xff\xff", b"\x30\x03\x30\x01", b"-----BEGIN X-----\n====\n-----END X-----\n"] {
            assert!(subject_common_name(bad).is_err(), "{bad:?}");
        }
        // Every prefix of a real request fails cleanly too.
        let der = pem_body(CLIENT_IP_10_0_131_183.as_bytes()).unwrap();
        for n in 0..der.len() {
            let _ = subject_common_name(&der[..n]);
            let _ = requested_names(&der[..n]);
        }
        let der = pem_body(SERVING_FOREIGN_NAMES.as_bytes()).unwrap();
        for n in 0..der.len() {
            assert!(requested_names(&der[..n]).is_err(), "prefix {n}");
        }
    }
}
