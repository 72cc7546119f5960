//! The login shell of a simulated host, for the SSH twin: a real sshd hands each command line
//! drctl's SSH adapter sends to [`World::host_shell`], which parses it with a strict parser of
//! the POSIX `sh` subset the adapter renders ([`parse`]) and interprets it, every command word
//! resolving to a simulated tool ([`tools`]) that acts on the host's state through the same
//! world methods the direct simulator ([`crate::host_ops`]) uses.
//!
//! This is an independent reading of the command line, not a reuse of the adapter's renderer:
//! a command or argument form the shell does not know ends the session with exit 127 and
//! `drctl sim host-shell: unsupported command form: …` on stderr, so a renderer change cannot
//! pass silently. Syntax outside the subset is exit 2.
//!
//! Nothing here adds SSH latency or connection faults: the caller does that.

mod codec;
mod fs;
mod parse;
mod tools;

use crate::world::World;
use parse::{AndOr, Command, Joint, List, Part, Redir, RedirOp, Simple, Word};
use std::collections::{BTreeMap, BTreeSet};

pub use codec::{file_bytes, file_from_bytes};

/// What a command line gave: as sshd passes it back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShellOutput {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub code: i32,
}

/// Where the message of a refused command form goes, and how it starts.
const REFUSED: &str = "drctl sim host-shell";

impl World {
    /// Run one command line, as sshd hands it to the login shell of `host`, against the world.
    pub fn host_shell(&mut self, host: &str, command: &str, stdin: &[u8]) -> ShellOutput {
        if !self.hosts.contains_key(host) {
            return ShellOutput { stdout: vec![], stderr: format!("{REFUSED}: no host {host:?}\n").into_bytes(), code: 255 };
        }
        let mut s =
            Session { world: self, host: host.to_string(), bufs: vec![vec![], vec![]], stdin: Some(stdin.to_vec()), next_pid: 4242 };
        let code = s.login(command);
        let stderr = std::mem::take(&mut s.bufs[1]);
        let stdout = std::mem::take(&mut s.bufs[0]);
        ShellOutput { stdout, stderr, code }
    }
}

