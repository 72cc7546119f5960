//! Bare metal installer-provisioned clusters: the servers behind the BMCs, the
//! `metal3.io/v1alpha1` BareMetalHosts the bare metal operator drives through registering,
//! inspecting, available, provisioning and provisioned, and the machine actuator that binds a
//! new machine to an available host (what OpenShift Container Platform 4.14 Backup and restore
//! §5.2.4.3 relies on).
//!
//! The world never holds a BMC password: a server and a secret keep a digest of the
//! credentials, and registration compares digests.

use crate::world::*;
use drctl_runtime::clock::Timestamp;
use drctl_workflows::ports::{BareMetalHostInfo, NewBareMetalHost, PortError, PortResult};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// A physical server, by its BMC address.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Server {
    /// The MAC of its provisioning NIC.
    pub boot_mac: String,
    /// [`credentials_digest`] of the BMC's user and password.
    pub credentials_digest: String,
    /// It does not power on (the hardware failed).
    pub dead: bool,
}

/// A BareMetalHost object.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BmhObj {
    pub name: String,
    pub bmc_address: String,
    pub boot_mac: String,
    pub credentials_name: String,
    pub externally_provisioned: bool,
    /// `status.provisioning.state`.
    pub state: String,
    pub error: Option<String>,
    /// The machine bound to it (`spec.consumerRef`).
    pub consumer: Option<String>,
    pub powered_on: bool,
    pub deleting: bool,
    pub uid: String,
    /// When the bare metal operator acts on it next.
    pub until: Option<Timestamp>,
}

/// What a server and a BMC secret keep of the credentials: never the password itself.
pub fn credentials_digest(username: &str, password: &str) -> String {
    let mut h = Sha256::new();
    h.update(b"drctl-sim-bmc\0");
    h.update(username.as_bytes());
    h.update([0]);
    h.update(password.as_bytes());
    hex::encode(h.finalize())
}

const NS: &str = "openshift-machine-api";

impl BmhObj {
    pub fn info(&self) -> BareMetalHostInfo {
        BareMetalHostInfo {
            name: self.name.clone(),
            state: self.state.clone(),
            error: self.error.clone(),
            consumer: self.consumer.clone(),
            bmc_address: self.bmc_address.clone(),
            boot_mac_address: self.boot_mac.clone(),
            powered_on: self.powered_on,
            deleting: self.deleting,
        }
    }
}

impl World {
    pub fn bare_metal_host_infos(&self) -> Vec<BareMetalHostInfo> {
        self.api().bare_metal_hosts.values().map(BmhObj::info).collect()
    }

    /// Delete a BareMetalHost: it goes after the operator let it go; a host provisioned by the
    /// cluster is deprovisioned (its disks wiped) first.
    pub fn api_delete_bare_metal_host(&mut self, name: &str) {
        let Some(b) = self.api().bare_metal_hosts.get(name).cloned() else { return };
        if b.deleting {
            return;
        }
        let until = self.delay(30 * SECOND, 90 * SECOND);
        let wipes = b.state == "provisioned" && !b.externally_provisioned;
        let bm = self.api_mut().bare_metal_hosts.get_mut(name).expect("bmh");
        bm.deleting = true;
        bm.until = Some(until);
        if wipes {
            bm.state = "deprovisioning".into();
        }
        self.note(format!("baremetalhost {name} deleting ({})", b.state));
        self.effect(EffectKind::BareMetalHostDeleted, name);
        if wipes {
            self.effect(EffectKind::BareMetalHostDeprovisioned, name);
        }
    }

