//! A kubeconfig holds private keys and tokens: whatever is wrong with one, drctl names the file
//! and the fault, never its contents, on any output or in any file it writes.

#![allow(dead_code)]

mod real_common;
#[path = "../adapters/tests/support/mod.rs"]
mod support;

use real_common::*;

/// A recognisable fake key, planted in every malformed kubeconfig below.
const PLANTED: &str = "UExBTlRFRC1mYWtlLWtleS1kcmN0bC0xMjM0NQ";

fn malformed() -> Vec<(&'static str, String)> {
    let head = "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: https://127.0.0.1:1\n";
    let ctx = "contexts:\n- name: x\n  context: {cluster: c, user: u}\ncurrent-context: x\n";
    vec![
        (
            "unclosed bracket after the key",
            format!("{head}users:\n- name: u\n  user:\n    client-key-data: {PLANTED}\ncontexts: [ {{name: x\n"),
        ),
        ("key of the wrong type", format!("{head}users:\n- name: u\n  user:\n    client-key-data: [\"{PLANTED}\"]\n{ctx}")),
        (
            "key that is not base64",
            format!("{head}users:\n- name: u\n  user:\n    client-certificate-data: AAAA\n    client-key-data: \"{PLANTED}!!\"\n{ctx}"),
        ),
        (
            "token in a boolean field",
            format!("{head}    insecure-skip-tls-verify: {PLANTED}\nusers:\n- name: u\n  user:\n    token: {PLANTED}\n{ctx}"),
        ),
    ]
}

/// How drctl is called: what it is, its arguments, its environment.
type Invocation<'a> = (&'a str, Vec<&'a str>, Vec<(&'a str, &'a str)>);

/// Every file under `dir`, recursively.
fn files_under(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = vec![];
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        match p.is_dir() {
            true => out.extend(files_under(&p)),
            false => out.push(p),
        }
    }
    out
}

#[test]
fn a_malformed_kubeconfig_is_named_never_echoed() {
    let dir = tempfile::tempdir().unwrap();
    for (i, (what, text_of_file)) in malformed().into_iter().enumerate() {
        let kc = dir.path().join(format!("kubeconfig-{i}"));
        std::fs::write(&kc, &text_of_file).unwrap();
        let kc_s = kc.display().to_string();
        let store = dir.path().join(format!("store-{i}"));
        let backups = dir.path().join("backups");
        let runs: [Invocation; 3] = [
            (
                "run",
                vec![
                    "run",
                    "restore-cluster-state",
                    "--backup",
                    "nightly",
                    "--kubeconfig",
                    &kc_s,
                    "--hosts",
                    "m0=127.0.0.1",
                    "--ssh-user",
                    "core",
                    "--backup-root",
                ],
                vec![],
            ),
            ("inspect --kubeconfig", vec!["inspect", "--kubeconfig", &kc_s], vec![]),
            ("inspect with $KUBECONFIG", vec!["inspect", "-o", "json"], vec![("KUBECONFIG", kc_s.as_str())]),
        ];
        for (how, mut args, env) in runs {
            let backups_s = backups.display().to_string();
            if how == "run" {
                args.push(&backups_s);
            }
            let o = drctl_env(&store, &args, &env);
            let out = text(&o);
            assert_ne!(o.status.code(), Some(0), "{what}, {how}: a malformed kubeconfig was accepted\n{out}");
            assert!(!out.contains(PLANTED), "{what}, {how}: the key was echoed\n{out}");
            assert!(out.contains(&kc_s), "{what}, {how}: the file is not named\n{out}");
        }
        for f in files_under(&store) {
            let bytes = std::fs::read(&f).unwrap();
            assert!(!String::from_utf8_lossy(&bytes).contains(PLANTED), "{what}: the key is in {}", f.display());
        }
    }
}

/// The store and what drctl writes in it are owner-only: history holds evidence about the
/// cluster, simulated worlds hold its backups.
#[test]
fn the_store_is_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("new-store");
    let o = drctl(&store, &["run", "etcd-backup", "--sim", "healthy"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    for d in [store.clone(), store.join("db"), store.join("sim")] {
        assert_eq!(mode(&d), 0o700, "{} is {:o}", d.display(), mode(&d));
    }
    for f in files_under(&store.join("sim")) {
        assert_eq!(mode(&f), 0o600, "{} is {:o}", f.display(), mode(&f));
    }
}
