//! The tools of a simulated host: each takes exactly the argument forms drctl's SSH adapter
//! renders, answers with the real tool's output format and exit status, and changes the host
//! through the world's own methods. Any other form refuses the session (exit 127).

use super::fs::{self, Kind};
use super::{Fds, Flow, Out, Session, Status};
use crate::legacy;
use crate::world::{Container, SimFile, MINUTE};
use drctl_workflows::ports::StaticPod;
use drctl_workflows::ports::{EtcdProbe, HostOutput, PortError};
use std::collections::BTreeMap;

type Env = BTreeMap<String, String>;

/// One run of a tool: its words, environment and descriptors, and whether it runs as root.
struct Call<'a> {
    argv: &'a [String],
    env: &'a Env,
    root: bool,
    fds: Fds,
}

impl Call<'_> {
    /// The arguments as `&str`, for matching forms.
    fn args(&self) -> Vec<&str> {
        self.argv[1..].iter().map(String::as_str).collect()
    }
}

/// The program `RemoveAddress` gives awk: the CIDR of address `a` from `ip -o address` lines.
const AWK_PICK_CIDR: &str = "{ split($4, p, \"/\"); if (p[1] == a) { print $4; exit } }";
/// Whether something listens on `$0` port `$1` (bash's `/dev/tcp`).
const BASH_TCP_PROBE: &str = "exec 3<>\"/dev/tcp/$0/$1\"";
/// Where sudo's secure_path looks (not /usr/local/bin).
const SUDO_PATH: &str = "/sbin:/bin:/usr/sbin:/usr/bin";

/// Tools every host has on its PATH.
const TOOLS: [&str; 29] = [
    "sudo",
    "test",
    "[",
    "mv",
    "find",
    "crictl",
    "ip",
    "awk",
    "systemctl",
    "openssl",
    "env",
    "sh",
    "timeout",
    "curl",
    "kill",
    "cat",
    "install",
    "tee",
    "sha256sum",
    "shutdown",
    "echo",
    "true",
    "false",
    "oc",
    "hostname",
    "printf",
    "grep",
    "ss",
    "head",
];

