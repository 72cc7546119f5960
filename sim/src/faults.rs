//! Fault schedules: what goes wrong during a simulated run, and when, relative to the run's
//! start. A schedule is plain data: derived from a seed ([`FaultSchedule::from_seed`]), printed
//! in a short text form that parses back ([`FaultSchedule::parse`], `Display`), applied to a
//! world ([`FaultSchedule::apply_to`]) and simplified for shrinking
//! ([`FaultSchedule::simplifications`]).
//!
//! Text form, faults separated by `,` (`none` for no faults), times as `90s`, `40m`, `2h`,
//! `1h30m`, `250ms`:
//!
//! | fault | meaning |
//! |---|---|
//! | `api-outage@40m+2h` | the API server unreachable from 40 min for 2 h |
//! | `api-error(503)@5m+10m:30%` | 30 % of API requests fail with HTTP 503 (429, 500, 503, 504; a 504 may still apply a write) |
//! | `api-slow@0s+1h:x20` | API responses take 20 times as long |
//! | `ssh-down(master-1)@0s+5m` | SSH to master-1 fails: no route to host |
//! | `ssh-drop(master-0)@10m+5m:40%` | 40 % of SSH commands lose their connection mid-command (applied or not, at random) |
//! | `etcd-crash(master-0)@1h+3m` | the etcd member on master-0 is down, then restarts |
//! | `etcd-error(no-leader)@1h+2m:50%` | half the requests reaching etcd fail with `etcdserver: no leader` (or `timed-out`) |
//! | `disk-full(master-0)@0s+10m` | writing a backup on master-0 fails: no space left on device |
//! | `slow-ops@0s+2h:x3` | machine provisioning, pod starts, revision rollouts take 3 times as long |
//! | `crash-before#12`, `crash-after#12+30s` | the runner dies at step execution 12, before its effect or after it but before the commit; restarts 30 s later |
//! | `crash-after(RunRestore)`, `crash-before(WaitNodes#2)` | the same, at the first (second) step from that state |
//! | `gate(start)+20m`, `reject(start)+5m` | gate `start` is not pre-approved: approved (rejected) 20 min after the run stops at it |
//! | `abort@30m`, `abort(QuorumGuardOff)` | a person asks to abort 30 min into the run, or when it first steps from that state |
//!
//! JSON (the serde form of [`FaultSchedule`]) is accepted too.

use crate::world::*;
use drctl_runtime::clock::Timestamp;
use drctl_runtime::rng::DetRng;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::time::Duration;

/// Milliseconds from the run's start.
pub type Ms = u64;

/// Where the runner crashes.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CrashPoint {
    /// The n-th step execution of the run (0-based, counting executions that crashed).
    Step(u32),
    /// The `nth` (1-based) step execution from a state of this name (argument stripped).
    State { name: String, nth: u32 },
}

/// One fault, at times relative to the run's start.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum Fault {
    ApiOutage {
        at: Ms,
        dur: Ms,
    },
    ApiError {
        code: u16,
        at: Ms,
        dur: Ms,
        percent: u8,
    },
    ApiSlow {
        at: Ms,
        dur: Ms,
        factor_percent: u32,
    },
    SshDown {
        host: String,
        at: Ms,
        dur: Ms,
    },
    SshDrop {
        host: String,
        at: Ms,
        dur: Ms,
        percent: u8,
    },
    EtcdCrash {
        host: String,
        at: Ms,
        dur: Ms,
    },
    EtcdError {
        error: EtcdErrorKind,
        at: Ms,
        dur: Ms,
        percent: u8,
    },
    DiskFull {
        host: String,
        at: Ms,
        dur: Ms,
    },
    SlowOps {
        at: Ms,
        dur: Ms,
        factor_percent: u32,
    },
    /// Object-store requests fail with `503 SlowDown`, `percent` of them.
    S3Error {
        at: Ms,
        dur: Ms,
        percent: u8,
    },
    /// The runner process dies at `point`: before the step's effect (`after_effect` false) or
    /// after it but before its result is committed; it restarts `restart` ms later.
    Crash {
        point: CrashPoint,
        after_effect: bool,
        restart: Ms,
    },
    /// `gate` is not pre-approved: decided `after` ms after the run stops at it.
    Gate {
        gate: String,
        after: Ms,
        reject: bool,
    },
    Abort {
        at: Ms,
    },
    /// A person asks to abort when the run first steps from this state (argument stripped).
    AbortIn {
        state: String,
    },
}

/// The kinds of fault, as named on the command line (`--allow api-outage,crash-after`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FaultKind {
    ApiOutage,
    ApiError,
    ApiSlow,
    SshDown,
    SshDrop,
    EtcdCrash,
    EtcdError,
    DiskFull,
    SlowOps,
    CrashBefore,
    CrashAfter,
    GateWait,
    GateReject,
    Abort,
    S3Error,
}

