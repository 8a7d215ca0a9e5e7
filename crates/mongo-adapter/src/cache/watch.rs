//! Following the master database's change stream, to evict what another instance, the CLI,
//! a job or the reconciler changed.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use mongodb::Database;
use mongodb::bson::{Document, doc};
use mongodb::change_stream::ChangeStream;
use mongodb::change_stream::event::{ChangeStreamEvent, OperationType, ResumeToken};

use super::{Key, MasterCache, STREAM_AWAIT};
use crate::errors::{CHANGE_STREAMS_UNSUPPORTED, code};

/// The master collections whose documents the cache holds.
const WATCHED: [&str; 4] = ["organizations", "admins", "sessions", crate::api_keys::API_KEYS];

/// The server cannot resume the stream where it was: the position fell off the oplog
/// (`ChangeStreamHistoryLost`), the token is not one it knows (`InvalidResumeToken`), the
/// stream cannot go on (`ChangeStreamFatalError`), or the server cannot read the token at
/// all (`FailedToParse`, which is what the test server answers for a token it never issued).
/// Opening the stream again from the same token would fail the same way forever.
const LOST_BEYOND_RESUMPTION: [i32; 4] = [286, 260, 280, 9];

/// The longest wait between attempts to open the stream again.
const MOST_BACKOFF: Duration = Duration::from_secs(5);

type Stream = ChangeStream<ChangeStreamEvent<Document>>;

/// What opening the stream at startup found.
pub(super) enum Opened {
    /// The server has no change streams (a standalone mongod): entries live for the TTL.
    Unsupported,
    /// The stream, or `None` if the server could not be reached yet (the follower keeps
    /// trying; entries are not trusted meanwhile).
    Stream(Option<Stream>),
}

/// Opens the stream from `after`, or from now.
async fn open(master: &Database, after: Option<ResumeToken>) -> mongodb::error::Result<Stream> {
    // Only what eviction needs: the documents themselves (inserted sessions carry their
    // refresh hashes) never cross the wire.
    let pipeline = [
        doc! {"$match": {"ns.coll": {"$in": WATCHED.to_vec()}}},
        doc! {"$project": {"operationType": 1, "ns": 1, "documentKey": 1, "wallTime": 1, "clusterTime": 1}},
    ];
    master.watch().pipeline(pipeline).max_await_time(STREAM_AWAIT).resume_after(after).await
}

/// Opens the stream at startup, telling a server without change streams apart.
pub(super) async fn start(master: &Database) -> Opened {
    match open(master, None).await {
        Ok(stream) => Opened::Stream(Some(stream)),
        Err(e) if code(&e) == Some(CHANGE_STREAMS_UNSUPPORTED) => Opened::Unsupported,
        Err(e) => {
            tracing::warn!(error = %e, "cannot open the master database's change stream yet; the cache waits for it");
            Opened::Stream(None)
        }
    }
}

/// Follows the stream for as long as the task runs: evicts what each event names, tells the
/// cache each time the stream answers, and opens it again after an error, from where it
/// was; if it cannot resume there, the whole cache is dropped and the stream starts from now.
pub(super) async fn follow(cache: Arc<MasterCache>, master: Database, mut stream: Option<Stream>) {
    let mut token = stream.as_ref().and_then(ChangeStream::resume_token);
    let mut backoff = Duration::from_millis(50);
    loop {
        let mut current = match stream.take() {
            Some(current) => current,
            None => {
                #[cfg(feature = "test-support")]
                if cache.forget_position.swap(false, Ordering::AcqRel) {
                    token = Some(never_issued());
                }
                match open(&master, token.clone()).await {
                    Ok(opened) => {
                        if token.is_none() {
                            // Nothing tells what changed before this stream began.
                            cache.clear();
                        }
                        backoff = Duration::from_millis(50);
                        opened
                    }
                    // Without a token there is nothing to give up: the error is the server's.
                    Err(e) if token.is_some() && code(&e).is_some_and(|c| LOST_BEYOND_RESUMPTION.contains(&c)) => {
                        tracing::warn!(error = %e, "the master change stream cannot resume: dropping the whole cache");
                        cache.stats.resets.fetch_add(1, Ordering::Relaxed);
                        token = None;
                        continue;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot reopen the master change stream; will retry");
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(MOST_BACKOFF);
                        continue;
                    }
                }
            }
        };
        loop {
            let asked = cache.clock.now();
            match current.next_if_any().await {
                Ok(event) => {
                    if let Some(event) = event
                        && !evict_for(&cache, &event)
                    {
                        // The stream ended (invalidated): start a new one from now.
                        token = None;
                        break;
                    }
                    token = current.resume_token().or(token);
                    cache.heard_from_stream(asked);
                }
                Err(e) => {
                    cache.lost_stream();
                    cache.stats.reconnects.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(error = %e, "the master change stream failed; resuming it");
                    break;
                }
            }
        }
        // Not trusted until the next stream answers.
        cache.lost_stream();
    }
}

/// A resume token the server never issued, standing for a position that fell off its oplog.
#[cfg(feature = "test-support")]
fn never_issued() -> ResumeToken {
    mongodb::bson::from_document(doc! {"_data": "00"}).expect("a resume token is any BSON value")
}

/// Evicts what an event names; returns whether the stream goes on.
fn evict_for(cache: &MasterCache, event: &ChangeStreamEvent<Document>) -> bool {
    if let Some(wall) = event.wall_time {
        let lag = cache.clock.now().timestamp_millis() - wall.timestamp_millis();
        cache.stats.lag_ms.store(lag.max(0), Ordering::Relaxed);
    }
    let id = event.document_key.as_ref().and_then(|k| k.get_str("_id").ok());
    let collection = event.ns.as_ref().and_then(|ns| ns.coll.as_deref());
    let key = match (&event.operation_type, collection, id) {
        // Nothing is cached before it exists: lookups that find nothing are not cached.
        (OperationType::Insert, Some(_), Some(_)) => return true,
        (OperationType::Update | OperationType::Replace | OperationType::Delete, Some(c), Some(id)) => match c {
            "organizations" => domain::OrgId::parse(id).ok().map(Key::Org),
            "admins" => domain::AdminId::parse(id).ok().map(Key::Admin),
            "sessions" => domain::SessionId::parse(id).ok().map(Key::Session),
            crate::api_keys::API_KEYS => domain::ApiKeyId::parse(id).ok().map(Key::ApiKeyById),
            _ => None,
        },
        _ => None,
    };
    match key {
        Some(key) => cache.evict([key]),
        // A collection dropped or renamed, a document the cache cannot place: anything may
        // have changed.
        None => cache.clear(),
    }
    event.operation_type != OperationType::Invalidate
}