impl Session<'_> {
    /// Run a command that is not a shell builtin: resolve its word to a tool and run it.
    pub(super) fn external(&mut self, argv: &[String], env: &Env, root: bool, fds: Fds) -> Status {
        let name = argv[0].as_str();
        let tool = match name.contains('/') {
            true => self.tool_at(name)?,
            false if TOOLS.contains(&name) => name.to_string(),
            false => return Err(self.unsupported(argv)),
        };
        let c = Call { argv, env, root, fds };
        match tool.as_str() {
            "sudo" => self.sudo(&c),
            "test" | "[" => self.test(&c),
            "mv" => self.mv(&c),
            "find" => self.find(&c),
            "crictl" => self.crictl(&c),
            "ip" => self.ip(&c),
            "awk" => self.awk(&c),
            "systemctl" => self.systemctl(&c),
            "openssl" => self.openssl(&c),
            "env" => self.env(&c),
            "sh" => self.sh(&c),
            "timeout" => self.timeout(&c),
            "curl" => self.curl(&c),
            "kill" => self.kill(&c),
            "cat" => self.cat(&c),
            "install" => self.install(&c),
            "tee" => self.tee(&c),
            "sha256sum" => self.sha256sum(&c),
            "shutdown" => self.shutdown(&c),
            "echo" => self.echo(&c),
            "true" => Ok(0),
            "false" => Ok(1),
            "oc" => self.oc(&c),
            "cluster-backup.sh" => self.cluster_backup(&c),
            "cluster-restore.sh" => self.cluster_restore(&c),
            "etcdctl" => self.etcdctl(&c),
            "hostname" => self.hostname(&c),
            "printf" => self.printf(&c),
            "grep" => self.grep(&c),
            "ss" => self.ss(&c),
            "head" => self.head(&c),
            "etcd-snapshot-restore.sh" | "etcd-member-recover.sh" => self.legacy_script(&c),
            "tokenize-signer.sh" => self.tokenize_signer(&c),
            _ => Err(self.unsupported(argv)),
        }
    }

    /// A tool named by its path: only the ones OpenShift installs, where it installs them.
    fn tool_at(&mut self, path: &str) -> Result<String, Flow> {
        let installed = |p: &str| fs::CONTROL_PLANE_TOOLS.contains(&p) || fs::LEGACY_TOOLS.contains(&p);
        let exists = fs::canonical(path).filter(|p| installed(&p.path)).is_some_and(|p| self.is_file(&p.path));
        if exists {
            return Ok(fs::base_name(path).to_string());
        }
        self.say(Out::Buf(1), &format!("bash: {path}: No such file or directory"));
        Err(Flow::Abort)
    }

    // -----------------------------------------------------------------------------------------
    // The host's files
    // -----------------------------------------------------------------------------------------

    fn kind(&self, path: &str) -> Option<Kind> {
        let p = fs::canonical(path)?;
        let h = &self.world.hosts[&self.host];
        let k = *fs::tree(self.world, h).get(&p.path)?;
        (!p.dir_only || k == Kind::Dir).then_some(k)
    }

    fn is_file(&self, path: &str) -> bool {
        self.kind(path) == Some(Kind::File)
    }

    fn read(&self, path: &str) -> Vec<u8> {
        let h = &self.world.hosts[&self.host];
        fs::canonical(path).map(|p| fs::read(self.world, h, &p.path)).unwrap_or_default()
    }

    /// Whether `path` may be written (to be stored with [`Session::store`]): its canonical form,
    /// or the error the real tool reports. A path the world keeps as something other than a
    /// file refuses the session.
    pub(super) fn writable(&mut self, path: &str, root: bool, words: &[String]) -> Result<Result<String, String>, Flow> {
        let Some(p) = fs::canonical(path) else { return Err(self.unsupported(words)) };
        if fs::marker_at(&p.path).is_some() {
            return Ok(if root { Ok(p.path) } else { Err("Permission denied".into()) });
        }
        if fs::is_modelled(&p.path) {
            return Err(self.unsupported(words));
        }
        Ok(match (self.kind(fs::parent(&p.path)), self.kind(&p.path)) {
            (_, Some(Kind::Dir)) => Err("Is a directory".into()),
            (Some(Kind::Dir), _) => Ok(p.path),
            _ => Err("No such file or directory".into()),
        })
    }

    /// Write a file [`Session::writable`] allowed: a fence marker, or a file of the host.
    pub(super) fn store(&mut self, path: &str, bytes: &[u8]) {
        let host = self.host.clone();
        match fs::marker_at(path) {
            // The world keeps that the marker exists, not what it holds.
            Some(m) => {
                self.world.host_mut(&host).markers.insert(m.to_string());
            }
            None => {
                self.world.host_mut(&host).files.insert(path.to_string(), super::file_from_bytes(bytes));
            }
        }
    }

    fn fail(&mut self, c: &Call, code: i32, message: &str) -> Status {
        self.say(c.fds.err, message);
        Ok(code)
    }

    // -----------------------------------------------------------------------------------------
    // Privilege, environment, shells
    // -----------------------------------------------------------------------------------------

    /// `sudo [-n] [-E] CMD…`: CMD as root, with a reset environment unless `-E`.
    fn sudo(&mut self, c: &Call) -> Status {
        let mut rest = &c.argv[1..];
        let mut keep_env = false;
        while let Some(opt) = rest.first().filter(|o| o.starts_with('-')) {
            match opt.as_str() {
                "-n" => {}
                "-E" => keep_env = true,
                _ => return Err(self.unsupported(c.argv)),
            }
            rest = &rest[1..];
        }
        if rest.is_empty() {
            return Err(self.unsupported(c.argv));
        }
        let env = match keep_env {
            true => c.env.clone(),
            false => {
                [("PATH", SUDO_PATH), ("HOME", "/root"), ("USER", "root")].iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
            }
        };
        self.external(rest, &env, true, c.fds)
    }

    /// `env NAME=VALUE… CMD…`.
    fn env(&mut self, c: &Call) -> Status {
        let mut env = c.env.clone();
        let mut rest = &c.argv[1..];
        while let Some((k, v)) = rest.first().and_then(|a| a.split_once('=')).filter(|(k, _)| super::parse::is_name(k)) {
            env.insert(k.to_string(), v.to_string());
            rest = &rest[1..];
        }
        if rest.is_empty() || rest[0].starts_with('-') {
            return Err(self.unsupported(c.argv));
        }
        self.external(rest, &env, c.root, c.fds)
    }

    /// `sh -c SCRIPT [ARG0 ARGS…]`, interpreted by this same shell.
    fn sh(&mut self, c: &Call) -> Status {
        match &c.argv[1..] {
            [flag, script, args @ ..] if flag == "-c" => {
                let args = if args.is_empty() { vec!["sh".to_string()] } else { args.to_vec() };
                self.child_shell(script, args, c.env, c.root, c.fds)
            }
            _ => Err(self.unsupported(c.argv)),
        }
    }

    /// `timeout N bash -c 'exec 3<>"/dev/tcp/$0/$1"' ADDRESS PORT`: whether anything listens.
    /// Only etcd's ports answer (when a member runs there); nothing else is modelled.
    fn timeout(&mut self, c: &Call) -> Status {
        let ok = |n: &str| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit());
        let (address, port) = match c.args().as_slice() {
            [n, "bash", "-c", BASH_TCP_PROBE, address, port @ ("2379" | "2380")] if ok(n) => (address.to_string(), port.to_string()),
            _ => return Err(self.unsupported(c.argv)),
        };
        let known = self.world.hosts.values().any(|h| h.ip == address) || self.world.inventory_addresses.values().any(|a| *a == address);
        match self.world.probe_etcd(&address) {
            EtcdProbe::NoAnswer if known => {
                self.fail(c, 1, &format!("bash: connect: Connection refused\nbash: line 1: /dev/tcp/{address}/{port}: Connection refused"))
            }
            // Nobody at that address: nothing answers before the timeout.
            EtcdProbe::NoAnswer => Ok(124),
            _ => Ok(0),
        }
    }

    // -----------------------------------------------------------------------------------------
    // Small POSIX tools
    // -----------------------------------------------------------------------------------------

    fn echo(&mut self, c: &Call) -> Status {
        let (newline, words) = match c.argv.get(1).map(String::as_str) {
            Some("-n") => (false, &c.argv[2..]),
            _ => (true, &c.argv[1..]),
        };
        let mut line = words.join(" ");
        if newline {
            line.push('\n');
        }
        self.write(c.fds.out, line.as_bytes());
        Ok(0)
    }

    /// `test`/`[` with `-e -d -f -r PATH` and `-n -z STRING`.
    fn test(&mut self, c: &Call) -> Status {
        let mut args = c.args();
        if c.argv[0] == "[" && args.pop() != Some("]") {
            return self.fail(c, 2, "bash: [: missing `]'");
        }
        let truth = match args.as_slice() {
            ["-e", p] => self.kind(p).is_some(),
            ["-d", p] => self.kind(p) == Some(Kind::Dir),
            ["-f", p] => self.kind(p) == Some(Kind::File),
            ["-r", p] => self.kind(p).is_some() && (c.root || !fs::is_private(p)),
            ["-n", s] => !s.is_empty(),
            ["-z", s] => s.is_empty(),
            _ => return Err(self.unsupported(c.argv)),
        };
        Ok(if truth { 0 } else { 1 })
    }

    fn cat(&mut self, c: &Call) -> Status {
        let path = match c.args().as_slice() {
            [p] | ["--", p] => p.to_string(),
            _ => return Err(self.unsupported(c.argv)),
        };
        match self.kind(&path) {
            None => self.fail(c, 1, &format!("cat: {path}: No such file or directory")),
            Some(Kind::Dir) => self.fail(c, 1, &format!("cat: {path}: Is a directory")),
            Some(Kind::File) if !c.root && fs::is_private(&path) => self.fail(c, 1, &format!("cat: {path}: Permission denied")),
            Some(Kind::File) => {
                let bytes = self.read(&path);
                self.write(c.fds.out, &bytes);
                Ok(0)
            }
        }
    }

    /// `sha256sum [--] FILE`: `<hex>  FILE`.
    fn sha256sum(&mut self, c: &Call) -> Status {
        use sha2::{Digest, Sha256};
        let path = match c.args().as_slice() {
            [p] | ["--", p] => p.to_string(),
            _ => return Err(self.unsupported(c.argv)),
        };
        match self.kind(&path) {
            None => self.fail(c, 1, &format!("sha256sum: {path}: No such file or directory")),
            Some(Kind::Dir) => self.fail(c, 1, &format!("sha256sum: {path}: Is a directory")),
            Some(Kind::File) => {
                let sum = hex::encode(Sha256::digest(self.read(&path)));
                self.say(c.fds.out, &format!("{sum}  {path}"));
                Ok(0)
            }
        }
    }

    /// `tee [--] FILE`: stdin to FILE and stdout.
    fn tee(&mut self, c: &Call) -> Status {
        let path = match c.args().as_slice() {
            [p] | ["--", p] => p.to_string(),
            _ => return Err(self.unsupported(c.argv)),
        };
        let bytes = self.read_input(c.fds.input);
        self.write(c.fds.out, &bytes);
        if !bytes.is_empty() && self.world.faults.disk_full(&self.host, self.world.now) {
            return self.fail(c, 1, &format!("tee: {path}: No space left on device"));
        }
        match self.writable(&path, c.root, c.argv)? {
            Ok(p) => {
                self.store(&p, &bytes);
                Ok(0)
            }
            Err(e) => self.fail(c, 1, &format!("tee: {path}: {e}")),
        }
    }

    /// `kill -0 PID`: whether the process lives. The only processes a session can see are the
    /// restores left running, by the pid their `.started` marker holds.
    fn kill(&mut self, c: &Call) -> Status {
        let pid = match c.args().as_slice() {
            ["-0", pid] if !pid.is_empty() && pid.chars().all(|c| c.is_ascii_digit()) => pid.to_string(),
            _ => return Err(self.unsupported(c.argv)),
        };
        let running = self.world.hosts[&self.host].restore_running.as_ref().map(|r| fs::marker_pid(&format!("{}.started", r.fence)));
        match running.is_some_and(|p| p.to_string() == pid) {
            true => Ok(0),
            false => self.fail(c, 1, &format!("bash: kill: ({pid}) - No such process")),
        }
    }

    /// `install -d -m 0700 DIR` and `install -D -m 0600 /dev/null FILE` (a fence marker).
    fn install(&mut self, c: &Call) -> Status {
        match c.args().as_slice() {
            ["-d", "-m", "0700", dir] => self.install_dir(c, dir),
            ["-D", "-m", "0600", "/dev/null", file] if fs::canonical(file).is_some_and(|p| fs::marker_at(&p.path).is_some()) => {
                if !c.root {
                    return self.fail(c, 1, &format!("install: cannot create regular file '{file}': Permission denied"));
                }
                let p = fs::canonical(file).map(|p| p.path).unwrap_or_default();
                self.store(&p, &[]);
                Ok(0)
            }
            _ => Err(self.unsupported(c.argv)),
        }
    }

    fn install_dir(&mut self, c: &Call, dir: &str) -> Status {
        let Some(p) = fs::canonical(dir) else { return Err(self.unsupported(c.argv)) };
        match self.kind(&p.path) {
            Some(Kind::File) => return self.fail(c, 1, &format!("install: cannot create directory '{dir}': File exists")),
            // The fence directory is always there (the world keeps only the fences).
            _ if p.path == fs::FENCE_DIR => return Ok(0),
            _ if fs::is_modelled(&p.path) => return Err(self.unsupported(c.argv)),
            _ => {}
        }
        let host = self.host.clone();
        let _ = self.world.make_private_dir(&host, &p.path);
        Ok(0)
    }

    // -----------------------------------------------------------------------------------------
    // mv and find
    // -----------------------------------------------------------------------------------------

    /// `mv [-v] [-f] [--] SRC DEST`, DEST a directory or the new name.
    fn mv(&mut self, c: &Call) -> Status {
        let mut args = c.args();
        let mut verbose = false;
        while let Some(opt) = args.first().copied().filter(|a| a.starts_with('-')) {
            args.remove(0);
            match opt {
                "-v" => verbose = true,
                "-f" => {}
                "--" => break,
                _ => return Err(self.unsupported(c.argv)),
            }
        }
        let [src, dest] = args.as_slice() else { return Err(self.unsupported(c.argv)) };
        let (Some(s), Some(d)) = (fs::canonical(src), fs::canonical(dest)) else { return Err(self.unsupported(c.argv)) };
        if self.kind(src).is_none() {
            return self.fail(c, 1, &format!("mv: cannot stat '{src}': No such file or directory"));
        }
        let target = match self.kind(&d.path) {
            Some(Kind::Dir) => format!("{}/{}", d.path.trim_end_matches('/'), fs::base_name(&s.path)),
            _ => d.path.clone(),
        };
        if !c.root && (fs::is_modelled(&s.path) || fs::is_private(&s.path)) {
            return self.fail(c, 1, &format!("mv: cannot move '{src}' to '{target}': Permission denied"));
        }
        if let Err(message) = self.rename(&s.path, &target, c.argv)? {
            return self.fail(c, 1, &format!("mv: cannot move '{src}' to '{target}': {message}"));
        }
        if verbose {
            self.say(c.fds.out, &format!("renamed '{src}' -> '{target}'"));
        }
        Ok(0)
    }

    /// A rename the world models: a manifest out to /tmp or back, the etcd data directory
    /// aside, or a file of the host to a new name.
    fn rename(&mut self, src: &str, dest: &str, words: &[String]) -> Result<Result<(), String>, Flow> {
        let host = self.host.clone();
        if let (Some((p, aside)), Some((q, to_aside))) = (fs::manifest_at(src), fs::manifest_at(dest)) {
            if p == q && aside != to_aside {
                let _ = self.world.move_manifest(&host, &p, to_aside);
                return Ok(Ok(()));
            }
        }
        if src == fs::ETCD_DATA && dest == fs::ETCD_ASIDE {
            let _ = self.world.move_etcd_data_aside(&host);
            return Ok(Ok(()));
        }
        let generic = self.world.hosts[&host].files.contains_key(src) && !fs::is_modelled(dest);
        if !generic {
            return Err(self.unsupported(words));
        }
        match (self.kind(fs::parent(dest)), self.kind(dest)) {
            (_, Some(Kind::Dir)) => Ok(Err("Is a directory".into())),
            (Some(Kind::Dir), _) => {
                let h = self.world.host_mut(&host);
                if let Some(f) = h.files.remove(src) {
                    h.files.insert(dest.to_string(), f);
                }
                Ok(Ok(()))
            }
            _ => Ok(Err("No such file or directory".into())),
        }
    }

    /// `find DIR [-mindepth N] [-maxdepth N] [-name PAT] [[!] -type d|f] [-print] [-printf FMT]
    /// [-delete]`, at most one level deep.
    fn find(&mut self, c: &Call) -> Status {
        let Some(spec) = FindSpec::parse(&c.argv[1..]) else { return Err(self.unsupported(c.argv)) };
        let Some(dir) = fs::canonical(&spec.dir).filter(|_| self.kind(&spec.dir).is_some()) else {
            return self.fail(c, 1, &format!("find: '{}': No such file or directory", spec.dir));
        };
        let tree = fs::tree(self.world, &self.world.hosts[&self.host]);
        let mut entries = vec![(dir.path.clone(), spec.dir.clone(), 0)];
        let shown = spec.dir.trim_end_matches('/');
        for (p, _) in tree.iter().filter(|(p, _)| fs::parent(p) == dir.path && **p != dir.path) {
            entries.push((p.clone(), format!("{shown}/{}", fs::base_name(p)), 1));
        }
        let mut doomed = Vec::new();
        for (path, shown, depth) in entries {
            if depth < spec.mindepth || depth > spec.maxdepth {
                continue;
            }
            let kind = tree.get(&path).copied().unwrap_or(Kind::File);
            for pred in &spec.preds {
                let pass = match pred {
                    Pred::Name(pat) => glob(pat, fs::base_name(&path)),
                    Pred::Type(k, want) => (kind == *k) == *want,
                    Pred::Print => {
                        self.say(c.fds.out, &shown);
                        true
                    }
                    Pred::Printf(fmt) => {
                        self.write(c.fds.out, &printf(fmt, &path, &shown));
                        true
                    }
                    Pred::Delete => {
                        doomed.push(path.clone());
                        true
                    }
                };
                if !pass {
                    break;
                }
            }
        }
        if !doomed.is_empty() && !c.root {
            return self.fail(c, 1, &format!("find: cannot delete '{}': Permission denied", doomed[0]));
        }
        self.delete(&dir.path, &doomed, c.argv)?;
        Ok(0)
    }

    /// `find -delete` of what the world models as a whole: every kubelet certificate, or every
    /// OVN database of this host.
    fn delete(&mut self, dir: &str, doomed: &[String], words: &[String]) -> Result<(), Flow> {
        if doomed.is_empty() {
            return Ok(());
        }
        let tree = fs::tree(self.world, &self.world.hosts[&self.host]);
        let mut present: Vec<&String> = tree.iter().filter(|(p, k)| fs::parent(p) == dir && **k == Kind::File).map(|(p, _)| p).collect();
        present.sort();
        let mut all: Vec<&String> = doomed.iter().collect();
        all.sort();
        if present != all {
            return Err(self.unsupported(words));
        }
        let host = self.host.clone();
        let _ = match dir {
            fs::KUBELET_PKI => self.world.remove_kubelet_pki(&host),
            fs::OVN_DB_DIR => self.world.remove_ovn_databases(&host),
            fs::OVN_IC_DB_DIR => self.world.remove_ovn_ic_databases(&host),
            _ => return Err(self.unsupported(words)),
        };
        Ok(())
    }

    // -----------------------------------------------------------------------------------------
    // Node tools
    // -----------------------------------------------------------------------------------------

    /// `crictl ps --name NAME -o json`: the running containers whose name NAME matches.
    fn crictl(&mut self, c: &Call) -> Status {
        let name = match c.args().as_slice() {
            ["ps", "--name", name, "-o", "json"] => name.to_string(),
            ["ps", "--name", "etcd-member", "-q"] if self.world.legacy_etcd => return self.crictl_legacy_ps(c),
            ["exec", id, "/bin/sh", "-c", script] if self.world.legacy_etcd && *script == LEGACY_MEMBER_LIST => {
                let id = id.to_string();
                return self.crictl_legacy_member_list(c, &id);
            }
            _ => return Err(self.unsupported(c.argv)),
        };
        // crictl filters by regular expression; plain names are all the adapter sends.
        if name.chars().any(|ch| ".^$*+?()[]{}|\\".contains(ch)) {
            return Err(self.unsupported(c.argv));
        }
        if !c.root {
            return self.fail(
                c,
                1,
                "time=\"0\" level=fatal msg=\"validate service connection: dial unix /var/run/crio/crio.sock: connect: permission denied\"",
            );
        }
        let h = &self.world.hosts[&self.host];
        let running = h
            .containers
            .iter()
            .filter(|(p, st)| p.container().contains(&name) && matches!(st, Container::Running | Container::Stopping { .. }));
        let containers: Vec<serde_json::Value> =
            running.map(|(p, _)| container_json(&h.name, p.container(), self.world.installed_at.millis())).collect();
        let text = serde_json::to_string_pretty(&serde_json::json!({ "containers": containers })).unwrap_or_default();
        self.say(c.fds.out, &text);
        Ok(0)
    }

    /// `ip -o address [show dev DEV]` and `ip address del CIDR dev DEV`.
    fn ip(&mut self, c: &Call) -> Status {
        match c.args().as_slice() {
            ["-o", "address"] => self.ip_list(c, None),
            ["-o", "address", "show", "dev", dev] => self.ip_list(c, Some(dev.to_string())),
            ["address", "del", cidr, "dev", dev] => self.ip_del(c, cidr, dev),
            _ => Err(self.unsupported(c.argv)),
        }
    }

    fn ip_list(&mut self, c: &Call, dev: Option<String>) -> Status {
        let h = &self.world.hosts[&self.host];
        let mut devices: Vec<&str> = vec![];
        for (_, d) in &h.addresses {
            if !devices.contains(&d.as_str()) {
                devices.push(d);
            }
        }
        if let Some(d) = dev.as_deref().filter(|d| !devices.contains(d)) {
            return self.fail(c, 1, &format!("Device \"{d}\" does not exist."));
        }
        let mut out = String::new();
        for (addr, d) in h.addresses.iter().filter(|(_, d)| dev.as_deref().is_none_or(|x| x == d)) {
            let index = devices.iter().position(|x| x == d).unwrap_or(0) + 2;
            out.push_str(&ip_line(index, d, addr, self.world.vips.contains(addr)));
        }
        self.write(c.fds.out, out.as_bytes());
        Ok(0)
    }

    fn ip_del(&mut self, c: &Call, cidr: &str, dev: &str) -> Status {
        if !c.root {
            return self.fail(c, 2, "RTNETLINK answers: Operation not permitted");
        }
        let (bare, prefix) = match cidr.split_once('/') {
            Some((a, p)) => (a.to_string(), Some(p.to_string())),
            None => (cidr.to_string(), None),
        };
        let h = &self.world.hosts[&self.host];
        let vip = self.world.vips.contains(&bare);
        let present = h.addresses.iter().any(|(a, d)| *a == bare && d == dev);
        if !present || prefix.is_some_and(|p| p != prefix_len(&bare, vip).to_string()) {
            return self.fail(c, 2, "RTNETLINK answers: Cannot assign requested address");
        }
        let host = self.host.clone();
        let _ = self.world.remove_address(&host, &bare, dev);
        Ok(0)
    }

    /// `awk -v a=ADDRESS` with the one program the adapter gives it.
    fn awk(&mut self, c: &Call) -> Status {
        let wanted = match c.args().as_slice() {
            ["-v", var, AWK_PICK_CIDR] if var.starts_with("a=") => var[2..].to_string(),
            _ => return Err(self.unsupported(c.argv)),
        };
        let input = String::from_utf8_lossy(&self.read_input(c.fds.input)).into_owned();
        for line in input.lines() {
            let Some(field4) = line.split_whitespace().nth(3) else { continue };
            if field4.split('/').next() == Some(wanted.as_str()) {
                self.say(c.fds.out, field4);
                break;
            }
        }
        Ok(0)
    }

    /// `systemctl restart` of the kubelet, or of Open vSwitch (both its services).
    fn systemctl(&mut self, c: &Call) -> Status {
        let args = c.args();
        let ["restart", units @ ..] = args.as_slice() else { return Err(self.unsupported(c.argv)) };
        let mut units: Vec<&str> = units.iter().map(|u| u.strip_suffix(".service").unwrap_or(u)).collect();
        units.sort();
        let host = self.host.clone();
        if !c.root && !units.is_empty() {
            return self.fail(c, 1, &format!("Failed to restart {}.service: Access denied", units[0]));
        }
        match units.as_slice() {
            ["kubelet"] => drop(self.world.restart_kubelet(&host)),
            ["ovs-vswitchd", "ovsdb-server"] => self.world.restart_ovs(&host),
            _ => return Err(self.unsupported(c.argv)),
        }
        Ok(0)
    }

    /// `openssl x509 -noout -subject -nameopt RFC2253 -in PEM` of a kubelet certificate.
    fn openssl(&mut self, c: &Call) -> Status {
        let pem = match c.args().as_slice() {
            ["x509", "-noout", "-subject", "-nameopt", "RFC2253", "-in", pem @ (fs::KUBELET_CLIENT_PEM | fs::KUBELET_SERVER_PEM)] => {
                pem.to_string()
            }
            _ => return Err(self.unsupported(c.argv)),
        };
        if !self.is_file(&pem) || !c.root {
            let why = if c.root { "No such file or directory" } else { "Permission denied" };
            return self.fail(c, 1, &format!("Could not open file or uri for loading certificate from {pem}\n{why}"));
        }
        self.say(c.fds.out, &format!("subject=CN=system:node:{},O=system:nodes", self.host));
        Ok(0)
    }

    /// `shutdown -h MINUTES`.
    fn shutdown(&mut self, c: &Call) -> Status {
        let minutes = match c.args().as_slice() {
            ["-h", "now"] => Some(0),
            ["-h", m] => m.strip_prefix('+').unwrap_or(m).parse::<u32>().ok(),
            _ => None,
        };
        let Some(minutes) = minutes else { return Err(self.unsupported(c.argv)) };
        if !c.root {
            return self.fail(c, 1, "Failed to set wall message, ignoring: Interactive authentication required.\nCall to ScheduleShutdown failed: Access denied");
        }
        let host = self.host.clone();
        let _ = self.world.shutdown(&host, minutes);
        let at = self.world.now.plus(std::time::Duration::from_secs(60 * u64::from(minutes)));
        self.say(c.fds.err, &format!("Shutdown scheduled for {at}, use 'shutdown -c' to cancel."));
        Ok(0)
    }

    /// `curl -sS --max-time N --cacert CA --cert CRT --key KEY https://ADDRESS:2379/health`.
    fn curl(&mut self, c: &Call) -> Status {
        let args = c.args();
        let ["-sS", "--max-time", secs, "--cacert", ca, "--cert", cert, "--key", key, url] = args.as_slice() else {
            return Err(self.unsupported(c.argv));
        };
        let Some(address) = health_url_address(url).filter(|_| secs.parse::<u32>().is_ok()) else { return Err(self.unsupported(c.argv)) };
        let readable = |s: &Self, p: &str| s.is_file(p) && (c.root || !fs::is_private(p));
        if !readable(self, ca) {
            return self.fail(c, 77, &format!("curl: (77) error setting certificate file: {ca}"));
        }
        if !readable(self, cert) || !readable(self, key) {
            let message = format!(
                "curl: (58) could not load PEM client certificate from {cert}, OpenSSL error error:80000002:system library::No such \
                 file or directory, (no key found, wrong pass phrase, or wrong file format?)"
            );
            return self.fail(c, 58, &message);
        }
        match self.world.probe_etcd(&address) {
            EtcdProbe::Healthy => self.write(c.fds.out, br#"{"health":"true","reason":""}"#),
            EtcdProbe::Unhealthy(said) => self.write(c.fds.out, said.as_bytes()),
            EtcdProbe::NoAnswer => {
                return self.fail(
                    c,
                    7,
                    &format!("curl: (7) Failed to connect to {address} port 2379 after 0 ms: Couldn't connect to server"),
                );
            }
        }
        Ok(0)
    }

    // -----------------------------------------------------------------------------------------
    // OpenShift's tools
    // -----------------------------------------------------------------------------------------

    /// `oc --kubeconfig RECOVERY patch etcd cluster --type=merge -p '{"spec":{"forceRedeploymentReason":R}}'`.
    fn oc(&mut self, c: &Call) -> Status {
        let (kubeconfig, patch) = match c.args().as_slice() {
            ["--kubeconfig", k, "patch", "etcd", "cluster", "--type=merge", "-p", patch] => (k.to_string(), patch.to_string()),
            ["adm", "release", "info", "--image-for", name, REGISTRY_CONFIG] if self.world.legacy_etcd => {
                let name = name.to_string();
                return self.oc_release_image(c, &name);
            }
            ["create", "-f", legacy::SIGNER_MANIFEST] if self.world.legacy_etcd => return self.oc_create_signer(c),
            ["get", "pod", "-n", "openshift-config", "etcd-signer", "-o", "name"] if self.world.legacy_etcd => {
                return self.oc_get_signer(c)
            }
            _ => return Err(self.unsupported(c.argv)),
        };
        let Some(reason) = force_reason(&patch) else { return Err(self.unsupported(c.argv)) };
        if !self.is_file(&kubeconfig) || (!c.root && fs::is_private(&kubeconfig)) {
            let why = if c.root { "no such file or directory" } else { "permission denied" };
            return self.fail(c, 1, &format!("error: error loading config file \"{kubeconfig}\": open {kubeconfig}: {why}"));
        }
        if kubeconfig != fs::RECOVERY_KUBECONFIG {
            return Err(self.unsupported(c.argv));
        }
        let host = self.host.clone();
        match self.world.force_etcd_redeployment_locally(&host, &reason) {
            Ok(_) => {
                self.say(c.fds.out, "etcd.operator.openshift.io/cluster patched");
                Ok(0)
            }
            Err(e) => self.fail(c, 1, &port_message(&e)),
        }
    }

    /// `cluster-backup.sh DIR`.
    fn cluster_backup(&mut self, c: &Call) -> Status {
        let dir = match c.args().as_slice() {
            [dir] if fs::canonical(dir).is_some() => dir.to_string(),
            _ => return Err(self.unsupported(c.argv)),
        };
        if !c.root {
            return self.fail(c, 1, "cluster-backup.sh: this script must be run as root");
        }
        let host = self.host.clone();
        match self.world.run_backup(&host, &dir) {
            Ok(HostOutput::Backup { snapshot, .. }) => {
                let path = format!("{}/{snapshot}", dir.trim_end_matches('/'));
                self.say(c.fds.out, &format!("Snapshot saved at {path}"));
                if let Some(SimFile::Snapshot { status, .. }) = self.world.hosts[&host].files.get(&path) {
                    let line = snapshot_status_json(status);
                    self.say(c.fds.out, &line);
                }
                self.say(c.fds.out, &format!("snapshot db and kube resources are successfully saved to {dir}"));
                Ok(0)
            }
            Ok(_) => Ok(0),
            Err(e) => self.fail(c, 1, &port_message(&e)),
        }
    }

    /// `cluster-restore.sh DIR`: one `snapshot_*.db` and one `static_kuberesources_*.tar.gz`
    /// from DIR, a new single-member etcd cluster.
    fn cluster_restore(&mut self, c: &Call) -> Status {
        let dir = match c.args().as_slice() {
            [dir] if fs::canonical(dir).is_some() => dir.to_string(),
            _ => return Err(self.unsupported(c.argv)),
        };
        if !c.root {
            return self.fail(c, 1, "cluster-restore.sh: this script must be run as root");
        }
        let host = self.host.clone();
        self.world.pass_time(2 * MINUTE);
        match self.world.restore_snapshot(&host, &dir) {
            Ok(_) => {
                self.say(c.fds.out, "...stopping etcd-pod.yaml\n...stopping kube-apiserver-pod.yaml\n...starting restore-etcd static pod");
                Ok(0)
            }
            Err(e) => self.fail(c, 1, &e),
        }
    }

    /// `etcdctl snapshot status PATH -w json` (v3 API).
    fn etcdctl(&mut self, c: &Call) -> Status {
        let path = match c.args().as_slice() {
            ["snapshot", "status", path, "-w", "json"] => path.to_string(),
            _ => return Err(self.unsupported(c.argv)),
        };
        if c.env.get("ETCDCTL_API").is_some_and(|v| v != "3") {
            return Err(self.unsupported(c.argv));
        }
        self.say(c.fds.err, "Deprecated: Use `etcdutl snapshot status` instead.\n");
        let file = fs::canonical(&path).and_then(|p| self.world.hosts[&self.host].files.get(&p.path).cloned());
        match (self.kind(&path), file) {
            (None, _) => self.fail(c, 1, &format!("Error: stat {path}: no such file or directory")),
            (_, Some(SimFile::Snapshot { status, .. })) => {
                let line = snapshot_status_json(&status);
                self.say(c.fds.out, &line);
                Ok(0)
            }
            _ => self.fail(c, 1, &format!("Error: {path}: invalid database")),
        }
    }
}