impl FaultKind {
    pub const ALL: [FaultKind; 15] = [
        FaultKind::ApiOutage,
        FaultKind::ApiError,
        FaultKind::ApiSlow,
        FaultKind::SshDown,
        FaultKind::SshDrop,
        FaultKind::EtcdCrash,
        FaultKind::EtcdError,
        FaultKind::DiskFull,
        FaultKind::SlowOps,
        FaultKind::CrashBefore,
        FaultKind::CrashAfter,
        FaultKind::GateWait,
        FaultKind::GateReject,
        FaultKind::Abort,
        FaultKind::S3Error,
    ];

    pub fn name(self) -> &'static str {
        match self {
            FaultKind::ApiOutage => "api-outage",
            FaultKind::ApiError => "api-error",
            FaultKind::ApiSlow => "api-slow",
            FaultKind::SshDown => "ssh-down",
            FaultKind::SshDrop => "ssh-drop",
            FaultKind::EtcdCrash => "etcd-crash",
            FaultKind::EtcdError => "etcd-error",
            FaultKind::DiskFull => "disk-full",
            FaultKind::SlowOps => "slow-ops",
            FaultKind::CrashBefore => "crash-before",
            FaultKind::CrashAfter => "crash-after",
            FaultKind::GateWait => "gate",
            FaultKind::GateReject => "reject",
            FaultKind::Abort => "abort",
            FaultKind::S3Error => "s3-error",
        }
    }

    pub fn parse(s: &str) -> Result<FaultKind, String> {
        FaultKind::ALL.into_iter().find(|k| k.name() == s.trim()).ok_or_else(|| {
            format!("unknown fault kind '{s}'; known: {}", FaultKind::ALL.iter().map(|k| k.name()).collect::<Vec<_>>().join(", "))
        })
    }

    /// A comma-separated list of kinds; `all` for every kind.
    pub fn parse_list(s: &str) -> Result<Vec<FaultKind>, String> {
        if s.trim() == "all" {
            return Ok(FaultKind::ALL.to_vec());
        }
        s.split(',').filter(|p| !p.trim().is_empty()).map(FaultKind::parse).collect()
    }
}

impl fmt::Display for FaultKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl Fault {
    pub fn kind(&self) -> FaultKind {
        match self {
            Fault::ApiOutage { .. } => FaultKind::ApiOutage,
            Fault::ApiError { .. } => FaultKind::ApiError,
            Fault::ApiSlow { .. } => FaultKind::ApiSlow,
            Fault::SshDown { .. } => FaultKind::SshDown,
            Fault::SshDrop { .. } => FaultKind::SshDrop,
            Fault::EtcdCrash { .. } => FaultKind::EtcdCrash,
            Fault::EtcdError { .. } => FaultKind::EtcdError,
            Fault::DiskFull { .. } => FaultKind::DiskFull,
            Fault::SlowOps { .. } => FaultKind::SlowOps,
            Fault::S3Error { .. } => FaultKind::S3Error,
            Fault::Crash { after_effect: false, .. } => FaultKind::CrashBefore,
            Fault::Crash { after_effect: true, .. } => FaultKind::CrashAfter,
            Fault::Gate { reject: false, .. } => FaultKind::GateWait,
            Fault::Gate { reject: true, .. } => FaultKind::GateReject,
            Fault::Abort { .. } | Fault::AbortIn { .. } => FaultKind::Abort,
        }
    }

    /// The time window the fault covers, relative to the run's start, if it is one.
    pub fn window(&self) -> Option<(Ms, Ms)> {
        match self {
            Fault::ApiOutage { at, dur }
            | Fault::ApiError { at, dur, .. }
            | Fault::ApiSlow { at, dur, .. }
            | Fault::SshDown { at, dur, .. }
            | Fault::SshDrop { at, dur, .. }
            | Fault::EtcdCrash { at, dur, .. }
            | Fault::EtcdError { at, dur, .. }
            | Fault::DiskFull { at, dur, .. }
            | Fault::SlowOps { at, dur, .. }
            | Fault::S3Error { at, dur, .. } => Some((*at, at.saturating_add(*dur))),
            _ => None,
        }
    }
}

/// Faults for one run, times relative to its start.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct FaultSchedule {
    pub faults: Vec<Fault>,
}

/// What a schedule may refer to: the scenario's hosts, the procedure's gates and states, and
/// how long a run usually takes (faults are placed within it).
#[derive(Clone, Debug)]
pub struct ScheduleContext {
    pub hosts: Vec<String>,
    pub gates: Vec<String>,
    /// State names (arguments stripped) a crash may be placed at.
    pub states: Vec<String>,
    pub horizon: Duration,
    /// When the run does most of its SSH work (SSH faults and half the API outages start in it).
    pub ssh_phase: (Duration, Duration),
    /// Step executions a crash by index may be placed at.
    pub max_step: u32,
    /// The procedure writes to an object store (object-store faults apply).
    pub object_store: bool,
}

impl Default for ScheduleContext {
    fn default() -> Self {
        ScheduleContext {
            hosts: (0..3).map(|i| format!("master-{i}")).collect(),
            gates: vec!["start".into()],
            states: vec![],
            horizon: Duration::from_secs(3 * 3600),
            ssh_phase: (Duration::ZERO, Duration::from_secs(20 * 60)),
            max_step: 300,
            object_store: false,
        }
    }
}

