//! A Redis Cluster of the test's own: three masters with one replica each, six
//! `redis-server`s in cluster mode on free loopback ports (each in a temporary directory
//! of its own, nothing kept on disk), joined by `redis-cli --cluster create
//! --cluster-replicas 1`. Every node is stopped by its pid when the cluster is dropped,
//! and by a watchdog process (which removes their directories too) when the test
//! process ends without dropping it (a cluster kept in a `static`).

use std::collections::HashMap;
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use redis::cluster_async::ClusterConnection;

use super::own_server::OwnServer;

/// How many nodes: three masters, one replica each.
const NODES: usize = 6;

/// A running cluster started by the test.
pub struct OwnCluster {
    nodes: Vec<OwnServer>,
    watchdog: Option<Child>,
}

/// One line of `CLUSTER NODES`.
#[derive(Debug, Clone)]
pub struct NodeInfo {
    pub id: String,
    pub port: u16,
    pub master: bool,
    /// The master's id, for a replica.
    pub master_id: Option<String>,
    /// The slot ranges a master serves (inclusive).
    pub slots: Vec<(u16, u16)>,
}

/// A free port whose cluster bus port (+10000) is free too.
fn free_port_pair() -> u16 {
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free loopback port")
            .port();
        if port < 55_000 && TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok() {
            return port;
        }
    }
}

/// A sync connection to the node on `port`.
pub fn node(port: u16) -> redis::Connection {
    redis::Client::open(format!("redis://127.0.0.1:{port}/"))
        .expect("a valid URL")
        .get_connection_with_timeout(Duration::from_secs(2))
        .unwrap_or_else(|e| panic!("the cluster node on port {port} does not answer: {e}"))
}

/// `command` on the node on `port`.
pub fn on<T: redis::FromRedisValue>(port: u16, command: &mut redis::Cmd) -> T {
    command
        .query(&mut node(port))
        .unwrap_or_else(|e| panic!("{command:?} on port {port}: {e}"))
}