/// The node's pull secret, which `oc adm release info` reads (root only).
const REGISTRY_CONFIG: &str = "--registry-config=/var/lib/kubelet/config.json";
/// The script the SSH adapter runs in the `etcd-member` container for `etcdctl member list`.
const LEGACY_MEMBER_LIST: &str = "export ETCDCTL_API=3 ETCDCTL_CACERT=/etc/ssl/etcd/ca.crt \
                           ETCDCTL_CERT=$(find /etc/ssl/ -name '*peer*crt') ETCDCTL_KEY=$(find /etc/ssl/ -name '*peer*key'); \
                           etcdctl member list -w json";

impl Session<'_> {
    // -----------------------------------------------------------------------------------------
    // OpenShift 4.1–4.3: the recovery scripts and what they need
    // -----------------------------------------------------------------------------------------

    /// `hostname`.
    fn hostname(&mut self, c: &Call) -> Status {
        if !c.args().is_empty() {
            return Err(self.unsupported(c.argv));
        }
        let name = self.host.clone();
        self.say(c.fds.out, &name);
        Ok(0)
    }

    /// `printf FORMAT ARG` with one `%s` and `\n` escapes: all the adapter sends.
    fn printf(&mut self, c: &Call) -> Status {
        let (format, arg) = match c.args().as_slice() {
            [f, a] if f.matches('%').count() == 1 && f.contains("%s") => (f.to_string(), a.to_string()),
            _ => return Err(self.unsupported(c.argv)),
        };
        let text = format.replacen("%s", &arg, 1).replace("\\n", "\n");
        self.write(c.fds.out, text.as_bytes());
        Ok(0)
    }

    /// `grep -E '^LITERAL' FILE`: the lines starting with LITERAL (exit 1 when none).
    fn grep(&mut self, c: &Call) -> Status {
        let (prefix, path) = match c.args().as_slice() {
            ["-E", p, f] if p.starts_with('^') && p[1..].chars().all(|ch| ch.is_ascii_alphanumeric() || ch == '_' || ch == '=') => {
                (p[1..].to_string(), f.to_string())
            }
            _ => return Err(self.unsupported(c.argv)),
        };
        match self.kind(&path) {
            Some(Kind::File) if c.root || !fs::is_private(&path) => {
                let text = String::from_utf8_lossy(&self.read(&path)).into_owned();
                let lines: Vec<&str> = text.lines().filter(|l| l.starts_with(&prefix)).collect();
                for l in &lines {
                    self.say(c.fds.out, l);
                }
                Ok(if lines.is_empty() { 1 } else { 0 })
            }
            Some(Kind::File) => self.fail(c, 2, &format!("grep: {path}: Permission denied")),
            _ => self.fail(c, 2, &format!("grep: {path}: No such file or directory")),
        }
    }

    /// `ss -ltn`: the TCP ports listening on this host that the world models (etcd, the API
    /// server, the 4.1–4.3 etcd signer).
    fn ss(&mut self, c: &Call) -> Status {
        if c.args().as_slice() != ["-ltn"] {
            return Err(self.unsupported(c.argv));
        }
        let h = &self.world.hosts[&self.host];
        let running = |p: StaticPod| h.containers.get(&p) == Some(&Container::Running);
        let mut ports = vec![];
        if running(StaticPod::Etcd) {
            ports.extend(["2379", "2380"]);
        }
        if running(StaticPod::KubeApiServer) {
            ports.push("6443");
        }
        if self.world.signer_listening_on(&self.host) {
            ports.push("9943");
        }
        let mut out = "State  Recv-Q Send-Q Local Address:Port Peer Address:Port\n".to_string();
        for p in ports {
            out.push_str(&format!("LISTEN 0      128    *:{p}             *:*\n"));
        }
        self.write(c.fds.out, out.as_bytes());
        Ok(0)
    }

    /// `head -n 1` of its input.
    fn head(&mut self, c: &Call) -> Status {
        if c.args().as_slice() != ["-n", "1"] {
            return Err(self.unsupported(c.argv));
        }
        let input = String::from_utf8_lossy(&self.read_input(c.fds.input)).into_owned();
        if let Some(first) = input.lines().next() {
            self.say(c.fds.out, first);
        }
        Ok(0)
    }

    /// `crictl ps --name etcd-member -q`: the running etcd-member container's id.
    fn crictl_legacy_ps(&mut self, c: &Call) -> Status {
        if !c.root {
            return self.fail(c, 1, "time=\"0\" level=fatal msg=\"connect: permission denied\"");
        }
        if self.world.hosts[&self.host].containers.get(&StaticPod::Etcd) == Some(&Container::Running) {
            let id = legacy_container_id(&self.host);
            self.say(c.fds.out, &id);
        }
        Ok(0)
    }

    /// `crictl exec ID /bin/sh -c '… etcdctl member list -w json'` in the etcd-member container.
    fn crictl_legacy_member_list(&mut self, c: &Call, id: &str) -> Status {
        let running = self.world.hosts[&self.host].containers.get(&StaticPod::Etcd) == Some(&Container::Running);
        if !c.root || !running || id != legacy_container_id(&self.host) {
            return self.fail(c, 1, &format!("time=\"0\" level=fatal msg=\"execing command in container: container {id} is not running\""));
        }
        let host = self.host.clone();
        match self.world.legacy_member_list(&host) {
            Ok(HostOutput::Members(list)) => {
                let text = crate::pod_exec::members_json(&list).to_string();
                self.say(c.fds.out, &text);
                Ok(0)
            }
            Ok(_) => Ok(0),
            Err(e) => self.fail(c, 1, &port_message(&e)),
        }
    }

    /// `oc adm release info --image-for NAME --registry-config=…` as root.
    fn oc_release_image(&mut self, c: &Call, name: &str) -> Status {
        if !c.root {
            return self.fail(c, 1, "error: open /var/lib/kubelet/config.json: permission denied");
        }
        let host = self.host.clone();
        match self.world.legacy_release_image(&host, name) {
            Ok(image) => {
                self.say(c.fds.out, &image);
                Ok(0)
            }
            Err(e) => self.fail(c, 1, &port_message(&e)),
        }
    }

    /// `oc create -f` of the signer pod `tokenize-signer.sh` rendered.
    fn oc_create_signer(&mut self, c: &Call) -> Status {
        let host = self.host.clone();
        match self.world.legacy_create_signer(&host) {
            Ok(()) => {
                self.say(c.fds.out, "pod/etcd-signer created");
                Ok(0)
            }
            Err(e) => self.fail(c, 1, &port_message(&e)),
        }
    }

    /// `oc get pod -n openshift-config etcd-signer -o name`.
    fn oc_get_signer(&mut self, c: &Call) -> Status {
        let host = self.host.clone();
        if let Err(e) = self.world.legacy_release_image(&host, "cli") {
            return self.fail(c, 1, &port_message(&e));
        }
        match self.world.api().etcd_signer.is_some() {
            true => {
                self.say(c.fds.out, "pod/etcd-signer");
                Ok(0)
            }
            false => self.fail(c, 1, "Error from server (NotFound): pods \"etcd-signer\" not found"),
        }
    }

    /// `tokenize-signer.sh HOSTNAME`, as root, with `KUBE_ETCD_SIGNER_SERVER` exported.
    fn tokenize_signer(&mut self, c: &Call) -> Status {
        let hostname = match c.args().as_slice() {
            [h] => h.to_string(),
            _ => return Err(self.unsupported(c.argv)),
        };
        if !c.root {
            return self.fail(c, 1, "This script must be run as root");
        }
        if c.env.get("KUBE_ETCD_SIGNER_SERVER").is_none_or(|v| v.is_empty()) {
            return self.fail(c, 1, "tokenize-signer.sh: KUBE_ETCD_SIGNER_SERVER: Need to set KUBE_ETCD_SIGNER_SERVER");
        }
        let host = self.host.clone();
        self.world.legacy_tokenize_signer(&host, &hostname);
        self.say(c.fds.out, "Populating template /usr/local/share/openshift-recovery/template/kube-etcd-cert-signer.yaml.template");
        self.say(c.fds.out, "Tokenized template now ready: ./assets/manifests/kube-etcd-cert-signer.yaml");
        Ok(0)
    }

    /// `etcd-snapshot-restore.sh DIR INITIAL_CLUSTER` and `etcd-member-recover.sh IP NAME`, as
    /// root (the recover script with its two images exported).
    fn legacy_script(&mut self, c: &Call) -> Status {
        use drctl_workflows::ports::LegacyScript;
        let script = match (fs::base_name(&c.argv[0]), c.args().as_slice()) {
            ("etcd-snapshot-restore.sh", [dir, initial]) if fs::canonical(dir).is_some() => {
                LegacyScript::SnapshotRestore { dir: dir.to_string(), initial_cluster: initial.to_string() }
            }
            ("etcd-member-recover.sh", [ip, name]) => {
                LegacyScript::MemberRecover { signer_ip: ip.to_string(), member_name: name.to_string() }
            }
            _ => return Err(self.unsupported(c.argv)),
        };
        if !c.root {
            return self.fail(c, 1, "This script must be run as root");
        }
        if matches!(script, LegacyScript::MemberRecover { .. }) {
            for var in ["SETUP_ETCD_ENVIRONMENT", "KUBE_CLIENT_AGENT"] {
                if c.env.get(var).is_none_or(|v| v.is_empty()) {
                    return self.fail(c, 1, &format!("etcd-member-recover.sh: {var}: Need to set {var}"));
                }
            }
        }
        let host = self.host.clone();
        match self.world.legacy_script(&host, &script) {
            Ok(()) => {
                self.say(c.fds.out, "Starting static pods..\n..starting etcd-member.yaml\nStarting kubelet..");
                Ok(0)
            }
            Err(e) => self.fail(c, 1, &port_message(&e)),
        }
    }
}