fn window(at: Ms, dur: Ms, now: Timestamp) -> Window {
    let from = now.plus(Duration::from_millis(at));
    Window { from, until: from.plus(Duration::from_millis(dur)) }
}

impl FaultSchedule {
    pub fn none() -> FaultSchedule {
        FaultSchedule::default()
    }

    /// The schedule a seed stands for, over the default context (see [`ScheduleContext`]).
    pub fn from_seed(seed: u64, allowed: &[FaultKind]) -> FaultSchedule {
        FaultSchedule::generate(&mut DetRng::derive(seed, b"fault-schedule"), allowed, &ScheduleContext::default())
    }

    /// Draw a schedule: up to four faults of the allowed kinds, placed within the horizon.
    pub fn generate(rng: &mut DetRng, allowed: &[FaultKind], cx: &ScheduleContext) -> FaultSchedule {
        let kinds: Vec<FaultKind> = allowed
            .iter()
            .copied()
            .filter(|k| match k {
                FaultKind::GateWait | FaultKind::GateReject => !cx.gates.is_empty(),
                FaultKind::SshDown | FaultKind::SshDrop | FaultKind::EtcdCrash | FaultKind::DiskFull => !cx.hosts.is_empty(),
                FaultKind::S3Error => cx.object_store,
                _ => true,
            })
            .collect();
        let mut faults = Vec::new();
        if kinds.is_empty() {
            return FaultSchedule { faults };
        }
        // 0: 10%, 1: 30%, 2: 30%, 3: 20%, 4: 10%.
        let n = match rng.range(0, 9) {
            0 => 0,
            1..=3 => 1,
            4..=6 => 2,
            7 | 8 => 3,
            _ => 4,
        };
        let horizon = cx.horizon.as_millis() as u64;
        for _ in 0..n {
            let kind = kinds[rng.range(0, kinds.len() as u64 - 1) as usize];
            faults.push(Self::draw(rng, kind, cx, horizon));
        }
        FaultSchedule { faults }
    }

    fn draw(rng: &mut DetRng, kind: FaultKind, cx: &ScheduleContext, horizon: Ms) -> Fault {
        const S: u64 = SECOND;
        let at = |rng: &mut DetRng| rng.range(0, horizon) / S * S;
        // Where the SSH work of a run usually is.
        let (lo, hi) = (cx.ssh_phase.0.as_millis() as u64, cx.ssh_phase.1.as_millis() as u64);
        let early = |rng: &mut DetRng| rng.range(lo, hi.max(lo)) / S * S;
        // Seconds to hours, most of them short.
        let dur = |rng: &mut DetRng, lo: u64, hi: u64| {
            let d = match rng.range(0, 9) {
                0..=4 => rng.range(lo, lo.max(hi / 20)),
                5..=7 => rng.range(lo, lo.max(hi / 4)),
                _ => rng.range(lo, hi),
            };
            (d / S).max(1) * S
        };
        let pick = |rng: &mut DetRng, v: &[String]| v[rng.range(0, v.len() as u64 - 1) as usize].clone();
        let percent = |rng: &mut DetRng| rng.range(10, 80) as u8;
        match kind {
            FaultKind::ApiOutage => {
                let at = if rng.chance(1, 2) { early(rng) } else { at(rng) };
                Fault::ApiOutage { at, dur: dur(rng, 5 * S, 3 * HOUR) }
            }
            FaultKind::ApiError => {
                let code = [429, 500, 503, 504][rng.range(0, 3) as usize];
                Fault::ApiError { code, at: at(rng), dur: dur(rng, MINUTE, HOUR), percent: percent(rng) }
            }
            FaultKind::ApiSlow => {
                Fault::ApiSlow { at: at(rng), dur: dur(rng, MINUTE, HOUR), factor_percent: rng.range(2, 50) as u32 * 100 }
            }
            // Most SSH work happens early in a run.
            FaultKind::SshDown => Fault::SshDown { host: pick(rng, &cx.hosts), at: early(rng), dur: dur(rng, 10 * S, HOUR) },
            FaultKind::SshDrop => {
                Fault::SshDrop { host: pick(rng, &cx.hosts), at: early(rng), dur: dur(rng, MINUTE, HOUR), percent: rng.range(20, 80) as u8 }
            }
            FaultKind::EtcdCrash => Fault::EtcdCrash { host: pick(rng, &cx.hosts), at: at(rng), dur: dur(rng, 10 * S, 20 * MINUTE) },
            FaultKind::EtcdError => {
                let error = if rng.chance(1, 2) { EtcdErrorKind::NoLeader } else { EtcdErrorKind::RequestTimedOut };
                Fault::EtcdError { error, at: at(rng), dur: dur(rng, 30 * S, 20 * MINUTE), percent: percent(rng) }
            }
            FaultKind::DiskFull => Fault::DiskFull { host: pick(rng, &cx.hosts), at: at(rng), dur: dur(rng, MINUTE, HOUR) },
            FaultKind::SlowOps => Fault::SlowOps {
                at: rng.range(0, horizon / 2) / S * S,
                dur: dur(rng, 10 * MINUTE, 3 * HOUR),
                factor_percent: rng.range(15, 50) as u32 * 10,
            },
            FaultKind::CrashBefore | FaultKind::CrashAfter => {
                let point = match cx.states.is_empty() || rng.chance(1, 3) {
                    true => CrashPoint::Step(rng.range(0, cx.max_step as u64) as u32),
                    false => CrashPoint::State { name: pick(rng, &cx.states), nth: rng.range(1, 2) as u32 },
                };
                let restart = if rng.chance(1, 2) { 0 } else { rng.range(5, 300) * S };
                Fault::Crash { point, after_effect: kind == FaultKind::CrashAfter, restart }
            }
            FaultKind::GateWait | FaultKind::GateReject => {
                Fault::Gate { gate: pick(rng, &cx.gates), after: dur(rng, MINUTE, 4 * HOUR), reject: kind == FaultKind::GateReject }
            }
            FaultKind::S3Error => Fault::S3Error { at: at(rng), dur: dur(rng, 10 * S, HOUR), percent: percent(rng) },
            FaultKind::Abort => match cx.states.is_empty() || rng.chance(1, 2) {
                true => Fault::Abort { at: at(rng) },
                false => Fault::AbortIn { state: pick(rng, &cx.states) },
            },
        }
    }

