//! The repository contract suite, run against MongoDB: on a replica set (metadata written
//! in transactions) and on a standalone server (no transactions).

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