/// The id crictl shows for a host's etcd-member container.
fn legacy_container_id(host: &str) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(format!("container {host} etcd-member").as_bytes()))
}

/// How a failed world operation shows on the tool's stderr.
fn port_message(e: &PortError) -> String {
    match e {
        PortError::Transient(m) | PortError::NotFound(m) | PortError::Permanent(m) => m.clone(),
    }
}

fn snapshot_status_json(s: &drctl_workflows::ports::SnapshotStatus) -> String {
    serde_json::json!({ "hash": s.hash, "revision": s.revision, "totalKey": s.total_key, "totalSize": s.total_size }).to_string()
}

/// The reason of the only patch the adapter sends: `{"spec":{"forceRedeploymentReason":R}}`.
fn force_reason(patch: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(patch).ok()?;
    let spec = v.as_object().filter(|o| o.len() == 1)?.get("spec")?.as_object().filter(|o| o.len() == 1)?;
    spec.get("forceRedeploymentReason")?.as_str().map(str::to_string)
}

/// The address in `https://ADDRESS:2379/health` (`[…]` around an IPv6 address).
fn health_url_address(url: &str) -> Option<String> {
    let host = url.strip_prefix("https://")?.strip_suffix(":2379/health")?;
    let bare = match host.strip_prefix('[') {
        Some(v6) => v6.strip_suffix(']').filter(|a| a.contains(':'))?,
        None => Some(host).filter(|a| !a.contains(':'))?,
    };
    let ok = !bare.is_empty() && bare.chars().all(|ch| ch.is_ascii_hexdigit() || ch == '.' || ch == ':');
    ok.then(|| bare.to_string())
}

