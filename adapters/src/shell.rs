//! POSIX shell quoting. Every word that reaches a remote shell goes through [`quote`].

use std::borrow::Cow;

/// Quote one word for a POSIX shell: left as is when it only has characters no shell treats
/// specially, otherwise single-quoted (a `'` inside becomes `'\''`). The result always reads
/// back as exactly `word`: no expansion, globbing or splitting.
pub fn quote(word: &str) -> Cow<'_, str> {
    let safe = !word.is_empty()
        && word
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b'/' | b':' | b'=' | b',' | b'+' | b'@' | b'%'));
    if safe {
        Cow::Borrowed(word)
    } else {
        let mut s = String::with_capacity(word.len() + 2);
        s.push('\'');
        for c in word.chars() {
            if c == '\'' {
                s.push_str("'\\''");
            } else {
                s.push(c);
            }
        }
        s.push('\'');
        Cow::Owned(s)
    }
}

/// Join words into one command line, each quoted.
pub fn join<I, S>(words: I) -> String
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    let mut out = String::new();
    for w in words {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(&quote(w.as_ref()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    #[test]
    fn leaves_plain_words_alone() {
        assert_eq!(quote("/etc/kubernetes/manifests/etcd-pod.yaml"), "/etc/kubernetes/manifests/etcd-pod.yaml");
        assert_eq!(
            join(["sudo", "mv", "-v", "/etc/kubernetes/manifests/etcd-pod.yaml", "/tmp"]),
            "sudo mv -v /etc/kubernetes/manifests/etcd-pod.yaml /tmp"
        );
        assert_eq!(quote(""), "''");
        assert_eq!(quote("a b"), "'a b'");
        assert_eq!(quote("it's"), "'it'\\''s'");
    }

    /// What a real shell reads back is the original word, whatever it holds.
    #[test]
    fn a_real_shell_reads_every_word_back_literally() {
        let nasty = [
            "plain",
            "with space",
            "it's",
            "$(touch /tmp/drctl-pwned)",
            "`id`",
            "a;b&&c||d|e",
            "*.pem",
            "~root",
            "new\nline",
            "$HOME ${PATH} $1",
            "\"double\" 'single' \\back",
            "-n",
            "",
        ];
        let script = format!("for a in {}; do printf '%s\\0' \"$a\"; done", join(nasty));
        let out = Command::new("sh").arg("-c").arg(&script).output().unwrap();
        assert!(out.status.success());
        let got: Vec<&str> = std::str::from_utf8(&out.stdout).unwrap().split('\0').collect();
        assert_eq!(&got[..got.len() - 1], &nasty[..]);
        assert!(!std::path::Path::new("/tmp/drctl-pwned").exists());
    }
}