    /// Put the windowed faults into `w`, relative to its current time (the run's start).
    /// Crashes, gates and aborts are the driver's business (see `crate::chaos`).
    pub fn apply_to(&self, w: &mut World) {
        let now = w.now;
        let f = &mut w.faults;
        for fault in &self.faults {
            match fault {
                Fault::ApiOutage { at, dur } => f.api_outages.push(window(*at, *dur, now)),
                Fault::ApiError { code, at, dur, percent } => {
                    f.api_errors.push(ApiErrors { window: window(*at, *dur, now), code: *code, percent: *percent })
                }
                Fault::ApiSlow { at, dur, factor_percent } => {
                    f.api_slow.push(Slowdown { window: window(*at, *dur, now), factor_percent: *factor_percent })
                }
                Fault::SshDown { host, at, dur } => f.ssh_outages.entry(host.clone()).or_default().push(window(*at, *dur, now)),
                Fault::SshDrop { host, at, dur, percent } => {
                    f.ssh_drops.push(SshDrops { host: host.clone(), window: window(*at, *dur, now), percent: *percent })
                }
                Fault::EtcdCrash { host, at, dur } => f.etcd_down.push(HostWindow { host: host.clone(), window: window(*at, *dur, now) }),
                Fault::EtcdError { error, at, dur, percent } => {
                    f.etcd_errors.push(EtcdErrors { window: window(*at, *dur, now), kind: *error, percent: *percent })
                }
                Fault::DiskFull { host, at, dur } => {
                    f.disk_full_windows.push(HostWindow { host: host.clone(), window: window(*at, *dur, now) })
                }
                Fault::SlowOps { at, dur, factor_percent } => {
                    f.slow_ops.push(Slowdown { window: window(*at, *dur, now), factor_percent: *factor_percent })
                }
                Fault::S3Error { at, dur, percent } => f.s3_errors.push(S3Errors { window: window(*at, *dur, now), percent: *percent }),
                Fault::Crash { .. } | Fault::Gate { .. } | Fault::Abort { .. } | Fault::AbortIn { .. } => {}
            }
        }
        w.touch();
    }

    /// When the last fault window ends, relative to the run's start (0 without windows).
    pub fn windows_end(&self) -> Ms {
        self.faults.iter().filter_map(Fault::window).map(|(_, e)| e).max().unwrap_or(0)
    }

    /// Simpler schedules, most promising first: each fault dropped, then each fault made
    /// smaller (shorter, earlier, milder, restarting at once). For shrinking.
    pub fn simplifications(&self) -> Vec<FaultSchedule> {
        let mut out = Vec::new();
        for i in 0..self.faults.len() {
            let mut s = self.clone();
            s.faults.remove(i);
            out.push(s);
        }
        for (i, f) in self.faults.iter().enumerate() {
            for g in simpler(f) {
                let mut s = self.clone();
                s.faults[i] = g;
                out.push(s);
            }
        }
        out
    }

    /// Parse the text form (or JSON).
    pub fn parse(s: &str) -> Result<FaultSchedule, String> {
        let t = s.trim();
        if t.starts_with('{') || t.starts_with('[') {
            if let Ok(v) = serde_json::from_str::<FaultSchedule>(t) {
                return Ok(v);
            }
            return serde_json::from_str::<Vec<Fault>>(t)
                .map(|faults| FaultSchedule { faults })
                .map_err(|e| format!("fault schedule JSON: {e}"));
        }
        if t.is_empty() || t == "none" {
            return Ok(FaultSchedule::none());
        }
        t.split(',')
            .map(|p| parse_fault(p.trim()).map_err(|e| format!("fault '{}': {e}", p.trim())))
            .collect::<Result<Vec<_>, _>>()
            .map(|faults| FaultSchedule { faults })
    }
}

