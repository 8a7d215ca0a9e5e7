//! The ports on MongoDB. The multi-step operations follow one protocol: record the intent
//! (an `op` with a claim token) on the organization document before the first side effect,
//! make every later metadata write conditional on still holding the token, and clear the
//! intent with the last write. A conflict found midway is undone here; anything else that
//! stops an operation (a crash, a lost connection) is left to the reconciler, which reads
//! the intent record and finishes or rolls back.

use anyhow::anyhow;
use async_trait::async_trait;
use domain::{
    Admin, AdminId, CreateOrgError, DeleteOrgError, Email, Event, MessageId, NewOrganization, OrgId, OrgKey,
    Organization, OrganizationChanges, PlacementKind, StoreError, UpdateOrgError,
};
use mongodb::bson::{self, Document, doc};
use ports::{AdminRepository, OrganizationRepository};
use uuid::Uuid;

use crate::MongoStore;
use crate::documents::{AdminDoc, OpDoc, OpKind, OrgDoc, State, name_reservations, to_bson_time};
use crate::errors::{
    EMAIL_INDEX, KEYS_INDEX, db, is_duplicate_in, is_retryable_transaction_error, store_error, unknown,
};
use crate::webhooks::{EventDoc, merged, publishing};

/// How many times a metadata transaction is retried after a transient error (a write
/// conflict with a concurrent transaction) before giving up.
const TRANSACTION_ATTEMPTS: usize = 8;

fn taken_over() -> StoreError {
    StoreError::Unavailable(anyhow!("the operation took too long and was taken over by the reconciler"))
}

fn busy() -> StoreError {
    StoreError::Unavailable(anyhow!("another change of this organization is in progress"))
}

fn state(s: State) -> bson::Bson {
    bson::to_bson(&s).unwrap_or(bson::Bson::Null)
}

/// Which insert of the create metadata failed on a unique index.
enum MetadataConflict {
    Name,
    Email,
}

impl MongoStore {
    /// A named step of an operation: where the tests inject crashes and pauses.
    pub(crate) async fn step(&self, step: &'static str) -> Result<(), StoreError> {
        self.failpoints.step(step).await
    }