/// One container as `crictl ps -o json` prints it.
fn container_json(host: &str, name: &str, created_ms: u64) -> serde_json::Value {
    use sha2::{Digest, Sha256};
    let id = hex::encode(Sha256::digest(format!("container {host} {name}").as_bytes()));
    let sandbox = hex::encode(Sha256::digest(format!("sandbox {host} {name}").as_bytes()));
    let namespace = format!("openshift-{}", if name == "keepalived" { "kni-infra" } else { name });
    serde_json::json!({
        "id": id,
        "podSandboxId": sandbox,
        "metadata": { "name": name, "attempt": 0 },
        "image": { "image": format!("quay.io/openshift-release-dev/ocp-v4.0-art-dev@sha256:{}", &id[..64.min(id.len())]), "annotations": {} },
        "imageRef": format!("quay.io/openshift-release-dev/ocp-v4.0-art-dev@sha256:{sandbox}"),
        "state": "CONTAINER_RUNNING",
        "createdAt": (u128::from(created_ms) * 1_000_000).to_string(),
        "labels": {
            "io.kubernetes.container.name": name,
            "io.kubernetes.pod.name": format!("{name}-{host}"),
            "io.kubernetes.pod.namespace": namespace,
        },
        "annotations": {},
    })
}

/// The prefix length of an address: a VIP is a host route, else the node's subnet.
fn prefix_len(addr: &str, vip: bool) -> u8 {
    match (addr.contains(':'), vip) {
        (true, true) => 128,
        (true, false) => 64,
        (false, true) => 32,
        (false, false) => 24,
    }
}

