//! A directory standing for a control-plane host: the paths the runbooks touch, and stub tools
//! in `usr/local/bin` that act on the sandbox (crictl reports a container running while its
//! static pod manifest is in place, like the kubelet would).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

pub struct Sandbox {
    pub root: PathBuf,
}

fn write_exec(path: &Path, body: &str) {
    std::fs::write(path, body).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

impl Sandbox {
    /// Create the host tree under `root`.
    pub fn create(root: &Path, node: &str) -> Sandbox {
        let r = root.to_path_buf();
        for d in [
            "etc/kubernetes/manifests",
            "etc/kubernetes/static-pod-resources",
            "etc/machine-config-daemon",
            "tmp",
            "var/lib/etcd/member/snap",
            "var/lib/etcd/member/wal",
            "var/lib/kubelet/pki",
            "var/lib/ovn/etc",
            "usr/local/bin",
            "home/core/assets",
            "state",
        ] {
            std::fs::create_dir_all(r.join(d)).unwrap();
        }
        for m in ["etcd-pod.yaml", "kube-apiserver-pod.yaml", "kube-controller-manager-pod.yaml", "kube-scheduler-pod.yaml"] {
            std::fs::write(r.join("etc/kubernetes/manifests").join(m), format!("apiVersion: v1\nkind: Pod\nmetadata:\n  name: {m}\n"))
                .unwrap();
        }
        std::fs::write(r.join("var/lib/etcd/member/snap/db"), b"etcd bolt db of ").unwrap();
        std::fs::write(r.join("var/lib/etcd/member/wal/0000000000000000-0000000000000000.wal"), b"wal").unwrap();
        for f in ["kubelet-client-2022-04-28-11-24-09.pem", "kubelet-server-2022-04-28-11-24-15.pem"] {
            std::fs::write(r.join("var/lib/kubelet/pki").join(f), b"-----BEGIN CERTIFICATE-----\n").unwrap();
        }
        std::os::unix::fs::symlink("kubelet-client-2022-04-28-11-24-09.pem", r.join("var/lib/kubelet/pki/kubelet-client-current.pem"))
            .unwrap();
        std::fs::write(r.join("var/lib/kubelet/pki/README"), b"not a pem").unwrap();
        std::fs::write(r.join("var/lib/ovn/etc/ovnnb_db.db"), b"nb").unwrap();
        std::fs::write(r.join("var/lib/ovn/etc/ovnsb_db.db"), b"sb").unwrap();
        std::fs::write(
            r.join("etc/machine-config-daemon/currentconfig"),
            r#"{"apiVersion":"machineconfiguration.openshift.io/v1","kind":"MachineConfig","metadata":{"name":"rendered-master-27d33a83f8697c946eb6c876091a1af1","annotations":{"machineconfiguration.openshift.io/generated-by-controller-version":"9f2820819fcf1bf5a4b9162adb6fd685779f7cf4","machineconfiguration.openshift.io/release-image-version":"4.15.3"}}}"#,
        )
        .unwrap();
        std::fs::write(r.join("state/addresses"), "2: br-ex    inet 192.168.111.20/24 brd 192.168.111.255 scope global br-ex\\       valid_lft forever preferred_lft forever\n2: br-ex    inet 192.168.111.5/32 scope global br-ex\\       valid_lft forever preferred_lft forever\n").unwrap();
        std::fs::write(r.join("state/node"), node).unwrap();
        let bin = r.join("usr/local/bin");
        let root = r.display().to_string();
        // crictl: a container per manifest in place (operator/guard containers too, to be filtered).
        write_exec(
            &bin.join("crictl"),
            &format!(
                r#"#!/bin/sh
ROOT='{root}'
echo "$*" >> "$ROOT/state/crictl.calls"
if [ -e "$ROOT/state/slow" ]; then sleep "$(cat "$ROOT/state/slow")"; fi
[ "$1" = ps ] || {{ echo "unsupported: $*" >&2; exit 1; }}
name=""; while [ $# -gt 0 ]; do case "$1" in --name) name="$2"; shift;; esac; shift; done
printf '{{"containers":['
sep=""
for m in etcd kube-apiserver; do
  f="$ROOT/etc/kubernetes/manifests/$m-pod.yaml"
  [ -e "$f" ] || continue
  case "$m" in *"$name"*) ;; *) continue;; esac
  printf '%s{{"id":"%s0001","metadata":{{"name":"%s","attempt":0}},"state":"CONTAINER_RUNNING"}}' "$sep" "$m" "$m"; sep=","
  printf '%s{{"id":"%s0002","metadata":{{"name":"%s-operator","attempt":0}},"state":"CONTAINER_RUNNING"}}' "$sep" "$m" "$m"
done
printf ']}}\n'
"#
            ),
        );
        write_exec(
            &bin.join("systemctl"),
            &format!(
                r#"#!/bin/sh
ROOT='{root}'
echo "$*" >> "$ROOT/state/systemctl.calls"
if [ -e "$ROOT/state/kubelet-broken" ]; then echo "Failed to restart kubelet.service: Unit kubelet.service not found." >&2; exit 5; fi
"#
            ),
        );
        write_exec(
            &bin.join("ip"),
            &format!(
                r#"#!/bin/sh
ROOT='{root}'
echo "$*" >> "$ROOT/state/ip.calls"
A="$ROOT/state/addresses"
case "$*" in
  "-o address") cat "$A";;
  "-o address show dev "*) grep -F "$5 " "$A" || true;;
  "address del "*) addr="${{3%%/*}}"; if grep -qF " $addr/" "$A"; then grep -vF " $addr/" "$A" > "$A.new"; mv "$A.new" "$A"; else echo "RTNETLINK answers: Cannot assign requested address" >&2; exit 2; fi;;
  *) echo "ip stub: $*" >&2; exit 1;;
