//! Procedures for hosted control planes (HyperShift), where a cluster's etcd and API servers
//! run on a management cluster.

pub mod etcd_member_recover;
pub mod etcd_snapshot;
pub mod pause_reconciliation;
pub mod scale_data_plane_zero;

pub use etcd_member_recover::HostedEtcdMemberRecover;
pub use etcd_snapshot::HostedEtcdSnapshot;
pub use pause_reconciliation::HostedPauseReconciliation;
pub use scale_data_plane_zero::HostedScaleDataPlaneZero;

use crate::ports::{ManagementCluster, PausableInfo, PortError};
use drctl_runtime::StepError;
use std::time::Duration;

/// The guards every hosted procedure starts with: HostedCluster `namespace/name` exists, is not
/// being deleted, and the HyperShift operator runs (without it nothing the procedure writes is
/// acted on). `deleting` and `without_operator` complete the refusals with what they would mean
/// for this procedure.
pub(crate) fn live_hosted_cluster(
    mc: &dyn ManagementCluster,
    namespace: &str,
    name: &str,
    deleting: &str,
    without_operator: &str,
) -> Result<PausableInfo, StepError> {
    let hc = mc.hosted_cluster(namespace, name).map_err(|e| match e {
        PortError::NotFound(_) => StepError::Permanent {
            reason: format!("HostedCluster {namespace}/{name} does not exist on this management cluster"),
            evidence: vec![e.to_string()],
        },
        e => e.during(format!("read HostedCluster {namespace}/{name}")),
    })?;
    if hc.deleting {
        return Err(StepError::Permanent {
            reason: format!("HostedCluster {namespace}/{name} is being deleted{deleting}"),
            evidence: vec![],
        });
    }
    if !mc.operator_available().map_err(|e| e.during("read the HyperShift operator deployment"))? {
        return Err(StepError::Permanent {
            reason: format!("the HyperShift operator (deployment hypershift/operator) has no available replica: {without_operator}"),
            evidence: vec!["start the operator, then `drctl resume` this run".into()],
        });
    }
    Ok(hc)
}

/// A Kubernetes `metav1.Duration` as the API server parses it (Go's `time.ParseDuration`):
/// one or more decimal numbers, each with a unit `ns`, `us`, `µs`, `ms`, `s`, `m`, `h`
/// (`1m`, `1h30m`, `2.5s`), or a bare `0`. Negative durations and anything else: `None`.
pub fn go_duration(s: &str) -> Option<Duration> {
    if s == "0" {
        return Some(Duration::ZERO);
    }
    if s.is_empty() || s.len() > 64 {
        return None;
    }
    let mut rest = s;
    let mut total_ns: u128 = 0;
    while !rest.is_empty() {
        let num_len = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
        let (num, tail) = rest.split_at(num_len);
        let unit_len = tail.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_len);
        let per_unit: u128 = match unit {
            "ns" => 1,
            "us" | "µs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            _ => return None,
        };
        let (whole, frac) = num.split_once('.').unwrap_or((num, ""));
        if (whole.is_empty() && frac.is_empty()) || frac.contains('.') {
            return None;
        }
        let whole: u128 = if whole.is_empty() { 0 } else { whole.parse().ok()? };
        let mut ns = whole.checked_mul(per_unit)?;
        let mut scale = per_unit;
        for d in frac.bytes().take(18) {
            scale /= 10;
            ns += u128::from(d - b'0') * scale;
        }
        total_ns = total_ns.checked_add(ns)?;
        rest = tail;
    }
    // Go's Duration is an int64 of nanoseconds.
    (total_ns <= i64::MAX as u128).then(|| Duration::from_nanos(total_ns as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_as_the_api_server_parses_them() {
        let ok = [("0", 0), ("0s", 0), ("1m", 60_000), ("1h30m", 5_400_000), ("2.5s", 2_500), ("500ms", 500), (".5m", 30_000)];
        for (s, ms) in ok {
            assert_eq!(go_duration(s), Some(Duration::from_millis(ms)), "{s}");
        }
        for bad in ["", "1", "-1m", "1d", "m", "1.2.3s", "1 m", "300000000000h", "."] {
            assert_eq!(go_duration(bad), None, "{bad}");
        }
    }
}