    /// Inserts the organization (state `creating`) and its admin: in one transaction where
    /// the deployment has them, else one after the other, removing the organization again
    /// if the admin's email is taken.
    async fn insert_metadata(
        &self,
        org: &OrgDoc,
        admin: &AdminDoc,
    ) -> Result<Result<(), MetadataConflict>, StoreError> {
        if !self.transactions {
            match self.organizations.insert_one(org).await {
                Err(e) if is_duplicate_in(&e, KEYS_INDEX) => return Ok(Err(MetadataConflict::Name)),
                other => db(other)?,
            };
            self.step("create:after_insert_organization").await?;
            return match self.admins.insert_one(admin).await {
                Err(e) if is_duplicate_in(&e, EMAIL_INDEX) => {
                    let token = org.op.as_ref().map(|op| op.token.clone()).unwrap_or_default();
                    db(self.organizations.delete_one(doc! {"_id": &org.id, "op.token": token}).await)?;
                    Ok(Err(MetadataConflict::Email))
                }
                other => db(other).map(|_| Ok(())),
            };
        }
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.insert_metadata_transaction(org, admin).await {
                Err(e) if is_retryable_transaction_error(&e) && attempt < TRANSACTION_ATTEMPTS => {
                    tokio::time::sleep(std::time::Duration::from_millis(5 * attempt as u64)).await;
                }
                Err(e) => return Err(store_error(e)),
                Ok(outcome) => return outcome,
            }
        }
    }

    async fn insert_metadata_transaction(
        &self,
        org: &OrgDoc,
        admin: &AdminDoc,
    ) -> mongodb::error::Result<Result<Result<(), MetadataConflict>, StoreError>> {
        let mut session = self.client.start_session().await?;
        session.start_transaction().await?;
        match self.organizations.insert_one(org).session(&mut session).await {
            Err(e) if is_duplicate_in(&e, KEYS_INDEX) => {
                let _ = session.abort_transaction().await;
                return Ok(Ok(Err(MetadataConflict::Name)));
            }
            other => other?,
        };
        if let Err(crash) = self.step("create:after_insert_organization").await {
            // Dropping the session aborts the transaction, as a dead process's would be.
            return Ok(Err(crash));
        }
        match self.admins.insert_one(admin).session(&mut session).await {
            Err(e) if is_duplicate_in(&e, EMAIL_INDEX) => {
                let _ = session.abort_transaction().await;
                return Ok(Ok(Err(MetadataConflict::Email)));
            }
            other => other?,
        };
        session.commit_transaction().await?;
        Ok(Ok(Ok(())))
    }

    /// Whether the operation with this token still owns the organization.
    async fn holds(&self, id: &str, token: &str) -> Result<bool, StoreError> {
        Ok(db(self.organizations.count_documents(doc! {"_id": id, "op.token": token}).await)? == 1)
    }

    /// Removes a rename's reserved key and its intent record: the rename never happened.
    pub(crate) async fn release_update(&self, org: &OrgDoc, token: &str) -> Result<bool, StoreError> {
        let result = db(self
            .organizations
            .update_one(
                doc! {"_id": &org.id, "op.token": token},
                doc! {"$set": {"keys": name_reservations(&org.key)}, "$unset": {"op": ""}},
            )
            .await)?;
        Ok(result.matched_count == 1)
    }

    /// Makes a rename's metadata current and clears its intent record.
    pub(crate) async fn commit_update(&self, org: &OrgDoc, op: &OpDoc, token: &str) -> Result<bool, StoreError> {
        let key = op.to_key.clone().unwrap_or_else(|| org.key.clone());
        let set = doc! {
            "name": op.to_name.clone().unwrap_or_else(|| org.name.clone()),
            "key": &key,
            "keys": name_reservations(&key),
            "collection": op.to_collection.clone().unwrap_or_else(|| org.collection.clone()),
            "updated_at": op.at.unwrap_or_else(bson::DateTime::now),
        };
        let update = merged(doc! {"$set": set, "$unset": {"op": ""}}, publishing(&op.events)?);
        let result = db(self.organizations.update_one(doc! {"_id": &org.id, "op.token": token}, update).await)?;
        Ok(result.matched_count == 1)
    }

    /// The steps of a delete after the organization is marked `deleting`; idempotent, so
    /// the reconciler uses them to finish an interrupted delete.
    pub(crate) async fn finish_delete(&self, org: &OrgDoc, token: &str) -> Result<(), StoreError> {
        self.drop_tenant_data(org).await?;
        self.step("delete:after_drop_collection").await?;
        db(self.admins.delete_many(doc! {"organization_id": &org.id}).await)?;
        self.step("delete:after_delete_admins").await?;
        // The document carries the organization's last events until they are relayed.
        if let Some(current) = db(self.organizations.find_one(doc! {"_id": &org.id, "op.token": token}).await)? {
            self.relay_events(&current).await?;
        }
        db(self.organizations.delete_one(doc! {"_id": &org.id, "op.token": token}).await)?;
        Ok(())
    }

    /// Undoes a create that never answered 201.
    pub(crate) async fn roll_back_create(&self, org: &OrgDoc, token: &str) -> Result<(), StoreError> {
        self.drop_tenant_data(org).await?;
        db(self.admins.delete_many(doc! {"organization_id": &org.id}).await)?;
        db(self.organizations.delete_one(doc! {"_id": &org.id, "op.token": token}).await)?;
        Ok(())
    }

    async fn active(&self, filter: Document) -> Result<Option<Organization>, StoreError> {
        match db(self.organizations.find_one(filter).await)? {
            Some(org) if org.state == State::Active => Ok(Some(org.to_domain().map_err(unknown)?)),
            _ => Ok(None),
        }
    }
}

