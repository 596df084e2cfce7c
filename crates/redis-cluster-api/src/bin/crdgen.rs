//! Prints the `RedisCluster` CustomResourceDefinition generated from the Rust types.
//! `make crd` writes it to `config/crd/` and the Helm chart; `make test` fails when they drift.
fn main() {
    print!("{}", redis_cluster_api::crd_yaml());
}