    /// Create a BareMetalHost as the runbook writes it; one of that name existing is success.
    pub fn api_create_bare_metal_host(&mut self, host: &NewBareMetalHost) -> PortResult<()> {
        if self.api().bare_metal_hosts.contains_key(&host.name) {
            return Ok(());
        }
        if drctl_workflows::bmc::validate_bmc_address(&host.bmc_address).is_err() {
            return Err(PortError::Permanent(format!(
                "admission webhook \"baremetalhost.metal3.io\" denied the request: Unknown BMC type for address {}",
                host.bmc_address
            )));
        }
        let until = self.delay(20 * SECOND, 60 * SECOND);
        let uid = format!("{:032x}", self.rng.next_u64() as u128);
        let b = BmhObj {
            name: host.name.clone(),
            bmc_address: host.bmc_address.clone(),
            boot_mac: host.boot_mac_address.clone(),
            credentials_name: host.credentials_name.clone(),
            externally_provisioned: false,
            state: "registering".into(),
            error: None,
            consumer: None,
            powered_on: false,
            deleting: false,
            uid,
            until: Some(until),
        };
        self.api_mut().bare_metal_hosts.insert(host.name.clone(), b);
        self.note(format!("baremetalhost {} created (bmc {})", host.name, host.bmc_address));
        self.effect(EffectKind::BareMetalHostCreated, &host.name);
        Ok(())
    }

    /// Write the BMC secret: the world keeps its digest only.
    pub fn api_apply_bmc_secret(&mut self, name: &str, username: &str, password: &str) {
        let digest = credentials_digest(username, password);
        if self.api().bmc_secrets.get(name) != Some(&digest) {
            self.api_mut().bmc_secrets.insert(name.to_string(), digest);
            self.note(format!("secret {NS}/{name} written"));
            self.effect(EffectKind::BmcSecretWritten, name);
        }
    }

    /// Remove a machine's finalizers: a machine stuck in deletion is gone at once, without the
    /// controller's clean-up (its Node object stays).
    pub fn api_remove_machine_finalizers(&mut self, name: &str) {
        let Some(m) = self.api().machines.get(name).cloned() else { return };
        if m.phase != "Deleting" {
            return;
        }
        self.api_mut().machines.remove(name);
        if let Some(h) = m.node.clone().or_else(|| self.hosts.values().find(|h| h.machine == name).map(|h| h.name.clone())) {
            self.hosts.remove(&h);
            self.ovn_pods.retain(|_, p| p.node != h);
        }
        self.note(format!("machine {name}: finalizers removed; machine gone, its node object left behind"));
        self.effect(EffectKind::MachineFinalizersRemoved, name);
    }

    /// The bare metal operator: registration checks the BMC and its credentials, inspection
    /// the boot NIC and that the server powers on; provisioning writes the image and boots it.
    /// Errors are retried, as the operator does (a wrong address, MAC or password stays wrong).
    pub(crate) fn reconcile_bare_metal(&mut self) {
        let now = self.now;
        let due: Vec<String> =
            self.api().bare_metal_hosts.values().filter(|b| b.until.is_some_and(|u| u <= now)).map(|b| b.name.clone()).collect();
        for name in due {
            let b = self.api().bare_metal_hosts[&name].clone();
            if b.deleting {
                self.api_mut().bare_metal_hosts.remove(&name);
                self.note(format!("baremetalhost {name} deleted"));
                continue;
            }
            match b.state.as_str() {
                "registering" => self.register(&b),
                "inspecting" => self.inspect(&b),
                "provisioning" => self.provisioned(&b),
                "deprovisioning" => {
                    let bm = self.api_mut().bare_metal_hosts.get_mut(&name).expect("bmh");
                    bm.state = "available".into();
                    bm.powered_on = false;
                    bm.until = None;
                    self.note(format!("baremetalhost {name} deprovisioned: available"));
                }
                _ => self.api_mut().bare_metal_hosts.get_mut(&name).expect("bmh").until = None,
            }
        }
    }

    fn set_host(&mut self, name: &str, state: &str, error: Option<String>, until: Option<Timestamp>) {
        let changed = {
            let b = &self.api().bare_metal_hosts[name];
            b.state != state || b.error != error
        };
        let bm = self.api_mut().bare_metal_hosts.get_mut(name).expect("bmh");
        bm.state = state.into();
        bm.error = error.clone();
        bm.until = until;
        if changed {
            match error {
                Some(e) => self.note(format!("baremetalhost {name}: {state}, {e}")),
                None => self.note(format!("baremetalhost {name}: {state}")),
            }
        }
    }

