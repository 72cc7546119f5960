//! What a CertificateSigningRequest is for, read the way the API server's own approvers read it:
//! the signer and the requesting user say which kind of certificate it is, and the PKCS#10
//! request itself says for whom. A kubelet's first client certificate is requested by the
//! node-bootstrapper service account, so only the request's subject (`CN=system:node:<name>`)
//! names the node. One function, [`classify`], used by the kube adapter and the simulator alike,
//! so both derive the node the same way.

use crate::ports::CsrKind;

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

const SEQUENCE: u8 = 0x30;
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

    #[test]
    fn malformed_requests_are_errors_not_panics() {
        for bad in [&b""[..], b"\x30", b"\x30\x84\xff\xff\xff\xff", b"\x30\x03\x30\x01", b"-----BEGIN X-----\n====\n-----END X-----\n"] {
            assert!(subject_common_name(bad).is_err(), "{bad:?}");
        }
        // Every prefix of a real request fails cleanly too.
        let der = pem_body(CLIENT_IP_10_0_131_183.as_bytes()).unwrap();
        for n in 0..der.len() {
            let _ = subject_common_name(&der[..n]);
        }
    }
}
