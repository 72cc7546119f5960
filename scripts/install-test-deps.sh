#!/bin/sh
# Install the real software the adapter tests run against, from Debian packages:
#   etcd-server (/usr/bin/etcd), etcd-client (/usr/bin/etcdctl),
#   openssh-server (/usr/sbin/sshd, with openssh-client's ssh and ssh-keygen), strace,
#   chromium (headless, for the run report's rendering test),
#   python3 with venv (python3-venv), for:
# and, from PyPI, moto[server] (an S3-compatible server for the S3 adapter's tests) into the
# virtualenv $DRCTL_TEST_VENV (default /opt/drctl-test-venv); the tests run
# $DRCTL_TEST_VENV/bin/moto_server and honour the same variable.
# Idempotent: installs only what is missing (one `apt-get update` first, only then).
# The tests start their own sshd and etcd on 127.0.0.1: packages are installed without
# starting their system services, and an sshd/etcd service this script caused to run is stopped.
set -eu

say() { printf 'install-test-deps: %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

# Run as root, or through passwordless sudo.
if [ "$(id -u)" -eq 0 ]; then
    SUDO=""
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    SUDO="sudo -n"
else
    die "must run as root or with passwordless sudo (apt-get needs it)"
fi

# binary:package pairs
NEEDED="/usr/bin/etcd:etcd-server /usr/bin/etcdctl:etcd-client /usr/sbin/sshd:openssh-server /usr/bin/ssh:openssh-client /usr/bin/ssh-keygen:openssh-client /usr/bin/strace:strace /usr/bin/chromium:chromium"
VENV=${DRCTL_TEST_VENV:-/opt/drctl-test-venv}
MOTO_SPEC='moto[server]'

missing=""
for pair in $NEEDED; do
    bin=${pair%%:*}
    pkg=${pair#*:}
    if [ ! -x "$bin" ]; then
        case " $missing " in *" $pkg "*) ;; *) missing="$missing $pkg" ;; esac
    fi
done
# The virtualenv needs python3 with its venv and ensurepip modules (Debian splits them out).
moto_ok() { [ -x "$VENV/bin/moto_server" ] && "$VENV/bin/moto_server" --help >/dev/null 2>&1; }
if ! moto_ok && ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
    missing="$missing python3-venv"
fi

if [ -z "$missing" ]; then
    say "all present: etcd $(/usr/bin/etcd --version 2>/dev/null | sed -n 's/^etcd Version: //p'), $(/usr/bin/ssh -V 2>&1)"
else
    command -v apt-get >/dev/null 2>&1 || die "missing packages:$missing, and no apt-get to install them (Debian/Ubuntu expected)"
    say "installing:$missing"

    # Were the services running before? Those we leave alone; ones the install starts, we stop.
    ssh_was_up=no
    etcd_was_up=no
    pgrep -x sshd >/dev/null 2>&1 && ssh_was_up=yes
    pgrep -x etcd >/dev/null 2>&1 && etcd_was_up=yes

    # Keep maintainer scripts from starting services (policy-rc.d, exit 101 = action forbidden),
    # unless the host already has its own policy.
    policy=/usr/sbin/policy-rc.d
    own_policy=no
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$policy" >/dev/null || die "cannot write $policy"
        $SUDO chmod 0755 "$policy"
        own_policy=yes
    fi
    cleanup() { if [ "$own_policy" = yes ]; then $SUDO rm -f "$policy"; own_policy=no; fi; }
    trap cleanup EXIT
    trap 'cleanup; exit 130' INT TERM

    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -q || die "apt-get update failed"
    # shellcheck disable=SC2086
    $SUDO apt-get install -y -q --no-install-recommends $missing || die "apt-get install$missing failed"

    stop_service() { # $1 = unit name
        if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
            $SUDO systemctl disable --now "$1" >/dev/null 2>&1 || true
        elif command -v service >/dev/null 2>&1; then
            $SUDO service "$1" stop >/dev/null 2>&1 || true
        fi
    }
    if [ "$ssh_was_up" = no ] && pgrep -x sshd >/dev/null 2>&1; then
        say "stopping the sshd service the install started (tests run their own)"
        stop_service ssh
    fi
    if [ "$etcd_was_up" = no ] && pgrep -x etcd >/dev/null 2>&1; then
        say "stopping the etcd service the install started (tests run their own)"
        stop_service etcd
    fi
fi

# Verify, loudly.
for pair in $NEEDED; do
    bin=${pair%%:*}
    [ -x "$bin" ] || die "$bin is still missing after installing ${pair#*:}"
done
/usr/bin/etcd --version >/dev/null 2>&1 || die "/usr/bin/etcd does not run"
/usr/bin/etcdctl version >/dev/null 2>&1 || die "/usr/bin/etcdctl does not run"
# sshd needs its privilege separation directory to start (the tests run it directly).
[ -d /run/sshd ] || $SUDO install -d -m 0755 /run/sshd || die "cannot create /run/sshd"

# moto[server] from PyPI into its own virtualenv (never the system Python's packages).
if moto_ok; then
    say "moto present: $("$VENV/bin/python" -m pip show moto 2>/dev/null | sed -n 's/^Version: /moto /p') in $VENV"
else
    say "installing $MOTO_SPEC into $VENV"
    if [ ! -x "$VENV/bin/python" ]; then
        $SUDO python3 -m venv "$VENV" || die "cannot create the virtualenv $VENV (python3 -m venv)"
    fi
    $SUDO "$VENV/bin/python" -m pip install --quiet "$MOTO_SPEC" || die "pip install $MOTO_SPEC into $VENV failed"
    moto_ok || die "$VENV/bin/moto_server does not run after installing $MOTO_SPEC"
fi

# A system sshd on port 22 is not ours to keep running: say so if one is there.
if pgrep -x sshd >/dev/null 2>&1 && command -v ss >/dev/null 2>&1 && ss -Hltn 'sport = :22' 2>/dev/null | grep -q .; then
    say "note: an sshd not started by this script listens on port 22; left alone. The tests run their own sshd on a free port."
fi
say "ok"