    fn register(&mut self, b: &BmhObj) {
        let retry = self.delay(MINUTE, 2 * MINUTE);
        let secret = self.api().bmc_secrets.get(&b.credentials_name).cloned();
        let server = self.servers.get(&b.bmc_address).cloned();
        let error = match (secret, server) {
            (None, _) => Some(format!("registration error: secret {NS}/{} not found", b.credentials_name)),
            (_, None) => Some(format!("registration error: failed to connect to the BMC at {}: no route to host", b.bmc_address)),
            (Some(d), Some(s)) if d != s.credentials_digest => {
                Some("registration error: BMC authentication failed (HTTP 401 Unauthorized)".to_string())
            }
            _ => None,
        };
        match error {
            Some(e) => self.set_host(&b.name, "registering", Some(e), Some(retry)),
            None => {
                let until = self.delay(3 * MINUTE, 6 * MINUTE);
                self.set_host(&b.name, "inspecting", None, Some(until));
            }
        }
    }

    fn inspect(&mut self, b: &BmhObj) {
        let retry = self.delay(2 * MINUTE, 3 * MINUTE);
        let Some(server) = self.servers.get(&b.bmc_address).cloned() else {
            return self.set_host(&b.name, "registering", None, Some(retry));
        };
        if server.dead {
            return self.set_host(
                &b.name,
                "inspecting",
                Some("inspection error: timed out waiting for the host to power on".into()),
                Some(retry),
            );
        }
        if !server.boot_mac.eq_ignore_ascii_case(&b.boot_mac) {
            let e = format!("inspection error: no network interface with the boot MAC address {} was found", b.boot_mac);
            return self.set_host(&b.name, "inspecting", Some(e), Some(retry));
        }
        self.set_host(&b.name, "available", None, None);
    }

    fn provisioned(&mut self, b: &BmhObj) {
        self.set_host(&b.name, "provisioned", None, None);
        self.api_mut().bare_metal_hosts.get_mut(&b.name).expect("bmh").powered_on = true;
        let Some(machine) = b.consumer.clone() else { return };
        let boot = self.delay(3 * MINUTE, 6 * MINUTE);
        if let Some(m) = self.api_mut().machines.get_mut(&machine) {
            m.phase = "Provisioned".into();
            m.phase_until = Some(boot);
            m.provider_id = Some(format!("baremetalhost:///{NS}/{}/{}", b.name, b.uid));
            m.annotations.insert("metal3.io/BareMetalHost".into(), format!("{NS}/{}", b.name));
        }
        self.note(format!("machine {machine} provisioned on baremetalhost {}", b.name));
    }

    /// The machine actuator: a machine in Provisioning takes an available host (none: it
    /// stays Provisioning and looks again, as the actuator requeues). When it holds one
    /// already, it waits for that host.
    pub(crate) fn claim_bare_metal_host(&mut self, machine: &str) {
        if self.api().bare_metal_hosts.values().any(|b| b.consumer.as_deref() == Some(machine)) {
            self.api_mut().machines.get_mut(machine).expect("machine").phase_until = None;
            return;
        }
        let free = self
            .api()
            .bare_metal_hosts
            .values()
            .find(|b| b.state == "available" && b.error.is_none() && b.consumer.is_none() && !b.deleting)
            .map(|b| b.name.clone());
        let Some(host) = free else {
            let retry = self.delay(MINUTE, 2 * MINUTE);
            self.api_mut().machines.get_mut(machine).expect("machine").phase_until = Some(retry);
            self.note(format!("machine {machine}: no available BareMetalHost yet"));
            return;
        };
        let until = self.delay(8 * MINUTE, 15 * MINUTE);
        let bm = self.api_mut().bare_metal_hosts.get_mut(&host).expect("bmh");
        bm.consumer = Some(machine.to_string());
        bm.state = "provisioning".into();
        bm.until = Some(until);
        self.api_mut().machines.get_mut(machine).expect("machine").phase_until = None;
        self.note(format!("machine {machine} claimed baremetalhost {host}: provisioning"));
    }

