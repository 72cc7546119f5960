//! BMC credentials and addresses for a new BareMetalHost (OpenShift Container Platform 4.14
//! Backup and restore §5.2.4.3 step 11).
//!
//! The credentials live in a file the operator names (`--bmc-credentials FILE`); a run records
//! the path only. They are read at the step that writes the secret and dropped after it: they
//! are never serialized, their `Debug` is redacted, and no error message quotes the file.

use std::fmt;
use std::path::Path;

/// A BMC user and password, held only for the call that writes them into the cluster.
#[derive(Clone, PartialEq, Eq)]
pub struct BmcCredentials {
    pub username: String,
    pub password: String,
}

impl fmt::Debug for BmcCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BmcCredentials { username: <redacted>, password: <redacted> }")
    }
}

/// The largest credentials file read (a two-line YAML mapping is far smaller).
const MAX_FILE_BYTES: u64 = 64 * 1024;

/// Read `path`: a YAML mapping with the plain scalars `username` and `password` (quoted or not,
/// `#` comments and a leading `---` allowed). What is wrong is said by line number and key
/// only; the file's content never appears in an error.
pub fn read_credentials(path: &Path) -> Result<BmcCredentials, String> {
    let shown = path.display();
    let meta = std::fs::metadata(path).map_err(|e| format!("BMC credentials file {shown}: {}", io_reason(&e)))?;
    if !meta.is_file() {
        return Err(format!("BMC credentials file {shown} is not a regular file"));
    }
    if meta.len() > MAX_FILE_BYTES {
        return Err(format!("BMC credentials file {shown} is {} bytes: expected a YAML mapping with username and password", meta.len()));
    }
    let bytes = std::fs::read(path).map_err(|e| format!("BMC credentials file {shown}: {}", io_reason(&e)))?;
    let text = String::from_utf8(bytes).map_err(|_| format!("BMC credentials file {shown} is not UTF-8 text"))?;
    parse_credentials(&text).map_err(|why| format!("BMC credentials file {shown}: {why} (expected lines `username: …` and `password: …`)"))
}

/// Why an I/O error happened, without the OS text that could one day carry more than a reason.
fn io_reason(e: &std::io::Error) -> &'static str {
    match e.kind() {
        std::io::ErrorKind::NotFound => "no such file",
        std::io::ErrorKind::PermissionDenied => "permission denied",
        _ => "cannot be read",
    }
}

/// The two keys out of `text`. Errors name the line and the key, never a value.
pub fn parse_credentials(text: &str) -> Result<BmcCredentials, String> {
    let (mut username, mut password) = (None, None);
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim_end();
        let content = line.trim_start();
        if content.is_empty() || content.starts_with('#') || (i == 0 && content == "---") {
            continue;
        }
        if line.len() != content.len() {
            return Err(format!("line {} is indented: only a flat mapping is read", i + 1));
        }
        let Some((key, value)) = content.split_once(':') else {
            return Err(format!("line {} is not `key: value`", i + 1));
        };
        let value = scalar(value.trim()).ok_or_else(|| format!("the value on line {} is not a plain or quoted scalar", i + 1))?;
        let slot = match key.trim() {
            "username" => &mut username,
            "password" => &mut password,
            _ => return Err(format!("line {} has a key other than username and password", i + 1)),
        };
        if slot.replace(value).is_some() {
            return Err(format!("line {} repeats the key {}", i + 1, key.trim()));
        }
    }
    match (username, password) {
        (Some(u), Some(p)) if !u.is_empty() && !p.is_empty() => Ok(BmcCredentials { username: u, password: p }),
        (None, _) | (Some(_), None) => Err("username or password is missing".into()),
        _ => Err("username or password is empty".into()),
    }
}

/// A YAML scalar as the two keys use it: `'single'` (with `''` for a quote), `"double"`
/// (no escapes beyond `\\` and `\"`), or plain without a trailing comment.
fn scalar(v: &str) -> Option<String> {
    if let Some(inner) = v.strip_prefix('\'') {
        let inner = inner.strip_suffix('\'')?;
        return (!inner.replace("''", "").contains('\'')).then(|| inner.replace("''", "'"));
    }
    if let Some(inner) = v.strip_prefix('"') {
        let inner = inner.strip_suffix('"')?;
        let mut out = String::new();
        let mut chars = inner.chars();
        while let Some(c) = chars.next() {
            match c {
                '\\' => match chars.next()? {
                    c @ ('\\' | '"') => out.push(c),
                    _ => return None,
                },
                '"' => return None,
                c => out.push(c),
            }
        }
        return Some(out);
    }
    let plain = match v.find(" #") {
        Some(at) => v[..at].trim_end(),
        None => v,
    };
    let special = |c: char| matches!(c, '[' | ']' | '{' | '}' | '&' | '*' | '!' | '|' | '>' | '%' | '@' | '`');
    (!plain.starts_with(special)).then(|| plain.to_string())
}