#[async_trait]
impl OrganizationRepository for MongoStore {
    async fn create(&self, new: NewOrganization) -> Result<Organization, CreateOrgError> {
        #[cfg(feature = "test-support")]
        let new = match &self.forced_placement {
            Some(placement) => new.placed(placement.clone()),
            None => new,
        };
        // The organization's cluster must be one this store reaches; under `shared`, its
        // shared collection must exist. Both are checked before the first write, so an
        // unreachable cluster refuses the create with nothing to undo.
        let cluster = self.cluster(&new.placement().cluster)?;
        // Every tenant migration of this build but those rolled back since.
        let in_force = self.tenant_migrations_in_force().await?;
        let shared_migrations = match new.placement().kind {
            PlacementKind::Shared => {
                let got = cluster.ensure_shared_collection(async { Ok(in_force.clone()) }).await?;
                Some(got.iter().filter(|name| in_force.iter().any(|m| &m.name == *name)).cloned().collect::<Vec<_>>())
            }
            PlacementKind::Collection | PlacementKind::Database => None,
        };
        let token = Uuid::new_v4().to_string();
        let (mut org, admin) = crate::documents::stored(&new, cluster.tenants.name());
        let created = org.to_domain().map_err(unknown)?;
        let events = [EventDoc::from_domain(&Event::organization_created(MessageId::at(created.created_at), &created))];
        org.state = State::Creating;
        org.op = Some(OpDoc::new(OpKind::Create, &token));
        match self.insert_metadata(&org, &admin).await? {
            Err(MetadataConflict::Name) => return Err(CreateOrgError::NameTaken),
            Err(MetadataConflict::Email) => return Err(CreateOrgError::EmailTaken),
            Ok(()) => {}
        }
        self.step("create:after_insert_metadata").await?;

        // Under `shared` there is no DDL: the organization's documents go to the shared
        // collection, which has every tenant migration already.
        let initialized = match shared_migrations {
            Some(migrations) => Ok(migrations),
            None => match self.create_tenant_collection(&org).await {
                Ok(()) => cluster
                    .initialize_tenant_collection(&org.database, &org.collection, &in_force)
                    .await
                    .map_err(unknown),
                Err(e) => Err(e),
            },
        };
        let migrated = match initialized {
            Ok(names) => names,
            Err(e) => {
                self.roll_back_metadata(&org, &token).await?;
                return Err(e.into());
            }
        };
        self.step("create:after_create_collection").await?;

        let activate =
            doc! {"$set": {"state": state(State::Active), "tenant_migrations": migrated}, "$unset": {"op": ""}};
        let activated = db(self
            .organizations
            .update_one(doc! {"_id": &org.id, "op.token": &token}, merged(activate, publishing(&events)?))
            .await)?;
        if activated.matched_count == 0 {
            // The reconciler took this create over and is rolling it back; undo our own DDL
            // in case it ran after the reconciler's drop.
            if !org.is_shared() {
                cluster.drop_collection(&org.database, &org.collection).await?;
            }
            return Err(taken_over().into());
        }
        self.relay_after_commit(&org.id).await;
        Ok(OrgDoc { state: State::Active, op: None, ..org }.to_domain().map_err(unknown)?)
    }

    async fn find_by_key(&self, key: &OrgKey) -> Result<Option<Organization>, StoreError> {
        self.active(doc! {"keys": key.as_str(), "key": key.as_str()}).await
    }

    async fn find_by_id(&self, id: OrgId) -> Result<Option<Organization>, StoreError> {
        self.active(doc! {"_id": id.to_string()}).await
    }