fn half(v: u64) -> u64 {
    v / 2 / SECOND * SECOND
}

fn simpler(f: &Fault) -> Vec<Fault> {
    let mut out: Vec<Fault> = Vec::new();
    if let Some((at, end)) = f.window() {
        let dur = end - at;
        if dur >= 2 * SECOND {
            out.push(with_window(f, at, half(dur)));
        }
        if at >= SECOND {
            out.push(with_window(f, half(at), dur));
        }
    }
    match f {
        Fault::Crash { point, after_effect, restart } => {
            if *restart > 0 {
                out.push(Fault::Crash { point: point.clone(), after_effect: *after_effect, restart: 0 });
            }
            if let CrashPoint::State { name, nth } = point {
                if *nth > 1 {
                    out.push(Fault::Crash {
                        point: CrashPoint::State { name: name.clone(), nth: 1 },
                        after_effect: *after_effect,
                        restart: *restart,
                    });
                }
            }
        }
        Fault::Gate { gate, after, reject } if *after >= 2 * SECOND => {
            out.push(Fault::Gate { gate: gate.clone(), after: half(*after), reject: *reject })
        }
        Fault::Abort { at } if *at >= SECOND => out.push(Fault::Abort { at: half(*at) }),
        _ => {}
    }
    out.retain(|g| g != f);
    out
}

/// `f` with its window moved to `at` and `dur` long.
fn with_window(f: &Fault, new_at: Ms, new_dur: Ms) -> Fault {
    let mut g = f.clone();
    match &mut g {
        Fault::ApiOutage { at, dur }
        | Fault::ApiError { at, dur, .. }
        | Fault::ApiSlow { at, dur, .. }
        | Fault::SshDown { at, dur, .. }
        | Fault::SshDrop { at, dur, .. }
        | Fault::EtcdCrash { at, dur, .. }
        | Fault::EtcdError { at, dur, .. }
        | Fault::DiskFull { at, dur, .. }
        | Fault::SlowOps { at, dur, .. }
        | Fault::S3Error { at, dur, .. } => {
            *at = new_at;
            *dur = new_dur;
        }
        _ => {}
    }
    g
}

// ---------------------------------------------------------------------------------------------
// Text form
// ---------------------------------------------------------------------------------------------

/// `2h`, `40m`, `90s`, `250ms`: the largest unit that is exact.
pub fn fmt_ms(ms: u64) -> String {
    match ms {
        0 => "0s".into(),
        m if m % HOUR == 0 => format!("{}h", m / HOUR),
        m if m % MINUTE == 0 => format!("{}m", m / MINUTE),
        m if m % SECOND == 0 => format!("{}s", m / SECOND),
        m => format!("{m}ms"),
    }
}

/// `1h30m`, `90s`, `250ms`, `2h`.
pub fn parse_ms(s: &str) -> Result<u64, String> {
    let s = s.trim();
    if s.is_empty() {
        return Err("empty duration".into());
    }
    let mut total = 0u64;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
        if digits == 0 {
            return Err(format!("duration '{s}' must look like 90s, 40m, 2h, 1h30m or 250ms"));
        }
        let n: u64 = rest[..digits].parse().map_err(|e| format!("duration '{s}': {e}"))?;
        rest = &rest[digits..];
        let (unit, len) = if rest.starts_with("ms") {
            (1, 2)
        } else if rest.starts_with('h') {
            (HOUR, 1)
        } else if rest.starts_with('m') {
            (MINUTE, 1)
        } else if rest.starts_with('s') {
            (SECOND, 1)
        } else {
            return Err(format!("duration '{s}' needs a unit (ms, s, m, h)"));
        };
        total = total.checked_add(n.checked_mul(unit).ok_or("duration overflows")?).ok_or("duration overflows")?;
        rest = &rest[len..];
    }
    Ok(total)
}

fn fmt_factor(percent: u32) -> String {
    match percent % 100 {
        0 => format!("x{}", percent / 100),
        r if r % 10 == 0 => format!("x{}.{}", percent / 100, r / 10),
        r => format!("x{}.{r:02}", percent / 100),
    }
}

fn parse_factor(s: &str) -> Result<u32, String> {
    let v = s.strip_prefix('x').ok_or_else(|| format!("factor '{s}' must look like x3 or x2.5"))?;
    let (int, frac) = v.split_once('.').unwrap_or((v, ""));
    let int: u32 = int.parse().map_err(|_| format!("factor '{s}' must look like x3 or x2.5"))?;
    let frac: u32 = match frac.len() {
        0 => 0,
        1 => frac.parse::<u32>().map_err(|_| format!("bad factor '{s}'"))? * 10,
        2 => frac.parse().map_err(|_| format!("bad factor '{s}'"))?,
        _ => return Err(format!("factor '{s}': at most two decimals")),
    };
    match int.checked_mul(100).and_then(|p| p.checked_add(frac)) {
        Some(p) if p < 100 => Err(format!("factor '{s}' must be at least x1")),
        Some(p) if p <= 100_000 => Ok(p),
        _ => Err(format!("factor '{s}' is too large: at most x1000")),
    }
}

