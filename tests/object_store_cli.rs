//! `drctl inspect --object-store` through the real binary against moto's S3 server (started by
//! the harness; `scripts/install-test-deps.sh` installs it). Credentials reach drctl the way an
//! operator's do: AWS environment variables and a shared credentials file with AWS_PROFILE.
// Real software in real time.
#![allow(clippy::disallowed_methods)]

mod common;
#[path = "../adapters/tests/support/mod.rs"]
mod support;

use serde_json::Value;
use std::path::Path;
use std::process::Output;
use support::moto::{Moto, TEST_KEY_ID, TEST_SECRET};

/// `drctl inspect ARGS` with only the AWS settings given here: none of the developer's, a HOME
/// without ~/.aws, no instance metadata lookups.
fn inspect(home: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let store = home.join("store");
    let mut c = common::command(&store, &["inspect"]);
    c.args(args).env_remove("KUBECONFIG").env("HOME", home).env("AWS_EC2_METADATA_DISABLED", "true");
    for var in [
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_PROFILE",
        "AWS_DEFAULT_PROFILE",
        "AWS_REGION",
        "AWS_DEFAULT_REGION",
        "AWS_CONFIG_FILE",
        "AWS_SHARED_CREDENTIALS_FILE",
        "AWS_ENDPOINT_URL",
        "AWS_ENDPOINT_URL_S3",
        "AWS_ROLE_ARN",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    ] {
        c.env_remove(var);
    }
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("drctl runs")
}

fn env_creds<'a>(key: &'a str, secret: &'a str) -> [(&'a str, &'a str); 2] {
    [("AWS_ACCESS_KEY_ID", key), ("AWS_SECRET_ACCESS_KEY", secret)]
}