    async fn update(&self, id: OrgId, changes: OrganizationChanges) -> Result<Organization, UpdateOrgError> {
        let id = id.to_string();
        let org = db(self.organizations.find_one(doc! {"_id": &id}).await)?.ok_or(UpdateOrgError::NotFound)?;
        if org.state != State::Active {
            return Err(UpdateOrgError::NotFound);
        }
        if org.op.is_some() {
            return Err(busy().into());
        }
        if org.moving.is_some() && changes.rename.is_some() {
            return Err(UpdateOrgError::Moving);
        }
        let admin = db(self.admins.find_one(doc! {"_id": &org.admin_id}).await)?.ok_or(UpdateOrgError::NotFound)?;

        let token = Uuid::new_v4().to_string();
        let mut op = OpDoc::new(OpKind::Update, &token);
        op.at = Some(to_bson_time(changes.at));
        if let Some(rename) = &changes.rename {
            op.to_name = Some(rename.name().as_str().to_owned());
            op.to_key = Some(rename.name().key().as_str().to_owned());
            op.to_collection = Some(rename.collection().as_str().to_owned());
        }
        let before = org.to_domain().map_err(unknown)?;
        op.events = Event::of_changes(&before, &changes, || MessageId::at(changes.at))
            .iter()
            .map(EventDoc::from_domain)
            .collect();
        op.new_email = changes.email.map(|e| e.as_str().to_owned());
        op.new_password_hash = changes.password_hash.map(|h| h.as_phc().to_owned());

        // Step 1: claim the organization and reserve the new key in one atomic update.
        let mut update = doc! {"$set": {"op": bson::to_bson(&op).map_err(unknown)?}};
        if let Some(key) = &op.to_key {
            update.insert("$addToSet", doc! {"keys": {"$each": name_reservations(key)}});
        }
        let mut claim = doc! {"_id": &id, "state": state(State::Active), "op": {"$exists": false}};
        if op.to_key.is_some() {
            // A rename moves the collection, which a move of the organization is copying.
            claim.insert("moving", doc! {"$exists": false});
        }
        let claimed = match self.organizations.update_one(claim, update).await {
            Err(e) if is_duplicate_in(&e, KEYS_INDEX) => return Err(UpdateOrgError::NameTaken),
            other => db(other)?,
        };
        if claimed.matched_count == 0 {
            return match db(self.organizations.find_one(doc! {"_id": &id}).await)? {
                Some(current) if current.state == State::Active && current.moving.is_some() && op.to_key.is_some() => {
                    Err(UpdateOrgError::Moving)
                }
                Some(current) if current.state == State::Active => Err(busy().into()),
                _ => Err(UpdateOrgError::NotFound),
            };
        }
        // Steps 2 to 4. If one of them fails after the reconciler has taken the operation
        // over (it stalled past its lease), the reconciler has finished or undone it and the
        // failure is that takeover's trace (the collection moved away under us, say): the
        // caller gets a retryable 503, not a 500.
        let outcome: Result<(), UpdateOrgError> = async {
            self.step("update:after_reserve").await?;

            // Step 2: move the tenant collection (none under `shared`).
            let cluster = self.cluster_of(&org)?;
            let from = org.collection.clone();
            let to = op.to_collection.clone().unwrap_or_else(|| from.clone());
            let moving = org.rename_moves_collection(&to);
            if moving && let Err(e) = cluster.rename_collection(&org.database, &from, &to).await? {
                self.release_update(&org, &token).await?;
                return Err(unknown(anyhow::Error::new(e).context(format!("moving {from} to {to}"))).into());
            }
            self.step("update:after_rename_collection").await?;

            // Step 3: the admin's changes; once applied, the reconciler rolls forward.
            if op.has_admin_changes() {
                if !self.holds(&id, &token).await? {
                    if moving {
                        let _ = cluster.rename_collection(&org.database, &to, &from).await?;
                    }
                    return Err(taken_over().into());
                }
                match self.admins.update_one(doc! {"_id": &admin.id}, doc! {"$set": op.admin_changes()}).await {
                    Err(e) if is_duplicate_in(&e, EMAIL_INDEX) => {
                        if moving {
                            // If moving back fails, the intent record stays and the reconciler
                            // rolls the rename back.
                            cluster
                                .rename_collection(&org.database, &to, &from)
                                .await?
                                .map_err(|e| unknown(anyhow::Error::new(e)))?;
                        }
                        self.release_update(&org, &token).await?;
                        return Err(UpdateOrgError::EmailTaken);
                    }
                    other => db(other)?,
                };
            }
            self.step("update:after_update_admin").await?;

            // Step 4: commit the metadata and clear the intent.
            if !self.commit_update(&org, &op, &token).await? {
                return Err(taken_over().into());
            }
            Ok(())
        }
        .await;
        match outcome {
            Err(UpdateOrgError::Unknown(_)) if !self.holds(&id, &token).await? => {
                return Err(taken_over().into());
            }
            other => other?,
        }
        self.relay_after_commit(&id).await;
        self.active(doc! {"_id": &id}).await?.ok_or(UpdateOrgError::NotFound)
    }