impl OwnCluster {
    /// Starts six nodes, creates the cluster and waits until every node says
    /// `cluster_state:ok` and every replica's link to its master is up.
    pub fn start() -> OwnCluster {
        let mut cluster = OwnCluster {
            nodes: Vec::new(),
            watchdog: None,
        };
        while cluster.nodes.len() < NODES {
            // In cluster mode, its `nodes.conf` in the node's own directory.
            let settings = [("cluster-enabled", "yes"), ("cluster-node-timeout", "5000")];
            if let Some(node) = OwnServer::try_start_on(free_port_pair(), &settings, &[]) {
                cluster.nodes.push(node);
            }
        }
        // Stops the nodes if this process ends without dropping the cluster.
        let pids: Vec<String> = cluster.nodes.iter().map(|n| n.pid().to_string()).collect();
        let dirs: Vec<String> = cluster
            .nodes
            .iter()
            .map(|n| format!("'{}'", n.dir().display()))
            .collect();
        let script = format!(
            "while kill -0 {} 2>/dev/null; do sleep 1; done; kill {} 2>/dev/null; sleep 1; rm -rf {}",
            std::process::id(),
            pids.join(" "),
            dirs.join(" ")
        );
        cluster.watchdog = Command::new("sh")
            .args(["-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok();
        let addresses: Vec<String> = cluster
            .ports()
            .iter()
            .map(|port| format!("127.0.0.1:{port}"))
            .collect();
        let created = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addresses)
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .output()
            .expect("redis-cli (Debian's package redis-tools provides it)");
        assert!(
            created.status.success(),
            "redis-cli --cluster create failed: {}{}",
            String::from_utf8_lossy(&created.stdout),
            String::from_utf8_lossy(&created.stderr)
        );
        cluster.wait_until_ok();
        cluster
    }

    /// Every node's port.
    pub fn ports(&self) -> Vec<u16> {
        self.nodes.iter().map(|n| n.port()).collect()
    }

    /// Waits until every node says `cluster_state:ok`, agrees on who serves every
    /// slot, and every replica's link to its master is up.
    pub fn wait_until_ok(&self) {
        let started = Instant::now();
        loop {
            if self.is_ok() {
                return;
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "the test's own cluster did not come to cluster_state:ok: {:?}",
                self.nodes()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn is_ok(&self) -> bool {
        let mut views = Vec::new();
        for port in self.ports() {
            let Ok(mut connection) = redis::Client::open(format!("redis://127.0.0.1:{port}/"))
                .and_then(|c| c.get_connection_with_timeout(Duration::from_secs(1)))
            else {
                return false;
            };
            let info: String = match redis::cmd("CLUSTER").arg("INFO").query(&mut connection) {
                Ok(info) => info,
                Err(_) => return false,
            };
            if !info.contains("cluster_state:ok") || !info.contains("cluster_slots_ok:16384") {
                return false;
            }
            let replication: String =
                match redis::cmd("INFO").arg("replication").query(&mut connection) {
                    Ok(info) => info,
                    Err(_) => return false,
                };
            if replication.contains("role:slave") && !replication.contains("master_link_status:up")
            {
                return false;
            }
            let nodes: String = match redis::cmd("CLUSTER").arg("NODES").query(&mut connection) {
                Ok(nodes) => nodes,
                Err(_) => return false,
            };
            let mut masters: Vec<(u16, Vec<(u16, u16)>)> = parse_nodes(&nodes)
                .into_iter()
                .filter(|n| n.master && !n.slots.is_empty())
                .map(|n| (n.port, n.slots))
                .collect();
            masters.sort();
            views.push(masters);
        }
        views.windows(2).all(|pair| pair[0] == pair[1]) && views[0].len() == 3
    }

    /// The cluster's nodes as the first node that answers sees them.
    pub fn nodes(&self) -> Vec<NodeInfo> {
        for port in self.ports() {
            if let Ok(nodes) = redis::cmd("CLUSTER")
                .arg("NODES")
                .query::<String>(&mut node(port))
            {
                return parse_nodes(&nodes);
            }
        }
        Vec::new()
    }

    /// The cluster's masters.
    pub fn masters(&self) -> Vec<NodeInfo> {
        self.nodes().into_iter().filter(|n| n.master).collect()
    }

    /// The replica of the master `master_id`.
    pub fn replica_of(&self, master_id: &str) -> NodeInfo {
        self.nodes()
            .into_iter()
            .find(|n| n.master_id.as_deref() == Some(master_id))
            .expect("every master has a replica")
    }

    /// A new async cluster connection (the `redis` crate's cluster client, seeded with
    /// every node).
    pub async fn connection(&self) -> ClusterConnection {
        self.connection_with(redis::ProtocolVersion::RESP2).await
    }

    /// A new async cluster connection speaking `protocol`.
    pub async fn connection_with(&self, protocol: redis::ProtocolVersion) -> ClusterConnection {
        let urls: Vec<String> = self
            .ports()
            .iter()
            .map(|port| format!("redis://127.0.0.1:{port}/"))
            .collect();
        redis::cluster::ClusterClient::builder(urls)
            .use_protocol(protocol)
            .build()
            .expect("a valid cluster client")
            .get_async_connection()
            .await
            .expect("the test's own cluster answers")
    }

    /// Moves `slot` from the master `from` to the master `to`, as `redis-cli --cluster
    /// reshard` does: `IMPORTING` on the target, `MIGRATING` on the source, `MIGRATE`
    /// of its keys a few at a time (writes meanwhile meet `ASK` for keys already moved),
    /// then `SETSLOT NODE` on every master. Returns how many keys moved.
    pub fn move_slot(&self, slot: u16, from: &NodeInfo, to: &NodeInfo) -> usize {
        on::<()>(
            to.port,
            redis::cmd("CLUSTER")
                .arg("SETSLOT")
                .arg(slot)
                .arg("IMPORTING")
                .arg(&from.id),
        );
        on::<()>(
            from.port,
            redis::cmd("CLUSTER")
                .arg("SETSLOT")
                .arg(slot)
                .arg("MIGRATING")
                .arg(&to.id),
        );
        let mut moved = 0;
        loop {
            let keys: Vec<String> = on(
                from.port,
                redis::cmd("CLUSTER").arg("GETKEYSINSLOT").arg(slot).arg(5),
            );
            if keys.is_empty() {
                break;
            }
            moved += keys.len();
            on::<()>(
                from.port,
                redis::cmd("MIGRATE")
                    .arg("127.0.0.1")
                    .arg(to.port)
                    .arg("")
                    .arg(0)
                    .arg(5000)
                    .arg("KEYS")
                    .arg(&keys),
            );
            // Lets writes meet the slot half moved.
            std::thread::sleep(Duration::from_millis(5));
        }
        // The target first, so that it owns the slot before the source gives it up.
        for port in std::iter::once(to.port)
            .chain(std::iter::once(from.port))
            .chain(self.masters().iter().map(|m| m.port))
        {
            on::<()>(
                port,
                redis::cmd("CLUSTER")
                    .arg("SETSLOT")
                    .arg(slot)
                    .arg("NODE")
                    .arg(&to.id),
            );
        }
        moved
    }

    /// The slot of `key` (`CLUSTER KEYSLOT`: CRC16 of the key, or of its hash tag).
    pub fn slot_of(&self, key: &str) -> u16 {
        on(
            self.nodes[0].port(),
            redis::cmd("CLUSTER").arg("KEYSLOT").arg(key),
        )
    }

    /// How many keys the master on `port` holds in `slot`.
    pub fn keys_in_slot(&self, port: u16, slot: u16) -> usize {
        on(port, redis::cmd("CLUSTER").arg("COUNTKEYSINSLOT").arg(slot))
    }

    /// `CLUSTER FAILOVER` on the replica on `port` (no `FORCE`: the master stops
    /// taking writes until the replica has caught up, then the replica takes over),
    /// and waits until that replica is a master and the cluster is ok again.
    pub fn failover(&self, replica: &NodeInfo) {
        on::<()>(replica.port, redis::cmd("CLUSTER").arg("FAILOVER"));
        let started = Instant::now();
        loop {
            let role: String = on(replica.port, redis::cmd("INFO").arg("replication"));
            if role.contains("role:master") {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "the replica on port {} did not take over",
                replica.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        self.wait_until_ok();
    }
}

/// `CLUSTER NODES` line by line.
pub fn parse_nodes(text: &str) -> Vec<NodeInfo> {
    text.lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.len() < 8 {
                return None;
            }
            let port = fields[1]
                .split('@')
                .next()?
                .rsplit(':')
                .next()?
                .parse()
                .ok()?;
            let master = fields[2].contains("master");
            let slots = fields[8..]
                .iter()
                .filter(|s| !s.starts_with('['))
                .filter_map(|range| {
                    let mut ends = range.split('-').map(|n| n.parse::<u16>().ok());
                    let first = ends.next()??;
                    let last = ends.next().flatten().unwrap_or(first);
                    Some((first, last))
                })
                .collect();
            Some(NodeInfo {
                id: fields[0].to_owned(),
                port,
                master,
                master_id: (fields[3] != "-").then(|| fields[3].to_owned()),
                slots,
            })
        })
        .collect()
}

/// Which master serves each slot, by port.
pub fn slot_owners(masters: &[NodeInfo]) -> HashMap<u16, u16> {
    let mut owners = HashMap::new();
    for master in masters {
        for &(first, last) in &master.slots {
            for slot in first..=last {
                owners.insert(slot, master.port);
            }
        }
    }
    owners
}

impl Drop for OwnCluster {
    fn drop(&mut self) {
        self.nodes.clear();
        if let Some(mut watchdog) = self.watchdog.take() {
            let _ = watchdog.kill();
            let _ = watchdog.wait();
        }
    }
}