/// One line of `ip -o address`, as iproute2 prints it.
fn ip_line(index: usize, dev: &str, addr: &str, vip: bool) -> String {
    let tail = "\\       valid_lft forever preferred_lft forever\n";
    let prefix = prefix_len(addr, vip);
    if addr.contains(':') {
        return format!("{index}: {dev}    inet6 {addr}/{prefix} scope global noprefixroute {tail}");
    }
    let brd = addr.parse::<std::net::Ipv4Addr>().ok().filter(|_| prefix < 32).map(|a| {
        let host_bits = u32::MAX >> prefix;
        std::net::Ipv4Addr::from(u32::from(a) | host_bits)
    });
    match brd {
        Some(b) => format!("{index}: {dev}    inet {addr}/{prefix} brd {b} scope global noprefixroute {dev}{tail}"),
        None => format!("{index}: {dev}    inet {addr}/{prefix} scope global {dev}{tail}"),
    }
}

/// `find` expressions the shell knows.
#[derive(Debug)]
enum Pred {
    Name(String),
    /// `-type K`, or `! -type K` when the flag is false.
    Type(Kind, bool),
    Print,
    Printf(String),
    Delete,
}

#[derive(Debug)]
struct FindSpec {
    dir: String,
    mindepth: u32,
    maxdepth: u32,
    preds: Vec<Pred>,
}

