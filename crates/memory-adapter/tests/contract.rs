//! The repository contract suite, run against the in-memory store, with every placement
//! (placements are metadata here, but the tenant documents follow them as on MongoDB).

use std::sync::Arc;

use domain::{ClusterName, Placement, PlacementKind};
use memory_adapter::InMemoryStore;

fn placed(kind: PlacementKind) -> Arc<InMemoryStore> {
    Arc::new(InMemoryStore::new().placing_every_organization(Placement { kind, cluster: ClusterName::main() }))
}

mod collection_placement {
    use super::*;
    ports::repository_contract_tests!(|| async { Arc::new(InMemoryStore::new()) });
}

mod database_placement {
    use super::*;
    ports::repository_contract_tests!(|| async { placed(PlacementKind::Database) });
}

mod shared_placement {
    use super::*;
    ports::repository_contract_tests!(|| async { placed(PlacementKind::Shared) });
}