    /// When a bare metal machine goes: its host is released (deprovisioned and wiped if the
    /// cluster provisioned it). True when a BareMetalHost object was bound to it.
    pub(crate) fn release_bare_metal_host(&mut self, machine: &str) -> bool {
        let Some(b) = self.api().bare_metal_hosts.values().find(|b| b.consumer.as_deref() == Some(machine)).cloned() else {
            return false;
        };
        if b.deleting {
            return true;
        }
        let until = self.delay(MINUTE, 3 * MINUTE);
        let bm = self.api_mut().bare_metal_hosts.get_mut(&b.name).expect("bmh");
        bm.consumer = None;
        bm.state = "deprovisioning".into();
        bm.until = Some(until);
        self.note(format!("baremetalhost {} of machine {machine} deprovisioning: disks wiped", b.name));
        self.effect(EffectKind::BareMetalHostDeprovisioned, b.name);
        true
    }

    /// The name a machine's node registers under: its BareMetalHost's (the host name the
    /// server gets), if it is bound to one.
    pub(crate) fn bare_metal_host_name_of(&self, machine: &str) -> Option<String> {
        self.api().bare_metal_hosts.values().find(|b| b.consumer.as_deref() == Some(machine)).map(|b| b.name.clone())
    }

    /// The next moment the bare metal operator acts.
    pub(crate) fn bare_metal_due(&self) -> impl Iterator<Item = Timestamp> + '_ {
        self.api().bare_metal_hosts.values().filter_map(|b| b.until)
    }
}

/// Bare metal objects of a healthy installer-provisioned cluster: a server and an externally
/// provisioned BareMetalHost (named after the node) for each control-plane host, and one spare
/// server racked for a replacement. Every BMC takes the same user and password.
pub fn install(w: &mut World, username: &str, password: &str) {
    let digest = credentials_digest(username, password);
    let machines: Vec<(String, Option<String>)> =
        w.api().machines.values().filter(|m| m.control_plane).map(|m| (m.name.clone(), m.node.clone())).collect();
    for (i, (machine, node)) in machines.into_iter().enumerate() {
        let Some(node) = node else { continue };
        let (address, mac) = server_identity(i as u32);
        w.servers.insert(address.clone(), Server { boot_mac: mac.clone(), credentials_digest: digest.clone(), dead: false });
        let uid = format!("{:032x}", mix_name(&node));
        let b = BmhObj {
            name: node.clone(),
            bmc_address: address,
            boot_mac: mac,
            credentials_name: drctl_workflows::bmc::secret_name(&node),
            externally_provisioned: true,
            state: "externally provisioned".into(),
            error: None,
            consumer: Some(machine.clone()),
            powered_on: true,
            deleting: false,
            uid: uid.clone(),
            until: None,
        };
        let api = w.api_mut();
        api.bmc_secrets.insert(b.credentials_name.clone(), digest.clone());
        api.bare_metal_hosts.insert(node.clone(), b);
        let m = api.machines.get_mut(&machine).expect("machine");
        m.annotations.insert("metal3.io/BareMetalHost".into(), format!("{NS}/{node}"));
        m.provider_id = Some(format!("baremetalhost:///{NS}/{node}/{uid}"));
    }
    let (address, mac) = server_identity(SPARE_SERVER);
    w.servers.insert(address, Server { boot_mac: mac, credentials_digest: digest, dead: false });
}

/// A credentials file with the simulated BMCs' user and password, for runs the harness starts
/// (written once per process, atomically, under the temporary directory).
pub fn sim_credentials_file() -> &'static std::path::Path {
    static FILE: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
    FILE.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("drctl-sim-bmc-{}", std::process::id()));
        let file = dir.join("credentials.yaml");
        let text = format!("username: {}\npassword: {}\n", crate::scenario::SIM_BMC_USERNAME, crate::scenario::SIM_BMC_PASSWORD);
        let written = std::fs::create_dir_all(&dir).and_then(|_| {
            let tmp = dir.join("credentials.yaml.tmp");
            std::fs::write(&tmp, text)?;
            std::fs::rename(&tmp, &file)
        });
        if let Err(e) = written {
            panic!("cannot write the simulated BMC credentials file under {}: {e}", dir.display());
        }
        file
    })
}