    async fn delete(&self, id: OrgId) -> Result<(), DeleteOrgError> {
        let id = id.to_string();
        let token = Uuid::new_v4().to_string();
        let op = OpDoc::new(OpKind::Delete, &token);
        // The event names the organization as it was; read first, and published only if the
        // mark applies to the organization read (same name: the filter checks the key).
        let Some(current) = db(self.organizations.find_one(doc! {"_id": &id}).await)? else {
            return Err(DeleteOrgError::NotFound);
        };
        let name = domain::OrganizationName::parse(&current.name).map_err(unknown)?;
        let now = chrono::Utc::now();
        let org_id = domain::OrgId::parse(&id).map_err(unknown)?;
        let events = [EventDoc::from_domain(&Event::organization_deleted(MessageId::at(now), org_id, &name, now))];
        let mark = doc! {"$set": {"state": state(State::Deleting), "op": bson::to_bson(&op).map_err(unknown)?}};
        let marked = db(self
            .organizations
            .update_one(
                doc! {"_id": &id, "state": state(State::Active), "op": {"$exists": false}, "key": &current.key},
                merged(mark, publishing(&events)?),
            )
            .await)?;
        let org = db(self.organizations.find_one(doc! {"_id": &id}).await)?;
        if marked.matched_count == 0 {
            return match org {
                Some(current) if current.state == State::Active => Err(busy().into()),
                _ => Err(DeleteOrgError::NotFound),
            };
        }
        let org = org.ok_or_else(|| unknown(anyhow!("organization {id} vanished while being deleted")))?;
        self.step("delete:after_mark").await?;
        self.finish_delete(&org, &token).await?;
        Ok(())
    }

    async fn list(&self) -> Result<Vec<Organization>, StoreError> {
        let mut cursor = db(self.organizations.find(doc! {"state": state(State::Active)}).sort(doc! {"key": 1}).await)?;
        let mut all = Vec::new();
        while db(cursor.advance().await)? {
            all.push(db(cursor.deserialize_current())?.to_domain().map_err(unknown)?);
        }
        Ok(all)
    }

    async fn count(&self) -> Result<u64, StoreError> {
        db(self.organizations.count_documents(doc! {"state": state(State::Active)}).await)
    }

    async fn ping(&self) -> Result<(), StoreError> {
        db(self.master.run_command(doc! {"ping": 1}).await).map(drop)
    }

    fn location(&self, org: &Organization) -> domain::TenantLocation {
        // An organization on a cluster the settings no longer name keeps its stored
        // location, shown without a connection string.
        let (uri, tenants) = match self.cluster(&org.placement.cluster) {
            Ok(cluster) => (cluster.public_uri.clone(), cluster.tenants.name()),
            Err(_) => (String::new(), self.tenants.name()),
        };
        domain::TenantLocation::of(org, uri, tenants)
    }

    async fn set_database_user(
        &self,
        org: &Organization,
        password: &domain::DatabasePassword,
    ) -> Result<domain::DatabaseUser, StoreError> {
        self.set_user(org, password).await
    }
}

impl MongoStore {
    async fn roll_back_metadata(&self, org: &OrgDoc, token: &str) -> Result<(), StoreError> {
        db(self.admins.delete_many(doc! {"organization_id": &org.id}).await)?;
        db(self.organizations.delete_one(doc! {"_id": &org.id, "op.token": token}).await)?;
        Ok(())
    }
}

#[async_trait]
impl AdminRepository for MongoStore {
    async fn find_by_email(&self, email: &Email) -> Result<Option<Admin>, StoreError> {
        match db(self.admins.find_one(doc! {"email": email.as_str()}).await)? {
            Some(admin) => Ok(Some(admin.to_domain().map_err(unknown)?)),
            None => Ok(None),
        }
    }

    async fn find_by_id(&self, id: AdminId) -> Result<Option<Admin>, StoreError> {
        match db(self.admins.find_one(doc! {"_id": id.to_string()}).await)? {
            Some(admin) => Ok(Some(admin.to_domain().map_err(unknown)?)),
            None => Ok(None),
        }
    }
}
