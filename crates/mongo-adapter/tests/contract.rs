//! The repository contract suite, run against MongoDB: on a replica set (metadata written
//! in transactions) and on a standalone server (no transactions), with every organization
//! in a collection of the tenant database, again in a database of its own, and again in the
//! shared collection.

use std::sync::Arc;

use mongo_adapter::test_support::{
    fresh_standalone_store, fresh_store, fresh_store_with_second_cluster, second_cluster,
};

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

/// Every organization in the shared collection.
fn shared() -> domain::Placement {
    domain::Placement { kind: domain::PlacementKind::Shared, cluster: domain::ClusterName::main() }
}

mod replica_set_shared_placement {
    use super::*;
    ports::repository_contract_tests!(|| async { Arc::new(fresh_store().await.placing_every_organization(shared())) });
}

mod standalone_shared_placement {
    use super::*;
    ports::repository_contract_tests!(|| async {
        Arc::new(fresh_standalone_store().await.placing_every_organization(shared()))
    });
}

/// A store that places every organization as `kind` on the second cluster.
async fn on_second_cluster(kind: domain::PlacementKind) -> Arc<mongo_adapter::MongoStore> {
    let placement = domain::Placement { kind, cluster: second_cluster() };
    Arc::new(fresh_store_with_second_cluster().await.placing_every_organization(placement))
}

mod second_cluster_collection_placement {
    use super::*;
    ports::repository_contract_tests!(|| on_second_cluster(domain::PlacementKind::Collection));
}

mod second_cluster_database_placement {
    use super::*;
    ports::repository_contract_tests!(|| on_second_cluster(domain::PlacementKind::Database));
}

mod second_cluster_shared_placement {
    use super::*;
    ports::repository_contract_tests!(|| on_second_cluster(domain::PlacementKind::Shared));
}

/// The store behind the organization cache, as the service runs it.
async fn cached(store: mongo_adapter::MongoStore) -> Arc<mongo_adapter::CachedStore> {
    let settings = mongo_adapter::CacheSettings::default();
    Arc::new(mongo_adapter::CachedStore::start(Arc::new(store), &settings, Arc::new(ports::SystemClock)).await)
}

mod replica_set_cached {
    use super::*;
    ports::repository_contract_tests!(|| async { cached(fresh_store().await).await });
}

mod standalone_cached {
    use super::*;
    ports::repository_contract_tests!(|| async { cached(fresh_standalone_store().await).await });
}