/// `--bmc-address`: `scheme://host[:port][/path]` with a scheme the bare metal operator drives
/// (`redfish`, `redfish-virtualmedia`, `idrac-virtualmedia`, `ipmi`, …, optionally `+http(s)`).
pub fn validate_bmc_address(address: &str) -> Result<(), String> {
    const SCHEMES: &[&str] = &[
        "ipmi",
        "redfish",
        "redfish-virtualmedia",
        "redfish-uefihttp",
        "idrac",
        "idrac-redfish",
        "idrac-virtualmedia",
        "ilo4",
        "ilo4-virtualmedia",
        "ilo5",
        "ilo5-redfish",
        "ilo5-virtualmedia",
        "irmc",
        "ibmc",
    ];
    let bad = |why: &str| Err(format!("--bmc-address '{address}' {why}"));
    let Some((scheme, rest)) = address.split_once("://") else {
        return bad("is not a URL (e.g. redfish://10.46.61.18:443/redfish/v1/Systems/1)");
    };
    let base = scheme.strip_suffix("+https").or_else(|| scheme.strip_suffix("+http")).unwrap_or(scheme);
    if !SCHEMES.contains(&base) {
        return bad(&format!("has a scheme the bare metal operator does not drive (known: {})", SCHEMES.join(", ")));
    }
    let host = rest.split('/').next().unwrap_or("");
    if host.is_empty() || host.contains('@') || !host.bytes().all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b)) {
        return bad("has no host, or one with credentials or odd characters in it");
    }
    if address.bytes().any(|b| b.is_ascii_whitespace() || b.is_ascii_control()) {
        return bad("contains whitespace");
    }
    Ok(())
}

/// `--boot-mac-address`: six pairs of hex digits separated by `:`, written lowercase.
pub fn normalize_mac(mac: &str) -> Result<String, String> {
    let pairs: Vec<&str> = mac.split(':').collect();
    if pairs.len() != 6 || !pairs.iter().all(|p| p.len() == 2 && p.bytes().all(|b| b.is_ascii_hexdigit())) {
        return Err(format!("--boot-mac-address '{mac}' is not a MAC address (e.g. 48:df:37:b0:8a:a0)"));
    }
    Ok(mac.to_ascii_lowercase())
}

/// The secret the runbook names after the host: `<host>-bmc-secret`.
pub fn secret_name(host: &str) -> String {
    format!("{host}-bmc-secret")
}

#[cfg(test)]
mod tests {
    use super::*;

    const PLANTED: &str = "s3cr3t-Planted-7f1e";

    #[test]
    fn reads_plain_and_quoted_scalars() {
        let c = parse_credentials("---\n# BMC of control-plane-2\nusername: admin\npassword: 'it''s'\n").unwrap();
        assert_eq!((c.username.as_str(), c.password.as_str()), ("admin", "it's"));
        let c = parse_credentials("password: \"a\\\"b\" \nusername: root # the default\n").unwrap();
        assert_eq!((c.username.as_str(), c.password.as_str()), ("root", "a\"b"));
    }

    #[test]
    fn errors_never_quote_the_file() {
        let bad = [
            format!("username: admin\npassword: {PLANTED}\npassword: {PLANTED}\n"),
            format!("username admin {PLANTED}\n"),
            format!("username: admin\n  password: {PLANTED}\n"),
            format!("user: {PLANTED}\npassword: x\n"),
            format!("username: admin\npassword: \"{PLANTED}\n"),
            format!("username: admin\npassword: [{PLANTED}]\n"),
            format!("username: {PLANTED}\n"),
            "username: admin\npassword: ''\n".to_string(),
        ];
        for text in bad {
            let e = parse_credentials(&text).unwrap_err();
            assert!(!e.contains(PLANTED) && !e.contains("admin"), "{e}");
        }
        let c = parse_credentials(&format!("username: admin\npassword: {PLANTED}\n")).unwrap();
        assert!(!format!("{c:?}").contains(PLANTED));
    }

    #[test]
    fn a_missing_or_odd_file_is_said_plainly() {
        let dir = std::env::temp_dir().join(format!("drctl-bmc-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        assert!(read_credentials(&dir.join("absent.yaml")).unwrap_err().contains("no such file"));
        assert!(read_credentials(&dir).unwrap_err().contains("not a regular file"));
        let f = dir.join("bin.yaml");
        std::fs::write(&f, [0xff, 0xfe, b'p']).unwrap();
        assert!(read_credentials(&f).unwrap_err().contains("not UTF-8"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn addresses_and_macs() {
        for ok in
            ["redfish://10.46.61.18:443/redfish/v1/Systems/1", "redfish-virtualmedia+https://bmc.example.com/x", "ipmi://[fd00::1]:623"]
        {
            assert_eq!(validate_bmc_address(ok), Ok(()), "{ok}");
        }
        for bad in ["10.0.0.1", "http://10.0.0.1/", "redfish://", "redfish://user:pw@10.0.0.1/", "redfish://10.0.0.1/a b"] {
            assert!(validate_bmc_address(bad).is_err(), "{bad}");
        }
        assert_eq!(normalize_mac("48:DF:37:b0:8a:a0").as_deref(), Ok("48:df:37:b0:8a:a0"));
        for bad in ["48:df:37:b0:8a", "48-df-37-b0-8a-a0", "48:df:37:b0:8a:zz", ""] {
            assert!(normalize_mac(bad).is_err(), "{bad}");
        }
    }
}
