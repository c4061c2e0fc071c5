//! The inventory (`hosts.toml`) as validated data: which machines a `--hosts` run drives,
//! how to reach them over SSH, where raftbus keeps its files there, and which interface
//! faces the other hosts.
//!
//! ```toml
//! version = 1
//! [ssh]                          # optional, for every host
//! config = "ssh_config"          # ssh -F, relative to this file
//! known_hosts = "known_hosts"    # UserKnownHostsFile; host keys are always checked
//! identity = "id_ed25519"        # ssh -i; otherwise the agent and the default keys
//! connect_timeout = "10s"
//!
//! [[host]]
//! name = "h1"
//! address = "10.0.0.11"          # SSH address; servers listen on it, rules match it
//! user = "raftbus"
//! root = "/var/lib/raftbus"      # bin/ and runs/<run>/ go here
//! interface = "eth0"             # carries `address`; qdiscs go there
//! # port = 22, identity = "...", sudo = false (prefix nft/tc with sudo -n)
//! ```

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// The inventory format version.
pub const INVENTORY_VERSION: u32 = 1;
/// The most hosts one inventory may list.
const MAX_HOSTS: usize = 32;

#[derive(Debug, thiserror::Error)]
pub enum InventoryError {
    #[error("cannot read inventory {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("inventory {path} is not valid: {message}")]
    Parse { path: String, message: String },
    #[error("inventory {path}: field `{field}`: {reason}")]
    Invalid {
        path: String,
        field: String,
        reason: String,
    },
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawInventory {
    version: u32,
    #[serde(default)]
    ssh: RawSsh,
    #[serde(default)]
    host: Vec<RawHost>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSsh {
    config: Option<PathBuf>,
    known_hosts: Option<PathBuf>,
    identity: Option<PathBuf>,
    connect_timeout: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHost {
    name: String,
    address: String,
    user: String,
    port: Option<u16>,
    identity: Option<PathBuf>,
    root: PathBuf,
    interface: String,
    #[serde(default)]
    sudo: bool,
}

/// One machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostSpec {
    /// `h1`: lowercase letters, digits and `-`.
    pub name: String,
    /// Where ssh connects, where servers listen, what the other hosts' rules match.
    pub address: IpAddr,
    pub user: String,
    pub port: Option<u16>,
    /// Absolute path of the key to offer (resolved against the inventory's directory).
    pub identity: Option<PathBuf>,
    /// Absolute directory for raftbus's files on the host.
    pub root: PathBuf,
    /// The interface carrying `address`.
    pub interface: String,
    /// Privileged commands (nft, tc) through `sudo -n`.
    pub sudo: bool,
}

/// A validated inventory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inventory {
    /// The file it was read from (absolute).
    pub path: PathBuf,
    pub ssh_config: Option<PathBuf>,
    pub known_hosts: Option<PathBuf>,
    pub connect_timeout: Duration,
    pub hosts: Vec<HostSpec>,
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 12
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

impl Inventory {
    /// Reads and validates `path`.
    pub fn load(path: &Path) -> Result<Inventory, InventoryError> {
        let text = std::fs::read_to_string(path).map_err(|source| InventoryError::Read {
            path: path.display().to_string(),
            source,
        })?;
        let abs = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
        Inventory::from_toml(&text, &abs)
    }

    /// Parses and validates the text of the inventory at `path` (relative paths inside it
    /// are resolved against `path`'s directory).
    pub fn from_toml(text: &str, path: &Path) -> Result<Inventory, InventoryError> {
        let shown = path.display().to_string();
        let raw: RawInventory = toml::from_str(text).map_err(|e| InventoryError::Parse {
            path: shown.clone(),
            message: e.to_string().trim().replace('\n', " "),
        })?;
        let invalid = |field: String, reason: String| InventoryError::Invalid {
            path: shown.clone(),
            field,
            reason,
        };
        if raw.version != INVENTORY_VERSION {
            return Err(invalid(
                "version".into(),
                format!("must be {INVENTORY_VERSION}, got {}", raw.version),
            ));
        }
        if raw.host.is_empty() {
            return Err(invalid(
                "host".into(),
                "lists no hosts; add [[host]] tables".into(),
            ));
        }
        if raw.host.len() > MAX_HOSTS {
            return Err(invalid(
                "host".into(),
                format!("at most {MAX_HOSTS} hosts, got {}", raw.host.len()),
            ));
        }
        let base = path.parent().unwrap_or(Path::new("/"));
        let resolve = |p: &Path| base.join(p);
        let existing = |field: String, p: &Path| -> Result<PathBuf, InventoryError> {
            let full = resolve(p);
            if full.is_file() {
                Ok(full)
            } else {
                Err(invalid(field, format!("{} is not a file", full.display())))
            }
        };
        let ssh_config = raw
            .ssh
            .config
            .as_deref()
            .map(|p| existing("ssh.config".into(), p))
            .transpose()?;
        let known_hosts = raw
            .ssh
            .known_hosts
            .as_deref()
            .map(|p| existing("ssh.known_hosts".into(), p))
            .transpose()?;
        let default_identity = raw
            .ssh
            .identity
            .as_deref()
            .map(|p| existing("ssh.identity".into(), p))
            .transpose()?;
        let connect_timeout = match &raw.ssh.connect_timeout {
            None => Duration::from_secs(10),
            Some(t) => humantime::parse_duration(t).map_err(|e| {
                invalid(
                    "ssh.connect_timeout".into(),
                    format!("bad duration {t:?}: {e}"),
                )
            })?,
        };
        let mut names = BTreeSet::new();
        let mut addrs = BTreeSet::new();
        let mut hosts = Vec::new();
        for (i, h) in raw.host.iter().enumerate() {
            let field = |f: &str| format!("host[{i}].{f}");
            if !valid_name(&h.name) {
                return Err(invalid(
                    field("name"),
                    format!("{:?}: use 1-12 of [a-z0-9-]", h.name),
                ));
            }
            if !names.insert(h.name.clone()) {
                return Err(invalid(
                    field("name"),
                    format!("{:?} appears twice", h.name),
                ));
            }
            let address: IpAddr = h.address.parse().map_err(|_| {
                invalid(
                    field("address"),
                    format!("{:?} is not an IP address (servers bind to it and the fault rules match it)", h.address),
                )
            })?;
            if address.is_unspecified() || address.is_multicast() {
                return Err(invalid(
                    field("address"),
                    format!("{address} cannot be a host's address"),
                ));
            }
            if !addrs.insert(address) {
                return Err(invalid(
                    field("address"),
                    format!("{address} appears twice (one host per address)"),
                ));
            }
            if h.user.is_empty() {
                return Err(invalid(field("user"), "must not be empty".into()));
            }
            if h.port == Some(0) {
                return Err(invalid(field("port"), "must be 1-65535".into()));
            }
            if !h.root.is_absolute() || h.root == Path::new("/") {
                return Err(invalid(
                    field("root"),
                    format!(
                        "{} must be an absolute directory other than / (raftbus's files go there)",
                        h.root.display()
                    ),
                ));
            }
            let iface_ok = !h.interface.is_empty()
                && h.interface.len() <= 15
                && h.interface
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.@".contains(&b));
            if !iface_ok {
                return Err(invalid(
                    field("interface"),
                    format!("{:?} is not an interface name", h.interface),
                ));
            }
            let identity = match &h.identity {
                Some(p) => Some(existing(field("identity"), p)?),
                None => default_identity.clone(),
            };
            hosts.push(HostSpec {
                name: h.name.clone(),
                address,
                user: h.user.clone(),
                port: h.port,
                identity,
                root: h.root.clone(),
                interface: h.interface.clone(),
                sudo: h.sudo,
            });
        }
        Ok(Inventory {
            path: path.to_path_buf(),
            ssh_config,
            known_hosts,
            connect_timeout,
            hosts,
        })
    }

    /// Where the harness keeps this inventory's state: `<file>.state/` beside the file
    /// (what a crashed run left, for `raftbus hosts heal`; the ssh control sockets).
    pub fn state_dir(&self) -> PathBuf {
        let mut name = self
            .path
            .file_name()
            .map(|n| n.to_os_string())
            .unwrap_or_else(|| "hosts.toml".into());
        name.push(".state");
        self.path.with_file_name(name)
    }

    /// The host that server number `index` (0-based) runs on.
    pub fn host_for(&self, index: usize) -> Option<&HostSpec> {
        self.hosts.get(index)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Inventory, InventoryError> {
        Inventory::from_toml(text, Path::new("/nonexistent/hosts.toml"))
    }

    const ONE: &str = r#"
version = 1
[[host]]
name = "h1"
address = "198.18.1.1"
user = "root"
root = "/srv/raftbus"
interface = "eth0"
"#;

    #[test]
    fn a_minimal_inventory_is_valid() {
        let inv = parse(ONE).unwrap();
        assert_eq!(inv.hosts.len(), 1);
        assert_eq!(inv.hosts[0].address.to_string(), "198.18.1.1");
        assert_eq!(inv.connect_timeout, Duration::from_secs(10));
        assert_eq!(
            inv.state_dir(),
            PathBuf::from("/nonexistent/hosts.toml.state")
        );
    }

    #[test]
    fn errors_name_the_file_and_the_field() {
        let cases = [
            (ONE.replace("version = 1", "version = 2"), "field `version`"),
            (ONE.replace("198.18.1.1", "db-1.example"), "host[0].address"),
            (ONE.replace("\"h1\"", "\"H_1\""), "host[0].name"),
            (ONE.replace("/srv/raftbus", "srv"), "host[0].root"),
            (ONE.replace("\"eth0\"", "\"eth0; rm\""), "host[0].interface"),
            (ONE.replace("\"root\"", "\"\""), "host[0].user"),
            (
                format!("{ONE}\n[ssh]\nknown_hosts = \"kh\"\n"),
                "ssh.known_hosts",
            ),
            (
                format!("{ONE}{}", ONE.replace("version = 1", "")),
                "host[1].name",
            ),
            ("version = 1\n".into(), "field `host`"),
        ];
        for (text, want) in cases {
            let err = parse(&text).unwrap_err().to_string();
            assert!(err.contains(want), "{want}: {err}");
            assert!(err.contains("/nonexistent/hosts.toml"), "{err}");
        }
        let err = parse(&ONE.replace("interface", "iface")).unwrap_err();
        assert!(matches!(err, InventoryError::Parse { .. }), "{err}");
        assert!(err.to_string().contains("iface"), "{err}");
    }
}
