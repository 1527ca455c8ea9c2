//! idem-redis's test servers (a Redis Cluster of the test's own, made of its own
//! servers), shared by path: one copy of their start, wait and stop code.
#![allow(dead_code)]

#[path = "../../../idem-redis/tests/common/own_cluster.rs"]
pub mod own_cluster;
#[path = "../../../idem-redis/tests/common/own_server.rs"]
pub mod own_server;