fn parse_percent(s: &str) -> Result<u8, String> {
    let v = s.strip_suffix('%').ok_or_else(|| format!("rate '{s}' must look like 30%"))?;
    match v.parse::<u8>() {
        Ok(p) if (1..=100).contains(&p) => Ok(p),
        _ => Err(format!("rate '{s}' must be 1% to 100%")),
    }
}

fn etcd_error_name(k: EtcdErrorKind) -> &'static str {
    match k {
        EtcdErrorKind::NoLeader => "no-leader",
        EtcdErrorKind::RequestTimedOut => "timed-out",
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let w = |at: &u64, dur: &u64| format!("@{}+{}", fmt_ms(*at), fmt_ms(*dur));
        match self {
            Fault::ApiOutage { at, dur } => write!(f, "api-outage{}", w(at, dur)),
            Fault::ApiError { code, at, dur, percent } => write!(f, "api-error({code}){}:{percent}%", w(at, dur)),
            Fault::ApiSlow { at, dur, factor_percent } => write!(f, "api-slow{}:{}", w(at, dur), fmt_factor(*factor_percent)),
            Fault::SshDown { host, at, dur } => write!(f, "ssh-down({host}){}", w(at, dur)),
            Fault::SshDrop { host, at, dur, percent } => write!(f, "ssh-drop({host}){}:{percent}%", w(at, dur)),
            Fault::EtcdCrash { host, at, dur } => write!(f, "etcd-crash({host}){}", w(at, dur)),
            Fault::EtcdError { error, at, dur, percent } => write!(f, "etcd-error({}){}:{percent}%", etcd_error_name(*error), w(at, dur)),
            Fault::DiskFull { host, at, dur } => write!(f, "disk-full({host}){}", w(at, dur)),
            Fault::SlowOps { at, dur, factor_percent } => write!(f, "slow-ops{}:{}", w(at, dur), fmt_factor(*factor_percent)),
            Fault::S3Error { at, dur, percent } => write!(f, "s3-error{}:{percent}%", w(at, dur)),
            Fault::Crash { point, after_effect, restart } => {
                write!(f, "crash-{}", if *after_effect { "after" } else { "before" })?;
                match point {
                    CrashPoint::Step(n) => write!(f, "#{n}")?,
                    CrashPoint::State { name, nth: 1 } => write!(f, "({name})")?,
                    CrashPoint::State { name, nth } => write!(f, "({name}#{nth})")?,
                }
                if *restart > 0 {
                    write!(f, "+{}", fmt_ms(*restart))?;
                }
                Ok(())
            }
            Fault::Gate { gate, after, reject } => write!(f, "{}({gate})+{}", if *reject { "reject" } else { "gate" }, fmt_ms(*after)),
            Fault::Abort { at } => write!(f, "abort@{}", fmt_ms(*at)),
            Fault::AbortIn { state } => write!(f, "abort({state})"),
        }
    }
}

impl fmt::Display for FaultSchedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.faults.is_empty() {
            return f.write_str("none");
        }
        let parts: Vec<String> = self.faults.iter().map(|x| x.to_string()).collect();
        f.write_str(&parts.join(","))
    }
}

impl std::str::FromStr for FaultSchedule {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        FaultSchedule::parse(s)
    }
}

/// `name(arg)@at+dur:param` into its parts.
struct Parts<'a> {
    name: &'a str,
    arg: Option<&'a str>,
    at: Option<&'a str>,
    plus: Option<&'a str>,
    param: Option<&'a str>,
    index: Option<&'a str>,
}

fn split_parts(s: &str) -> Result<Parts<'_>, String> {
    let name_end = s.find(['(', '@', '+', ':', '#']).unwrap_or(s.len());
    let name = &s[..name_end];
    let mut rest = &s[name_end..];
    let mut p = Parts { name, arg: None, at: None, plus: None, param: None, index: None };
    if let Some(r) = rest.strip_prefix('(') {
        let close = r.find(')').ok_or("missing ')'")?;
        p.arg = Some(&r[..close]);
        rest = &r[close + 1..];
    }
    if let Some(r) = rest.strip_prefix('#') {
        let end = r.find(['+', ':']).unwrap_or(r.len());
        p.index = Some(&r[..end]);
        rest = &r[end..];
    }
    if let Some(r) = rest.strip_prefix('@') {
        let end = r.find(['+', ':']).unwrap_or(r.len());
        p.at = Some(&r[..end]);
        rest = &r[end..];
    }
    if let Some(r) = rest.strip_prefix('+') {
        let end = r.find(':').unwrap_or(r.len());
        p.plus = Some(&r[..end]);
        rest = &r[end..];
    }
    if let Some(r) = rest.strip_prefix(':') {
        p.param = Some(r);
        rest = "";
    }
    if !rest.is_empty() {
        return Err(format!("unexpected '{rest}'"));
    }
    Ok(p)
}

