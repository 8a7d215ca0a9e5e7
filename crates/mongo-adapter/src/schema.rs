//! The basic schema of a tenant collection.
//!
//! Tenant documents belong to the organization and are free-form, so the service does not
//! impose a shape on them. It guarantees one thing: every document carries an identifier of
//! a stable, comparable type (object id, string, binary such as a UUID, or integer), so
//! that tenant data can always be addressed, copied and compared by `_id`. A `$jsonSchema`
//! validator (strict level, error action) enforces it on every insert and update. Richer,
//! per-deployment schemas are meant to come as tenant migrations.
//!
//! `renameCollection` keeps a collection's options on mongod, but the adapter does not rely
//! on it: after every move the options are applied again with `collMod`, which is
//! idempotent, so a collection always leaves a rename with its schema.

use mongodb::bson::{Document, doc};

/// The options a tenant collection is created with, and re-applied after a move.
pub fn tenant_collection_options() -> Document {
    doc! {
        "validator": {
            "$jsonSchema": {
                "bsonType": "object",
                "required": ["_id"],
                "properties": {
                    "_id": {
                        "bsonType": ["objectId", "string", "binData", "int", "long"],
                        "description": "an identifier of a stable, comparable type",
                    },
                },
            },
        },
        "validationLevel": "strict",
        "validationAction": "error",
    }
}

/// The options of a cluster's shared collection (the `shared` placement): the tenant schema,
/// and a tenant field of string type on every document, so that no document belongs to no
/// organization.
pub fn shared_collection_options() -> Document {
    doc! {
        "validator": {
            "$jsonSchema": {
                "bsonType": "object",
                "required": ["_id", domain::Placement::TENANT_FIELD],
                "properties": {
                    "_id": {
                        "bsonType": ["objectId", "string", "binData", "int", "long"],
                        "description": "an identifier of a stable, comparable type",
                    },
                    domain::Placement::TENANT_FIELD: {
                        "bsonType": "string",
                        "description": "the id of the organization the document belongs to",
                    },
                },
            },
        },
        "validationLevel": "strict",
        "validationAction": "error",
    }
}
