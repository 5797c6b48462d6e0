//! Names (`warren name …`): keys, publications, resolutions.

use serde::{Deserialize, Serialize};

/// A key that can sign the records of a name.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NameKeyView {
    /// The key's label: `self` (the node's identity key) or a name given to `key-gen`.
    pub key: String,
    /// The name it signs for (the key's peer id).
    pub name: String,
}

/// `POST /v1/names/publish`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PublishNameRequest {
    /// What the name is to point to.
    pub cid: String,
    /// The key's label (default `self`).
    pub key: Option<String>,
    /// How long the record is valid, seconds (default 24 h).
    pub lifetime_secs: Option<u64>,
    /// Re-sign and republish before it expires (default true).
    pub republish: Option<bool>,
}

/// A record published.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublishedView {
    /// The name (`/name/NAME` reaches it).
    pub name: String,
    /// The key's label.
    pub key: String,
    /// What it points to.
    pub cid: String,
    /// The record's sequence.
    pub sequence: u64,
    /// When the record expires, Unix seconds.
    pub expires_at: u64,
    /// Peers (besides this node) that took the record.
    pub stored_on: usize,
    /// Whether the node republishes it before it expires.
    pub republish: bool,
}

/// One record a resolution found.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NameAnswerView {
    /// The peer that answered (`local`: this node's store).
    pub from: String,
    /// The record's sequence, when it verified.
    pub sequence: Option<u64>,
    /// Why it was refused, when it did not.
    pub refused: Option<String>,
}

/// `GET /v1/names/resolve/{name}`: the newest valid record of a name.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResolvedView {
    /// The name.
    pub name: String,
    /// What its newest valid record points to.
    pub cid: String,
    /// That record's sequence.
    pub sequence: u64,
    /// When it expires, Unix seconds.
    pub expires_at: u64,
    /// Every record the lookup found, and what became of it.
    pub answers: Vec<NameAnswerView>,
}
