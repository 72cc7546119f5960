//! PKCS#10 requests as a kubelet sends them (`O=system:nodes, CN=system:node:<name>`), so a
//! simulated CSR carries what a real one does and the node is derived from it by the same
//! function the kube adapter uses (`drctl_workflows::csr::classify`). The key and signature are
//! fixed filler: nobody in the simulation verifies them, and a real approver does not either
//! (it signs what the request names).

/// DER tag-length-value.
fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    match content.len() {
        n if n < 0x80 => out.push(n as u8),
        n if n <= 0xff => out.extend([0x81, n as u8]),
        n => out.extend([0x82, (n >> 8) as u8, n as u8]),
    }
    out.extend_from_slice(content);
    out
}

fn attribute(oid: &[u8], value: &str) -> Vec<u8> {
    let atv = [tlv(0x06, oid), tlv(0x0c, value.as_bytes())].concat();
    tlv(0x31, &tlv(0x30, &atv))
}

/// A subject alternative name a request asks for.
pub enum AltName<'a> {
    Dns(&'a str),
    Ip(std::net::Ipv4Addr),
}

/// The extensionRequest attribute asking for `names` (none: no attribute).
fn extension_request(names: &[AltName]) -> Vec<u8> {
    if names.is_empty() {
        return vec![];
    }
    let general: Vec<u8> = names
        .iter()
        .flat_map(|n| match n {
            AltName::Dns(d) => tlv(0x82, d.as_bytes()),
            AltName::Ip(ip) => tlv(0x87, &ip.octets()),
        })
        .collect();
    let san = tlv(0x30, &[tlv(0x06, &[0x55, 0x1d, 0x11]), tlv(0x04, &tlv(0x30, &general))].concat());
    let pkcs9_extension_request = [0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x0e];
    tlv(0x30, &[tlv(0x06, &pkcs9_extension_request), tlv(0x31, &tlv(0x30, &san))].concat())
}

/// The PEM `CERTIFICATE REQUEST` of a kubelet for node `node`: a client certificate request
/// names no alternative names, a serving one its hostname and addresses (`names`).
pub fn kubelet_request_pem(node: &str, names: &[AltName]) -> String {
    let name = tlv(
        0x30,
        &[attribute(&[0x55, 0x04, 0x0a], "system:nodes"), attribute(&[0x55, 0x04, 0x03], &format!("system:node:{node}"))].concat(),
    );
    // id-ecPublicKey with prime256v1, and an uncompressed point of filler bytes.
    let algorithm = tlv(
        0x30,
        &[tlv(0x06, &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01]), tlv(0x06, &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07])].concat(),
    );
    let point: Vec<u8> = std::iter::once(0u8).chain(std::iter::once(4u8)).chain((0..64u8).map(|i| i.wrapping_mul(37))).collect();
    let spki = tlv(0x30, &[algorithm, tlv(0x03, &point)].concat());
    let info = tlv(0x30, &[tlv(0x02, &[0]), name, spki, tlv(0xa0, &extension_request(names))].concat());
    let ecdsa_sha256 = tlv(0x30, &tlv(0x06, &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02]));
    let signature = tlv(0x03, &[&[0u8][..], &tlv(0x30, &[tlv(0x02, &[1; 32]), tlv(0x02, &[2; 32])].concat())].concat());
    let der = tlv(0x30, &[info, ecdsa_sha256, signature].concat());
    let b64 = base64_encode(&der);
    let lines: Vec<&str> = b64.as_bytes().chunks(64).map(|c| std::str::from_utf8(c).expect("base64 is ASCII")).collect();
    format!("-----BEGIN CERTIFICATE REQUEST-----\n{}\n-----END CERTIFICATE REQUEST-----\n", lines.join("\n"))
}

fn base64_encode(b: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(b.len().div_ceil(3) * 4);
    for chunk in b.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |n, (i, &x)| n | (u32::from(x) << (16 - 8 * i)));
        for i in 0..4 {
            out.push(if i <= chunk.len() { A[(n >> (18 - 6 * i)) as usize & 63] as char } else { '=' });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_request_names_the_node_as_a_kubelets_does() {
        let pem = kubelet_request_pem("master-1", &[]);
        assert_eq!(drctl_workflows::csr::subject_common_name(pem.as_bytes()).unwrap(), "system:node:master-1");
        assert_eq!(drctl_workflows::csr::requested_names(pem.as_bytes()).unwrap(), Vec::<String>::new());
        let serving = kubelet_request_pem("master-1", &[AltName::Dns("master-1"), AltName::Ip([10, 0, 0, 11].into())]);
        assert_eq!(drctl_workflows::csr::subject_common_name(serving.as_bytes()).unwrap(), "system:node:master-1");
        assert_eq!(drctl_workflows::csr::requested_names(serving.as_bytes()).unwrap(), ["master-1", "10.0.0.11"]);
        assert_eq!(base64_encode(b"ab"), "YWI=");
        assert_eq!(base64_encode(b"abc"), "YWJj");
    }
}
