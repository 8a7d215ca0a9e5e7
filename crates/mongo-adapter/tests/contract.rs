//! The repository contract suite, run against MongoDB: on a replica set (metadata written
//! in transactions) and on a standalone server (no transactions), with every organization
//! in a collection of the tenant database and, again, in a database of its own.

use std::sync::Arc;

use mongo_adapter::test_support::{fresh_standalone_store, fresh_store};

mod replica_set {
    use super::*;
    ports::repository_contract_tests!(|| async { Arc::new(fresh_store().await) });
}

mod standalone {
    use super::*;
    ports::repository_contract_tests!(|| async { Arc::new(fresh_standalone_store().await) });
}

/// Every organization in a database of its own.
fn own_database() -> domain::Placement {
    domain::Placement { kind: domain::PlacementKind::Database, cluster: domain::ClusterName::main() }
}

mod replica_set_database_placement {
    use super::*;
    ports::repository_contract_tests!(|| async {
        Arc::new(fresh_store().await.placing_every_organization(own_database()))
    });
}

mod standalone_database_placement {
    use super::*;
    ports::repository_contract_tests!(|| async {
        Arc::new(fresh_standalone_store().await.placing_every_organization(own_database()))
    });
}