fn all_output(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

#[test]
fn inspect_object_store_checks_a_bucket_with_a_probe_object() {
    let m = Moto::shared();
    m.create_bucket("dr-backups", None);
    let home = tempfile::tempdir().unwrap();
    let ep = m.endpoint();

    let o = inspect(
        home.path(),
        &["--object-store", "s3://dr-backups/hcp/clusters", "--s3-endpoint", &ep],
        &env_creds(TEST_KEY_ID, TEST_SECRET),
    );
    let out = all_output(&o);
    assert_eq!(o.status.code(), Some(0), "{}", common::text(&o));
    for line in [
        "S3:    s3://dr-backups/hcp/clusters at http://127.0.0.1:",
        "bucket:",
        "region us-east-1",
        "write:",
        "read:",
        "presign:",
        "delete:",
    ] {
        assert!(out.contains(line), "{line:?} missing:\n{out}");
    }
    assert!(out.contains("environment (AWS_ACCESS_KEY_ID), access key id AKIA…MPLE"), "credentials by reference:\n{out}");
    assert!(!out.contains(TEST_SECRET) && !out.contains(TEST_KEY_ID), "{out}");
    assert!(out.contains("OK: everything checked is fine"), "{out}");
    // The probe was written under the prefix and is gone again.
    let (st, list) = m.http("GET", "/dr-backups?list-type=2", &[], b"");
    assert_eq!(st, 200);
    assert!(!list.contains("<Key>"), "the probe object was deleted: {list}");

    // JSON, for scripts: every check and the region; credentials from a profile this time.
    let aws = home.path().join(".aws");
    std::fs::create_dir_all(&aws).unwrap();
    std::fs::write(aws.join("credentials"), format!("[dr]\naws_access_key_id = {TEST_KEY_ID}\naws_secret_access_key = {TEST_SECRET}\n"))
        .unwrap();
    let o = inspect(home.path(), &["-o", "json", "--object-store", "s3://dr-backups", "--s3-endpoint", &ep], &[("AWS_PROFILE", "dr")]);
    assert_eq!(o.status.code(), Some(0), "{}", common::text(&o));
    let v: Value = common::json(&o);
    let s = &v["object_store"];
    assert_eq!(s["checked"], true);
    assert_eq!(s["region"], "us-east-1");
    assert!(s["credentials"].as_str().is_some_and(|c| c.contains("profile \"dr\"")), "{s:#}");
    let names: Vec<&str> = s["checks"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["credentials", "bucket", "write", "read", "presign", "delete"]);
    assert!(s["checks"].as_array().unwrap().iter().all(|c| c["ok"] == true), "{s:#}");
    assert!(!String::from_utf8_lossy(&o.stdout).contains(TEST_SECRET));
}

#[test]
fn inspect_object_store_names_no_such_bucket_and_exits_1() {
    let m = Moto::shared();
    let home = tempfile::tempdir().unwrap();
    let o = inspect(home.path(), &["--object-store", "s3://nosuch", "--s3-endpoint", &m.endpoint()], &env_creds(TEST_KEY_ID, TEST_SECRET));
    assert_eq!(o.status.code(), Some(1), "{}", common::text(&o));
    let out = all_output(&o);
    assert!(out.contains("NoSuchBucket") && out.contains("bucket:") && out.contains("FAILED"), "{out}");
    assert!(out.contains("PROBLEM: object store s3://nosuch: bucket check failed"), "{out}");
    assert!(out.contains("check the bucket name"), "says what to do:\n{out}");
    assert!(!out.contains("write:"), "nothing is written to a bucket that is not there:\n{out}");

    let o = inspect(
        home.path(),
        &["-o", "json", "--object-store", "s3://nosuch", "--s3-endpoint", &m.endpoint()],
        &env_creds(TEST_KEY_ID, TEST_SECRET),
    );
    assert_eq!(o.status.code(), Some(1), "{}", common::text(&o));
    let v = common::json(&o);
    assert_eq!(v["ok"], false);
    assert_eq!(v["object_store"]["error_code"], "NoSuchBucket", "{v:#}");
}

#[test]
fn inspect_object_store_with_wrong_credentials_fails_without_showing_the_secret() {
    let (m, key_id, _secret) = Moto::start_with_iam(&["locked"]);
    let home = tempfile::tempdir().unwrap();
    let planted = "drctl-PLANTED-secret-zyxwvutsrq9876543210ABCDEFG";
    let ep = m.endpoint();

    // A real key with the wrong secret: S3 computes another signature.
    let o = inspect(home.path(), &["--object-store", "s3://locked", "--s3-endpoint", &ep], &env_creds(&key_id, planted));
    let out = all_output(&o);
    assert_eq!(o.status.code(), Some(1), "{}", common::text(&o));
    assert!(out.contains("SignatureDoesNotMatch") && out.contains("AWS_SECRET_ACCESS_KEY"), "{out}");
    assert!(!out.contains(planted), "the secret was printed:\n{out}");

    // An unknown key, with tracing at its most verbose: still no secret anywhere.
    let o = inspect(
        home.path(),
        &["-o", "json", "--object-store", "s3://locked", "--s3-endpoint", &ep],
        &[("AWS_ACCESS_KEY_ID", "AKIAUNKNOWNKEY000000"), ("AWS_SECRET_ACCESS_KEY", planted), ("RUST_LOG", "trace")],
    );
    let out = all_output(&o);
    assert_ne!(o.status.code(), Some(0), "{}", common::text(&o));
    assert!(!out.contains(planted), "the secret was printed:\n{out}");
    assert_eq!(common::json(&o)["object_store"]["error_code"], "InvalidAccessKeyId", "{}", common::text(&o));
}

#[test]
fn inspect_object_store_argument_and_credential_mistakes() {
    let home = tempfile::tempdir().unwrap();
    let o = inspect(home.path(), &["--object-store", "s3://Bad_Bucket"], &[]);
    assert_eq!(o.status.code(), Some(1), "{}", common::text(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("bucket name \"Bad_Bucket\""), "{}", common::text(&o));

    let o = inspect(home.path(), &["--object-store", "s3://fine-bucket", "--s3-endpoint", "localhost:9000"], &[]);
    assert_eq!(o.status.code(), Some(1), "{}", common::text(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--s3-endpoint"), "{}", common::text(&o));

    // No credentials anywhere: said before any request, with where to put them.
    let port = support::free_port();
    let o = inspect(home.path(), &["--object-store", "s3://fine-bucket", "--s3-endpoint", &format!("http://127.0.0.1:{port}")], &[]);
    let out = all_output(&o);
    assert_eq!(o.status.code(), Some(1), "{}", common::text(&o));
    assert!(out.contains("credentials:") && out.contains("no AWS credentials") && out.contains("AWS_PROFILE"), "{out}");
}
