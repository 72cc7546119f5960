//! The bytes of a simulated file, and back. A simulated snapshot carries, like a real one, the
//! etcd key/value of the ClusterVersion in protobuf framing (so the real adapter's snapshot
//! scanner reads its release), then the simulated file itself, msgpack in hex, on one line.

use crate::world::SimFile;

const HEADER: &str = "DRCTL-SIM-FILE 1";
const DATA: &str = "DRCTL-SIM-DATA ";
/// The etcd key the ClusterVersion object is stored under.
const CLUSTER_VERSION_KEY: &[u8] = b"/kubernetes.io/config.openshift.io/clusterversions/version";

pub fn file_bytes(f: &SimFile) -> Vec<u8> {
    let (kind, framed) = match f {
        SimFile::Bytes(b) => return b.clone(),
        SimFile::Snapshot { status, data } => ("snapshot", cluster_version_kv(&data.cluster_version, status.revision)),
        SimFile::StaticResources { .. } => ("static-resources", vec![]),
        SimFile::Info(_) => ("info", vec![]),
    };
    let mut out = format!("{HEADER} {kind}\n").into_bytes();
    out.extend(framed);
    out.push(b'\n');
    // A world value always encodes; an empty line would decode to `Bytes` rather than lie.
    let data = rmp_serde::to_vec_named(f).map(hex::encode).unwrap_or_default();
    out.extend(format!("{DATA}{data}\n").into_bytes());
    out
}

/// The file whose bytes these are; bytes that are not exactly a simulated file's (a part of
/// one, a corrupt copy) are kept as they are.
pub fn file_from_bytes(bytes: &[u8]) -> SimFile {
    decode(bytes).filter(|f| file_bytes(f) == bytes).unwrap_or_else(|| SimFile::Bytes(bytes.to_vec()))
}

fn decode(bytes: &[u8]) -> Option<SimFile> {
    if !bytes.starts_with(HEADER.as_bytes()) {
        return None;
    }
    let at = find_last(bytes, format!("\n{DATA}").as_bytes())? + 1 + DATA.len();
    let line = bytes[at..].strip_suffix(b"\n")?;
    let raw = hex::decode(line).ok()?;
    rmp_serde::from_slice(&raw).ok()
}

fn find_last(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).rposition(|w| w == needle)
}

/// An `mvccpb.KeyValue` for the ClusterVersion, as etcd stores it: key (field 1),
/// create_revision (2), mod_revision (3), version (4), value (5).
fn cluster_version_kv(version: &str, revision: u64) -> Vec<u8> {
    let value = serde_json::json!({
        "apiVersion": "config.openshift.io/v1",
        "kind": "ClusterVersion",
        "metadata": { "name": "version" },
        "status": {
            "desired": { "version": version },
            "history": [ { "state": "Completed", "version": version } ],
        },
    })
    .to_string();
    let mut out = vec![0x0a];
    varint(CLUSTER_VERSION_KEY.len() as u64, &mut out);
    out.extend_from_slice(CLUSTER_VERSION_KEY);
    for (tag, v) in [(0x10, 2), (0x18, revision.max(2)), (0x20, 1)] {
        out.push(tag);
        varint(v, &mut out);
    }
    out.push(0x2a);
    varint(value.len() as u64, &mut out);
    out.extend_from_slice(value.as_bytes());
    out
}

fn varint(mut v: u64, out: &mut Vec<u8>) {
    while v >= 0x80 {
        out.push((v as u8 & 0x7f) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}