/// The index of the spare server in [`server_identity`].
pub const SPARE_SERVER: u32 = 9;

/// The BMC address and boot MAC of server `i` of a simulated rack.
pub fn server_identity(i: u32) -> (String, String) {
    (format!("redfish://192.168.111.{}:8000/redfish/v1/Systems/{}", 30 + i, 1), format!("52:54:00:6f:10:{:02x}", 0x30 + i))
}

fn mix_name(name: &str) -> u128 {
    let d = Sha256::digest(name.as_bytes());
    u128::from_be_bytes(d[..16].try_into().expect("16 bytes"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::{baremetal_member_lost, SIM_BMC_PASSWORD, SIM_BMC_USERNAME};

    fn new_host(w: &mut World, name: &str, server: u32, mac: Option<&str>, password: &str) {
        let (address, right_mac) = server_identity(server);
        let secret = drctl_workflows::bmc::secret_name(name);
        w.api_apply_bmc_secret(&secret, SIM_BMC_USERNAME, password);
        let host = NewBareMetalHost {
            name: name.into(),
            bmc_address: address,
            boot_mac_address: mac.unwrap_or(&right_mac).into(),
            credentials_name: secret,
        };
        w.api_create_bare_metal_host(&host).unwrap();
        w.advance(20 * MINUTE);
    }

    #[test]
    fn a_new_host_registers_inspects_and_becomes_available_only_with_the_right_bmc_mac_and_password() {
        let mut w = baremetal_member_lost(1);
        new_host(&mut w, "spare-ok", SPARE_SERVER, None, SIM_BMC_PASSWORD);
        new_host(&mut w, "wrong-password", SPARE_SERVER, None, "not-the-password");
        new_host(&mut w, "wrong-mac", SPARE_SERVER, Some("52:54:00:00:00:01"), SIM_BMC_PASSWORD);
        new_host(&mut w, "no-server", 77, None, SIM_BMC_PASSWORD);
        let dead = crate::scenario::member_victim(1)[7..].parse::<u32>().unwrap();
        new_host(&mut w, "dead-server", dead, None, SIM_BMC_PASSWORD);
        let state = |w: &World, n: &str| {
            let b = &w.api().bare_metal_hosts[n];
            (b.state.clone(), b.error.clone().unwrap_or_default())
        };
        assert_eq!(state(&w, "spare-ok"), ("available".into(), String::new()));
        assert!(state(&w, "wrong-password").1.contains("BMC authentication failed"), "{:?}", state(&w, "wrong-password"));
        assert!(state(&w, "wrong-mac").1.starts_with("inspection error: no network interface"), "{:?}", state(&w, "wrong-mac"));
        assert!(state(&w, "no-server").1.contains("no route to host"), "{:?}", state(&w, "no-server"));
        assert!(state(&w, "dead-server").1.contains("power on"), "{:?}", state(&w, "dead-server"));
        // The world keeps digests only.
        assert!(!serde_json::to_string(&w).unwrap().contains(SIM_BMC_PASSWORD));
    }

    #[test]
    fn a_machine_deletion_that_hangs_ends_only_when_its_finalizers_go_and_leaves_its_node() {
        let mut hung = None;
        for seed in 1..40 {
            let mut w = baremetal_member_lost(seed);
            let victim = crate::scenario::member_victim(seed);
            let machine = w.hosts[&victim].machine.clone();
            w.api_delete_machine(&machine);
            w.advance(60 * MINUTE);
            if w.api().machines.contains_key(&machine) {
                hung = Some((w, machine, victim));
                break;
            }
            assert!(!w.api().nodes.contains_key(&victim), "seed {seed}: a completed deletion takes the node");
        }
        let (mut w, machine, node) = hung.expect("some seed's deletion hangs");
        w.api_remove_machine_finalizers(&machine);
        assert!(!w.api().machines.contains_key(&machine));
        assert!(w.api().nodes.contains_key(&node), "the node object is left behind");
    }
}