esac
"#
            ),
        );
        write_exec(&bin.join("shutdown"), &format!("#!/bin/sh\necho \"$*\" >> '{root}/state/shutdown.calls'\n"));
        // cluster-backup.sh: the two files the real script leaves, named by time.
        write_exec(
            &bin.join("cluster-backup.sh"),
            &format!(
                r#"#!/bin/sh
ROOT='{root}'
echo "$*" >> "$ROOT/state/backup.calls"
echo "HTTPS_PROXY=$HTTPS_PROXY" >> "$ROOT/state/backup.env"
[ -n "$1" ] || {{ echo "usage: cluster-backup.sh <dir>" >&2; exit 1; }}
# Behind a cluster-wide proxy there is no direct egress: fetching etcdctl's image needs it.
if [ -e "$ROOT/etc/mco/proxy.env" ] && [ -z "$HTTPS_PROXY" ]; then
  echo 'Error: initializing source docker://quay.io/openshift-release-dev/ocp-v4.0-art-dev: pinging container registry quay.io: Get "https://quay.io/v2/": dial tcp 3.216.152.103:443: i/o timeout' >&2
  exit 125
fi
mkdir -p "$1"
ts=$(date +%Y-%m-%d_%H%M%S)
ep=$(cat "$ROOT/state/etcd-endpoint" 2>/dev/null)
if [ -n "$ep" ]; then
  ETCDCTL_API=3 /usr/bin/etcdctl --endpoints="$ep" snapshot save "$1/snapshot_$ts.db" || exit 1
else
  head -c 4096 /dev/urandom > "$1/snapshot_$ts.db"
fi
tar -czf "$1/static_kuberesources_$ts.tar.gz" -C "$ROOT/etc/kubernetes" manifests
echo "snapshot db and kube resources are successfully saved to $1"
"#
            ),
        );
        write_exec(
            &bin.join("cluster-restore.sh"),
            &format!(
                r#"#!/bin/sh
ROOT='{root}'
echo "$*" >> "$ROOT/state/restore.calls"
echo "HTTPS_PROXY=$HTTPS_PROXY" >> "$ROOT/state/restore.env"
if [ -e "$ROOT/state/slow" ]; then sleep "$(cat "$ROOT/state/slow")"; fi
echo "...stopping etcd-pod.yaml"
"#
            ),
        );
        std::os::unix::fs::symlink("/usr/bin/etcdctl", bin.join("etcdctl")).unwrap();
        Sandbox { root: r }
    }

    pub fn path(&self, logical: &str) -> PathBuf {
        self.root.join(logical.trim_start_matches('/'))
    }

    /// What the scripts saw of the proxy environment, one line per run (`backup`, `restore`).
    pub fn env_seen(&self, script: &str) -> Vec<String> {
        std::fs::read_to_string(self.path(&format!("/state/{script}.env"))).unwrap_or_default().lines().map(str::to_string).collect()
    }

    pub fn calls(&self, tool: &str) -> Vec<String> {
        std::fs::read_to_string(self.path(&format!("/state/{tool}.calls"))).unwrap_or_default().lines().map(str::to_string).collect()
    }

    pub fn set_slow(&self, secs: Option<f32>) {
        let p = self.path("/state/slow");
        match secs {
            Some(s) => std::fs::write(p, format!("{s}")).unwrap(),
            None => {
                let _ = std::fs::remove_file(p);
            }
        }
    }
}