impl FindSpec {
    fn parse(args: &[String]) -> Option<FindSpec> {
        let (dir, mut rest) = args.split_first()?;
        if dir.starts_with('-') || dir == "!" {
            return None;
        }
        let mut spec = FindSpec { dir: dir.clone(), mindepth: 0, maxdepth: u32::MAX, preds: vec![] };
        while let Some((w, tail)) = rest.split_first() {
            let (value, after) = match tail.split_first() {
                Some((v, a)) => (Some(v.as_str()), a),
                None => (None, tail),
            };
            let mut took_value = true;
            match (w.as_str(), value) {
                ("-mindepth", Some(n @ ("0" | "1"))) => spec.mindepth = n.parse().ok()?,
                ("-maxdepth", Some(n @ ("0" | "1"))) => spec.maxdepth = n.parse().ok()?,
                ("-name", Some(pat)) if !pat.contains('[') && !pat.contains('\\') => spec.preds.push(Pred::Name(pat.to_string())),
                ("-type", Some(t)) => spec.preds.push(Pred::Type(type_kind(t)?, true)),
                ("-printf", Some(fmt)) => spec.preds.push(Pred::Printf(fmt.to_string())),
                ("!", Some("-type")) => {
                    let (t, after_t) = after.split_first()?;
                    spec.preds.push(Pred::Type(type_kind(t)?, false));
                    rest = after_t;
                    continue;
                }
                ("-print", _) => {
                    spec.preds.push(Pred::Print);
                    took_value = false;
                }
                ("-delete", _) => {
                    spec.preds.push(Pred::Delete);
                    took_value = false;
                }
                _ => return None,
            }
            rest = if took_value { after } else { tail };
        }
        // Without a depth limit find would descend: not modelled.
        (spec.maxdepth <= 1 && spec.preds.iter().all(|p| !matches!(p, Pred::Printf(f) if printf_ok(f).is_none()))).then_some(spec)
    }
}