fn parse_fault(s: &str) -> Result<Fault, String> {
    let p = split_parts(s)?;
    let need = |v: Option<&str>, what: &str| v.ok_or_else(|| format!("{} needs {what}", p.name)).map(str::to_string);
    let at = || need(p.at, "@START").and_then(|v| parse_ms(&v));
    let dur = || need(p.plus, "+DURATION").and_then(|v| parse_ms(&v));
    let host = || need(p.arg, "(HOST)");
    let pct = || need(p.param, ":RATE%").and_then(|v| parse_percent(&v));
    let factor = || need(p.param, ":xFACTOR").and_then(|v| parse_factor(&v));
    let kind = FaultKind::parse(p.name)?;
    Ok(match kind {
        FaultKind::ApiOutage => Fault::ApiOutage { at: at()?, dur: dur()? },
        FaultKind::ApiError => {
            let code: u16 = need(p.arg, "(CODE)")?.parse().map_err(|_| "the HTTP status must be a number".to_string())?;
            if ![429, 500, 503, 504].contains(&code) {
                return Err(format!("api-error({code}): the simulator injects 429, 500, 503 or 504"));
            }
            Fault::ApiError { code, at: at()?, dur: dur()?, percent: pct()? }
        }
        FaultKind::ApiSlow => Fault::ApiSlow { at: at()?, dur: dur()?, factor_percent: factor()? },
        FaultKind::SshDown => Fault::SshDown { host: host()?, at: at()?, dur: dur()? },
        FaultKind::SshDrop => Fault::SshDrop { host: host()?, at: at()?, dur: dur()?, percent: pct()? },
        FaultKind::EtcdCrash => Fault::EtcdCrash { host: host()?, at: at()?, dur: dur()? },
        FaultKind::EtcdError => {
            let error = match need(p.arg, "(no-leader|timed-out)")?.as_str() {
                "no-leader" => EtcdErrorKind::NoLeader,
                "timed-out" => EtcdErrorKind::RequestTimedOut,
                other => return Err(format!("etcd-error({other}): use no-leader or timed-out")),
            };
            Fault::EtcdError { error, at: at()?, dur: dur()?, percent: pct()? }
        }
        FaultKind::DiskFull => Fault::DiskFull { host: host()?, at: at()?, dur: dur()? },
        FaultKind::SlowOps => Fault::SlowOps { at: at()?, dur: dur()?, factor_percent: factor()? },
        FaultKind::S3Error => Fault::S3Error { at: at()?, dur: dur()?, percent: pct()? },
        FaultKind::CrashBefore | FaultKind::CrashAfter => {
            let point = match (p.index, p.arg) {
                (Some(n), None) => CrashPoint::Step(n.parse().map_err(|_| format!("step index '{n}' must be a number"))?),
                (None, Some(a)) => match a.split_once('#') {
                    Some((name, nth)) => CrashPoint::State {
                        name: name.to_string(),
                        nth: nth.parse().ok().filter(|n| *n >= 1).ok_or_else(|| format!("occurrence '{nth}' must be 1 or more"))?,
                    },
                    None => CrashPoint::State { name: a.to_string(), nth: 1 },
                },
                _ => return Err(format!("{} needs #STEP or (STATE)", p.name)),
            };
            let restart = p.plus.map(parse_ms).transpose()?.unwrap_or(0);
            Fault::Crash { point, after_effect: kind == FaultKind::CrashAfter, restart }
        }
        FaultKind::GateWait | FaultKind::GateReject => {
            Fault::Gate { gate: need(p.arg, "(GATE)")?, after: dur()?, reject: kind == FaultKind::GateReject }
        }
        FaultKind::Abort => match (p.arg, p.at) {
            (Some(state), None) => Fault::AbortIn { state: state.to_string() },
            (None, Some(_)) => Fault::Abort { at: at()? },
            _ => return Err("abort needs @START or (STATE)".into()),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_form_round_trips() {
        let text = "api-outage@40m+2h,api-error(504)@5m+10m:30%,api-slow@0s+1h:x20,ssh-down(master-1)@0s+5m,\
                    ssh-drop(master-0)@10m+5m:40%,etcd-crash(master-0)@1h+3m,etcd-error(no-leader)@1h+2m:50%,\
                    disk-full(master-0)@0s+10m,slow-ops@0s+2h:x2.5,crash-before#12,crash-after#3+30s,\
                    crash-after(RunRestore),crash-before(WaitNodes#2),gate(start)+20m,reject(start)+5m,abort@30m,\
                    abort(QuorumGuardOff)";
        let s = FaultSchedule::parse(text).unwrap();
        assert_eq!(s.faults.len(), 17);
        assert_eq!(s.to_string(), text.replace(' ', ""));
        assert_eq!(FaultSchedule::parse(&s.to_string()).unwrap(), s);
        let json = serde_json::to_string(&s).unwrap();
        assert_eq!(FaultSchedule::parse(&json).unwrap(), s);
        assert_eq!(FaultSchedule::parse("none").unwrap(), FaultSchedule::none());
        assert_eq!(FaultSchedule::none().to_string(), "none");
        assert_eq!(parse_ms("1h30m").unwrap(), 90 * MINUTE);
        assert_eq!(fmt_ms(90 * MINUTE), "90m");
    }

    #[test]
    fn bad_text_is_refused_with_a_reason() {
        for (bad, why) in [
            ("api-outage@40m", "+DURATION"),
            ("api-error(418)@0s+1m:10%", "429, 500, 503 or 504"),
            ("warp@1m+1m", "unknown fault kind"),
            ("ssh-down@0s+1m", "(HOST)"),
            ("slow-ops@0s+1m:x0.5", "at least x1"),
            ("crash-after", "#STEP or (STATE)"),
            ("api-outage@40+2h", "needs a unit"),
            ("slow-ops@0s+1m:x50000000", "at most x1000"),
            ("api-slow@1s+1s:x4294967295.99", "at most x1000"),
            ("api-outage@99999999999999999s+1s", "overflows"),
        ] {
            let e = FaultSchedule::parse(bad).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }

    proptest::proptest! {
        /// No text makes the schedule or duration parsers panic: any string, and strings shaped
        /// like faults with numbers far out of range.
        #[test]
        fn no_text_makes_the_parsers_panic(
            any in ".{0,80}",
            shaped in "(api-outage|api-slow|slow-ops|ssh-down\\(master-1\\)|api-error\\(429\\)|etcd-crash\\(master-0\\))@[0-9]{1,25}(ms|s|m|h)\\+[0-9]{1,25}(s|m|h)(:x[0-9]{1,12}(\\.[0-9]{1,3})?|:[0-9]{1,4}%)?",
        ) {
            let _ = FaultSchedule::parse(&any);
            let _ = parse_ms(&any);
            let _ = FaultSchedule::parse(&shaped);
        }
    }

    #[test]
    fn seeds_give_varied_but_reproducible_schedules() {
        let all = FaultKind::ALL;
        assert_eq!(FaultSchedule::from_seed(7, &all), FaultSchedule::from_seed(7, &all));
        let kinds: std::collections::BTreeSet<FaultKind> =
            (0..400).flat_map(|s| FaultSchedule::from_seed(s, &all).faults).map(|f| f.kind()).collect();
        // Object-store faults only where a procedure writes to one.
        assert_eq!(kinds.len(), all.len() - 1, "every kind is drawn: {kinds:?}");
        assert!(!kinds.contains(&FaultKind::S3Error));
        let cx = ScheduleContext { object_store: true, ..ScheduleContext::default() };
        let s3 = (0..400)
            .map(|s| FaultSchedule::generate(&mut DetRng::derive(s, b"fault-schedule"), &all, &cx))
            .find(|f| f.faults.iter().any(|f| f.kind() == FaultKind::S3Error))
            .expect("s3-error is drawn for an object-store procedure");
        assert_eq!(FaultSchedule::parse(&s3.to_string()).unwrap(), s3);
        for s in 0..200 {
            let sched = FaultSchedule::from_seed(s, &all);
            assert_eq!(FaultSchedule::parse(&sched.to_string()).unwrap(), sched);
        }
        assert!(FaultSchedule::from_seed(3, &[]).faults.is_empty());
    }

    #[test]
    fn simplifications_drop_then_shrink() {
        let s = FaultSchedule::parse("api-outage@40m+2h,crash-after#3+30s").unwrap();
        let simpler = s.simplifications();
        assert_eq!(simpler[0].to_string(), "crash-after#3+30s");
        assert_eq!(simpler[1].to_string(), "api-outage@40m+2h");
        assert!(simpler.iter().any(|x| x.to_string() == "api-outage@40m+1h,crash-after#3+30s"));
        assert!(simpler.iter().any(|x| x.to_string() == "api-outage@20m+2h,crash-after#3+30s"));
        assert!(simpler.iter().any(|x| x.to_string() == "api-outage@40m+2h,crash-after#3"));
    }

    #[test]
    fn applied_windows_are_relative_to_the_run_start() {
        let mut w = crate::scenario::healthy(1);
        let start = w.now;
        FaultSchedule::parse("api-outage@10m+1h,etcd-crash(master-1)@5s+1m").unwrap().apply_to(&mut w);
        assert_eq!(w.faults.api_outages[0].from, start.plus(Duration::from_secs(600)));
        assert_eq!(w.faults.api_outages[0].until, start.plus(Duration::from_secs(600 + 3600)));
        w.advance(10 * SECOND);
        w.advance(40 * SECOND);
        assert!(w.faults.etcd_down("master-1", w.now));
        assert!(!w.member_started(&w.hosts["master-1"]), "the member is down during its crash window");
        assert!(w.has_quorum(), "two of three still have quorum");
        w.advance(2 * MINUTE);
        assert!(w.member_started(&w.hosts["master-1"]), "and restarts after it");
    }
}
