//! The repository contract suite, run against the in-memory store.

use std::sync::Arc;

use memory_adapter::InMemoryStore;

ports::repository_contract_tests!(|| async { Arc::new(InMemoryStore::new()) });