fn type_kind(t: &str) -> Option<Kind> {
    match t {
        "d" => Some(Kind::Dir),
        "f" => Some(Kind::File),
        _ => None,
    }
}

/// The `-printf` directives the shell knows: `%f` `%p` `%%` and the escapes `\n` `\0` `\\`.
fn printf_ok(fmt: &str) -> Option<()> {
    let mut cs = fmt.chars();
    while let Some(ch) = cs.next() {
        match ch {
            '%' => matches!(cs.next(), Some('f' | 'p' | '%')).then_some(())?,
            '\\' => matches!(cs.next(), Some('n' | '0' | '\\')).then_some(())?,
            _ => {}
        }
    }
    Some(())
}

fn printf(fmt: &str, path: &str, shown: &str) -> Vec<u8> {
    let mut out = String::new();
    let mut cs = fmt.chars();
    while let Some(ch) = cs.next() {
        match (ch, if ch == '%' || ch == '\\' { cs.next() } else { None }) {
            ('%', Some('f')) => out.push_str(fs::base_name(path)),
            ('%', Some('p')) => out.push_str(shown),
            ('\\', Some('n')) => out.push('\n'),
            ('\\', Some('0')) => out.push('\0'),
            (_, Some(other)) => out.push(other),
            (c, None) => out.push(c),
        }
    }
    out.into_bytes()
}

/// Shell pattern match with `*` and `?` (what `find -name` does with them).
fn glob(pat: &str, name: &str) -> bool {
    fn at(p: &[char], n: &[char]) -> bool {
        match p.split_first() {
            None => n.is_empty(),
            Some(('*', rest)) => (0..=n.len()).any(|i| at(rest, &n[i..])),
            Some(('?', rest)) => !n.is_empty() && at(rest, &n[1..]),
            Some((c, rest)) => n.first() == Some(c) && at(rest, &n[1..]),
        }
    }
    let p: Vec<char> = pat.chars().collect();
    let n: Vec<char> = name.chars().collect();
    at(&p, &n)
}
