//! Records the git commit the binary is built from, for `drctl --version`: an incident review
//! must know exactly which code ran a recovery.

use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn main() {
    let commit = match git(&["rev-parse", "--short=12", "HEAD"]) {
        Some(c) if !c.is_empty() => {
            let dirty = git(&["status", "--porcelain", "--untracked-files=no"]).is_some_and(|s| !s.is_empty());
            if dirty {
                format!("commit {c}, with uncommitted changes")
            } else {
                format!("commit {c}")
            }
        }
        _ => "commit unknown: built outside a git checkout".to_string(),
    };
    println!("cargo:rustc-env=DRCTL_GIT_COMMIT={commit}");
    // Rebuild the stamp when the checked-out commit or the index changes.
    if let Some(git_dir) = git(&["rev-parse", "--git-dir"]) {
        for f in ["HEAD", "index"] {
            println!("cargo:rerun-if-changed={git_dir}/{f}");
        }
        if let Some(head_ref) = git(&["symbolic-ref", "-q", "HEAD"]) {
            println!("cargo:rerun-if-changed={git_dir}/{head_ref}");
        }
    }
    println!("cargo:rerun-if-changed=build.rs");
}