/// One SSH session's shell: the world, the output buffers and the session's stdin.
struct Session<'w> {
    world: &'w mut World,
    host: String,
    /// Output buffers: 0 is the session's stdout, 1 its stderr, the rest pipes and captures.
    bufs: Vec<Vec<u8>>,
    /// The session's stdin, taken whole by the first command that reads it.
    stdin: Option<Vec<u8>>,
    next_pid: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Out {
    Buf(usize),
    Null,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum In {
    Session,
    Buf(usize),
    Null,
}

/// The standard descriptors of a command.
#[derive(Debug, Clone, Copy)]
struct Fds {
    input: In,
    out: Out,
    err: Out,
}

/// How a command ended other than with a status.
#[derive(Debug)]
enum Flow {
    /// `exit N` (or `exec` finished): the current shell ends.
    Exit(i32),
    /// The simulator refused a command form: the whole session ends, exit 127.
    Abort,
}

type Status = Result<i32, Flow>;

/// The variables and state of one shell process.
#[derive(Debug, Clone)]
struct Frame {
    vars: BTreeMap<String, String>,
    exported: BTreeSet<String>,
    /// `$0`, `$1`, …
    args: Vec<String>,
    pid: u32,
    /// `$?`.
    status: i32,
    /// `set -a`: assignments are exported.
    allexport: bool,
    /// Runs as root (under `sudo`).
    root: bool,
}

impl Frame {
    fn new(env: &BTreeMap<String, String>, args: Vec<String>, pid: u32, root: bool) -> Frame {
        Frame { vars: env.clone(), exported: env.keys().cloned().collect(), args, pid, status: 0, allexport: false, root }
    }

    fn env(&self) -> BTreeMap<String, String> {
        self.vars.iter().filter(|(k, _)| self.exported.contains(*k)).map(|(k, v)| (k.clone(), v.clone())).collect()
    }

    fn param(&self, name: &str) -> String {
        match name {
            "$" => self.pid.to_string(),
            "?" => self.status.to_string(),
            n if n.chars().all(|c| c.is_ascii_digit()) => {
                n.parse::<usize>().ok().and_then(|i| self.args.get(i)).cloned().unwrap_or_default()
            }
            n => self.vars.get(n).cloned().unwrap_or_default(),
        }
    }
}

/// The environment of core's login shell on RHCOS.
fn login_env() -> BTreeMap<String, String> {
    [
        ("HOME", "/var/home/core"),
        ("LOGNAME", "core"),
        ("PATH", "/var/home/core/.local/bin:/var/home/core/bin:/usr/local/bin:/usr/bin:/usr/local/sbin:/usr/sbin"),
        ("SHELL", "/bin/bash"),
        ("USER", "core"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

const STDOUT: Fds = Fds { input: In::Session, out: Out::Buf(0), err: Out::Buf(1) };

impl Session<'_> {
    fn login(&mut self, command: &str) -> i32 {
        let pid = self.pid();
        let mut frame = Frame::new(&login_env(), vec!["bash".into()], pid, false);
        self.run_script(&mut frame, command, STDOUT).unwrap_or_else(|f| match f {
            Flow::Exit(n) => n,
            Flow::Abort => 127,
        })
    }

    fn pid(&mut self) -> u32 {
        self.next_pid += 1;
        self.next_pid
    }

    /// Parse and run `src` in `frame`; a syntax error is exit 2.
    fn run_script(&mut self, frame: &mut Frame, src: &str, fds: Fds) -> Status {
        match parse::parse(src) {
            Ok(list) => self.run_list(frame, &list, fds),
            Err(e) => {
                self.say(fds.err, &format!("{REFUSED}: syntax error: {e}"));
                Ok(2)
            }
        }
    }

    // -----------------------------------------------------------------------------------------
    // Output
    // -----------------------------------------------------------------------------------------

    fn write(&mut self, out: Out, bytes: &[u8]) {
        if let Out::Buf(i) = out {
            self.bufs[i].extend_from_slice(bytes);
        }
    }

    /// A line on `out`.
    fn say(&mut self, out: Out, line: &str) {
        self.write(out, format!("{line}\n").as_bytes());
    }

    fn new_buf(&mut self) -> usize {
        self.bufs.push(vec![]);
        self.bufs.len() - 1
    }

    fn read_input(&mut self, input: In) -> Vec<u8> {
        match input {
            In::Session => self.stdin.take().unwrap_or_default(),
            In::Buf(i) => std::mem::take(&mut self.bufs[i]),
            In::Null => vec![],
        }
    }

    /// Refuse a command form: the message goes to the session's stderr whatever the command's
    /// redirections, and the session ends.
    fn unsupported(&mut self, words: &[String]) -> Flow {
        let shown: Vec<String> = words.iter().map(|w| show_word(w)).collect();
        self.say(Out::Buf(1), &format!("{REFUSED}: unsupported command form: {}", shown.join(" ")));
        Flow::Abort
    }

    // -----------------------------------------------------------------------------------------
    // Control flow
    // -----------------------------------------------------------------------------------------

    fn run_list(&mut self, f: &mut Frame, list: &List, fds: Fds) -> Status {
        let mut status = 0;
        for and_or in list {
            status = self.run_and_or(f, and_or, fds)?;
        }
        Ok(status)
    }

    fn run_and_or(&mut self, f: &mut Frame, a: &AndOr, fds: Fds) -> Status {
        let mut status = self.run_pipeline(f, &a.first, fds)?;
        f.status = status;
        for (joint, p) in &a.rest {
            let go = match joint {
                Joint::And => status == 0,
                Joint::Or => status != 0,
            };
            if go {
                status = self.run_pipeline(f, p, fds)?;
                f.status = status;
            }
        }
        Ok(status)
    }

    /// The stages run one after the other, each reading what the one before wrote.
    fn run_pipeline(&mut self, f: &mut Frame, cmds: &[Command], fds: Fds) -> Status {
        let [first, rest @ ..] = cmds else { return Ok(0) };
        if rest.is_empty() {
            return self.run_command(f, first, fds);
        }
        let mut input = fds.input;
        let mut status = 0;
        for (i, cmd) in cmds.iter().enumerate() {
            let out = if i + 1 == cmds.len() { fds.out } else { Out::Buf(self.new_buf()) };
            // Each stage is a subshell: its `exit` ends only the stage.
            let mut stage = f.clone();
            status = in_subshell(self.run_command(&mut stage, cmd, Fds { input, out, err: fds.err }))?;
            input = match out {
                Out::Buf(b) => In::Buf(b),
                Out::Null => In::Null,
            };
        }
        Ok(status)
    }

    fn run_command(&mut self, f: &mut Frame, cmd: &Command, fds: Fds) -> Status {
        match cmd {
            Command::Simple(s) => self.run_simple(f, s, fds),
            Command::If { arms, otherwise, redirs } => self.with_redirs(f, redirs, fds, |s, f, fds| {
                for (cond, body) in arms {
                    if s.run_list(f, cond, fds)? == 0 {
                        return s.run_list(f, body, fds);
                    }
                }
                match otherwise {
                    Some(body) => s.run_list(f, body, fds),
                    None => Ok(0),
                }
            }),
            Command::Group { body, redirs } => self.with_redirs(f, redirs, fds, |s, f, fds| s.run_list(f, body, fds)),
        }
    }

    fn run_simple(&mut self, f: &mut Frame, cmd: &Simple, fds: Fds) -> Status {
        let mut subst_status = None;
        let mut argv = Vec::new();
        for w in &cmd.words {
            argv.extend(self.expand_fields(f, w, fds, &mut subst_status)?);
        }
        let mut assigns = Vec::new();
        for (name, w) in &cmd.assigns {
            assigns.push((name.clone(), self.expand_joined(f, w, fds, &mut subst_status)?));
        }
        self.with_redirs(f, &cmd.redirs, fds, |s, f, fds| {
            if argv.is_empty() {
                for (name, value) in assigns {
                    if f.allexport {
                        f.exported.insert(name.clone());
                    }
                    f.vars.insert(name, value);
                }
                return Ok(subst_status.unwrap_or(0));
            }
            let mut env = f.env();
            env.extend(assigns);
            s.run_words(f, &argv, &env, fds)
        })
    }

    /// A command: a builtin of the shell itself, else a tool.
    fn run_words(&mut self, f: &mut Frame, argv: &[String], env: &BTreeMap<String, String>, fds: Fds) -> Status {
        match argv[0].as_str() {
            "exit" => match argv {
                [_] => Err(Flow::Exit(f.status)),
                [_, n] if !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()) => Err(Flow::Exit(n.parse::<i32>().unwrap_or(255) & 255)),
                _ => Err(self.unsupported(argv)),
            },
            "set" => match argv {
                [_, a] if a == "-a" || a == "+a" => {
                    f.allexport = a == "-a";
                    Ok(0)
                }
                _ => Err(self.unsupported(argv)),
            },
            "." => match argv {
                [_, file] => self.source(f, file, fds),
                _ => Err(self.unsupported(argv)),
            },
            "exec" => match argv {
                [_, cmd @ ..] if !cmd.is_empty() => Err(Flow::Exit(self.external(cmd, env, f.root, fds)?)),
                _ => Err(self.unsupported(argv)),
            },
            _ => self.external(argv, env, f.root, fds),
        }
    }

    /// `. FILE`: run the file's commands in this shell.
    fn source(&mut self, f: &mut Frame, file: &str, fds: Fds) -> Status {
        let h = &self.world.hosts[&self.host];
        let path = fs::canonical(file).filter(|p| fs::tree(self.world, h).get(&p.path) == Some(&fs::Kind::File));
        match path {
            Some(p) if f.root || !fs::is_private(&p.path) => {
                let text = String::from_utf8_lossy(&fs::read(self.world, h, &p.path)).into_owned();
                self.run_script(f, &text, fds)
            }
            _ => {
                self.say(fds.err, &format!("bash: {file}: No such file or directory"));
                Ok(1)
            }
        }
    }

    /// `sh -c SCRIPT [ARG0 ARGS…]`: a new shell process with `env` as its environment.
    fn child_shell(&mut self, script: &str, args: Vec<String>, env: &BTreeMap<String, String>, root: bool, fds: Fds) -> Status {
        let pid = self.pid();
        let mut child = Frame::new(env, args, pid, root);
        in_subshell(self.run_script(&mut child, script, fds))
    }

    // -----------------------------------------------------------------------------------------
    // Redirections
    // -----------------------------------------------------------------------------------------

    /// Run `body` with `redirs` applied; output redirected to a file is stored once it ends.
    fn with_redirs(
        &mut self,
        f: &mut Frame,
        redirs: &[Redir],
        fds: Fds,
        body: impl FnOnce(&mut Self, &mut Frame, Fds) -> Status,
    ) -> Status {
        let mut fds = fds;
        let mut files = Vec::new();
        for r in redirs {
            let target = self.expand_joined(f, &r.target, fds, &mut None)?;
            match self.redirect(f, r, &target, &mut fds)? {
                Ok(Some(file)) => files.push(file),
                Ok(None) => {}
                Err(message) => {
                    self.say(fds.err, &format!("bash: {target}: {message}"));
                    return Ok(1);
                }
            }
        }
        let status = body(self, f, fds);
        for (path, buf) in files {
            let bytes = std::mem::take(&mut self.bufs[buf]);
            self.store(&path, &bytes);
        }
        status
    }

    /// Apply one redirection to `fds`: a file written to is returned with its buffer.
    fn redirect(&mut self, f: &Frame, r: &Redir, target: &str, fds: &mut Fds) -> Result<Result<Option<(String, usize)>, String>, Flow> {
        let words = || vec![format!("{}{}{target}", r.fd, redir_op(r.op))];
        let out = match (r.op, target) {
            (RedirOp::In, "/dev/null") if r.fd == 0 => {
                fds.input = In::Null;
                return Ok(Ok(None));
            }
            (RedirOp::DupOut, "1") => fds.out,
            (RedirOp::DupOut, "2") => fds.err,
            (RedirOp::Out | RedirOp::Append, "/dev/null") => Out::Null,
            (RedirOp::Out, path) => match self.writable(path, f.root, &words())? {
                Ok(p) => {
                    let buf = self.new_buf();
                    self.set_fd(r.fd, Out::Buf(buf), fds, &words())?;
                    return Ok(Ok(Some((p, buf))));
                }
                Err(e) => return Ok(Err(e)),
            },
            _ => return Err(self.unsupported(&words())),
        };
        self.set_fd(r.fd, out, fds, &words())?;
        Ok(Ok(None))
    }

    fn set_fd(&mut self, fd: u32, out: Out, fds: &mut Fds, words: &[String]) -> Result<(), Flow> {
        match fd {
            1 => fds.out = out,
            2 => fds.err = out,
            _ => return Err(self.unsupported(words)),
        }
        Ok(())
    }

    // -----------------------------------------------------------------------------------------
    // Expansion
    // -----------------------------------------------------------------------------------------

    /// The value of an expansion part (a parameter or a command substitution).
    fn part_value(&mut self, f: &Frame, part: &Part, fds: Fds, subst_status: &mut Option<i32>) -> Result<String, Flow> {
        match part {
            Part::Lit { text, .. } => Ok(text.clone()),
            Part::Param { name, .. } => Ok(f.param(name)),
            Part::Subst { program, .. } => {
                let buf = self.new_buf();
                let mut sub = f.clone();
                let status = in_subshell(self.run_list(&mut sub, program, Fds { out: Out::Buf(buf), ..fds }))?;
                *subst_status = Some(status);
                let out = String::from_utf8_lossy(&std::mem::take(&mut self.bufs[buf])).into_owned();
                Ok(out.trim_end_matches('\n').to_string())
            }
        }
    }

    /// A word as one string (assignments, redirection targets): no field splitting.
    fn expand_joined(&mut self, f: &Frame, w: &Word, fds: Fds, subst_status: &mut Option<i32>) -> Result<String, Flow> {
        let mut s = String::new();
        for part in w {
            s.push_str(&self.part_value(f, part, fds, subst_status)?);
        }
        Ok(s)
    }

    /// A command word as fields: unquoted expansions are split at blanks, and vanish when empty.
    fn expand_fields(&mut self, f: &Frame, w: &Word, fds: Fds, subst_status: &mut Option<i32>) -> Result<Vec<String>, Flow> {
        let mut fields = Vec::new();
        let mut cur: Option<String> = None;
        for part in w {
            let value = self.part_value(f, part, fds, subst_status)?;
            let split = matches!(part, Part::Param { quoted: false, .. } | Part::Subst { quoted: false, .. });
            if !split {
                cur.get_or_insert_with(String::new).push_str(&value);
                continue;
            }
            let blank = |c: char| c == ' ' || c == '\t' || c == '\n';
            if value.starts_with(blank) {
                fields.extend(cur.take());
            }
            let pieces: Vec<&str> = value.split(blank).filter(|p| !p.is_empty()).collect();
            for (i, piece) in pieces.iter().enumerate() {
                cur.get_or_insert_with(String::new).push_str(piece);
                if i + 1 < pieces.len() {
                    fields.extend(cur.take());
                }
            }
            if value.ends_with(blank) {
                fields.extend(cur.take());
            }
        }
        fields.extend(cur);
        Ok(fields)
    }
}

/// A subshell's `exit` ends only the subshell; a refusal still ends the session.
fn in_subshell(s: Status) -> Status {
    match s {
        Err(Flow::Exit(n)) => Ok(n),
        other => other,
    }
}

fn redir_op(op: RedirOp) -> &'static str {
    match op {
        RedirOp::Out => ">",
        RedirOp::Append => ">>",
        RedirOp::In => "<",
        RedirOp::DupOut => ">&",
    }
}

/// A word as a message shows it: quoted when it is not plain.
fn show_word(w: &str) -> String {
    let plain = !w.is_empty() && w.chars().all(|c| c.is_ascii_alphanumeric() || "_-./:=,+@%".contains(c));
    match plain {
        true => w.to_string(),
        false => format!("'{}'", w.replace('\'', "'\\''")),
    }
}

#[cfg(test)]
mod tests;
