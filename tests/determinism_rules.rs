//! The engine, the procedures and the simulator never read the wall clock or OS randomness
//! directly: everything flows from an injected clock and seed (benches may measure time).

use std::path::Path;

const FORBIDDEN: &[&str] = &["SystemTime::now", "Instant::now", "thread_rng", "OsRng", "getrandom", "rand::random", "UNIX_EPOCH"];

fn scan(dir: &Path, hits: &mut Vec<String>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            // Benches measure real time by design.
            if path.file_name().is_some_and(|n| n == "benches") {
                continue;
            }
            scan(&path, hits);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let text = std::fs::read_to_string(&path).unwrap();
            for (i, line) in text.lines().enumerate() {
                if line.trim_start().starts_with("//") {
                    continue;
                }
                for f in FORBIDDEN {
                    if line.contains(f) {
                        hits.push(format!("{}:{}: {}", path.display(), i + 1, line.trim()));
                    }
                }
            }
        }
    }
}

#[test]
fn runtime_workflows_and_sim_take_time_and_randomness_only_by_injection() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut hits = vec![];
    for crate_dir in ["runtime", "workflows", "sim"] {
        scan(&root.join(crate_dir), &mut hits);
    }
    assert!(hits.is_empty(), "wall clock or OS randomness read directly:\n{}", hits.join("\n"));
}

#[test]
fn the_scan_finds_what_it_looks_for() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("x.rs"), "fn f() { let _ = std::time::Instant::now(); }\n").unwrap();
    let mut hits = vec![];
    scan(dir.path(), &mut hits);
    assert_eq!(hits.len(), 1);
}
